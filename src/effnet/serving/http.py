"""The HTTP side of ``effnet serve``: a request read within its bounds, the image it carries, and its refusals.

Every refusal is a :class:`RequestError`: a 4xx status and a one-line message, sent as ``{"error": "..."}``. The
bounds are :class:`~effnet.config.serve.ServeConfig` settings: the body size (413, refused from ``Content-Length``
before the body is read, or as soon as a streamed body passes it), the image size as decoded and after resizing
(413: decompression bombs, a 65000x1 strip), the time to send the whole request (408, enforced by
:class:`DeadlineProtocol` on the connection itself, headers included), the header size (431). Images are read by
:func:`effnet.serving.preprocess.load_image` and transformed by the weights' one
:func:`~effnet.serving.preprocess.eval_transform`, exactly as ``effnet predict`` does.

Accepted bodies (:data:`ACCEPTED`): ``multipart/form-data`` with the image as field ``image`` (or the only file),
the raw image bytes (``image/*``, ``application/octet-stream``), or JSON ``{"image": "<base64>"}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Callable
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from effnet.errors import BadFile
from effnet.preprocessing import Preprocessing
from effnet.serving.preprocess import load_image

__all__ = [
    "ACCEPTED",
    "MAX_HEADER_BYTES",
    "RequestError",
    "error_response",
    "parse_top_k",
    "read_body",
    "image_bytes",
    "check_image_size",
    "decode_image",
    "DeadlineProtocol",
    "deadline_protocol",
]

ACCEPTED = (
    "multipart/form-data (field 'image'), image/* or application/octet-stream (the raw bytes), "
    'application/json ({"image": "<base64>"})'
)
MAX_HEADER_BYTES = 64 * 1024
"""Most bytes a request line and its headers may take (larger: 431)."""


class RequestError(Exception):
    """A request the server refuses: an HTTP ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with ``status``; the message kept to one line."""
    line = (message.strip().splitlines() or ["error"])[0]
    return JSONResponse({"error": line}, status_code=status)


def parse_top_k(text: str | None, default: int, classes: int) -> int:
    """``?top_k=`` as an integer in 1..``classes`` (absent: ``default``, at most ``classes``); else 400."""
    if text is None:
        return min(default, classes)
    try:
        k = int(text)
    except ValueError:
        k = 0
    if not 1 <= k <= classes:
        raise RequestError(400, f"top_k must be an integer in 1..{classes}; got {text[:40]!r}")
    return k


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (from ``Content-Length`` before reading
    anything, else while it streams). A client that went away raises :class:`ClientDisconnect`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length must be a byte count; got {declared[:40]!r}")
        if int(declared) > limit:
            raise RequestError(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _form_image(request: Request, body: bytes, limit: int) -> bytes:
    """The uploaded file of a multipart body: field ``image``, else its only file."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16, max_part_size=limit)
    except Exception as exc:  # Starlette's MultiPartException / parser errors: the body is not valid multipart
        raise RequestError(400, f"not a valid multipart/form-data body ({exc})") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    chosen = form.get("image")
    upload = chosen if isinstance(chosen, UploadFile) else (files[0] if len(files) == 1 else None)
    if upload is None:
        raise RequestError(400, "multipart/form-data needs the image as a file field named 'image'")
    return await upload.read()


def _json_image(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, 'the body is not valid JSON; send {"image": "<base64 of the image file>"}') from None
    text = data.get("image") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise RequestError(400, 'JSON bodies need {"image": "<base64 of the image file>"}')
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "the 'image' field is not valid base64") from None


async def image_bytes(request: Request, body: bytes, limit: int) -> bytes:
    """The image file a request carries, by its content type (:data:`ACCEPTED`); 415 for another type, 400 for a
    malformed or empty one."""
    media = _media_type(request)
    if media == "multipart/form-data":
        data = await _form_image(request, body, limit)
    elif media.startswith("image/") or media == "application/octet-stream":
        data = body
    elif media == "application/json":
        data = _json_image(body)
    else:
        raise RequestError(415, f"content type {media or '(none)'!r} is not accepted; send {ACCEPTED}")
    if not data:
        raise RequestError(400, "the request holds no image bytes")
    return data


def check_image_size(width: int, height: int, preprocessing: Preprocessing, max_pixels: int) -> None:
    """413 when the image, as decoded or with its shorter side resized to ``preprocessing.resize_size``, has more
    than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise RequestError(413, f"image is {width}x{height} = {width * height:,} pixels; at most {max_pixels:,}")
    side = preprocessing.resize_size
    scale = side / max(min(width, height), 1)
    resized = math.ceil(width * scale) * math.ceil(height * scale)
    if resized > max_pixels:
        raise RequestError(
            413,
            f"image is {width}x{height}: resized to a shorter side of {side} px it would have {resized:,} pixels; "
            f"at most {max_pixels:,}",
        )


def decode_image(data: bytes, preprocessing: Preprocessing, transform: Callable[[Any], Any], max_pixels: int) -> Any:
    """``transform(image)`` of the image file ``data``: its header checked by :func:`check_image_size` first, then
    read by :func:`~effnet.serving.preprocess.load_image`, as ``effnet predict`` reads files. 422 for bytes that are
    no readable image (not an image, truncated), 413 for one too large."""
    try:
        with Image.open(io.BytesIO(data)) as probe:  # the header only: the size, before any pixel is decoded
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"image refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(422, "the upload is not an image file PIL can read") from None
    check_image_size(width, height, preprocessing, max_pixels)
    try:
        image = load_image(io.BytesIO(data), preprocessing.image_mode)
    except BadFile as exc:  # "<source>: cannot read image (reason)": keep the reason
        reason = str(exc).split(": cannot read image ", 1)[-1]
        raise RequestError(422, f"cannot read the image {reason}") from None
    return transform(image)


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request: a client has ``read_timeout`` seconds from
    connecting (or from the first byte of a later request on the connection) until the request is whole, headers
    and body; a slower one (one byte a second, or nothing at all) gets a 408 and is disconnected, and an
    application still waiting for its body sees the disconnect. Request lines and headers over
    :data:`MAX_HEADER_BYTES` get a 431. Errors are one-line JSON, as the application's are."""

    read_timeout: float = 10.0

    def connection_made(self, transport: Any) -> None:
        self._deadline: Any = None
        self._header_bytes = self._streamed = 0
        self._in_headers, self._overflow = True, False
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():  # still no end of headers: all these bytes count
            self._streamed += len(data)
            if self._streamed > MAX_HEADER_BYTES:
                self._refuse(431, self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes, self._streamed = True, 0, 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        """Add ``size`` header bytes; past :data:`MAX_HEADER_BYTES` the parser stops (its callback error becomes
        :meth:`send_400_response`, which answers 431)."""
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._overflow = True
            raise ValueError(self._too_large())

    def _too_large(self) -> str:
        return f"request line and headers are over {MAX_HEADER_BYTES:,} bytes"

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._overflow:
            self._refuse(431, self._too_large())
        else:
            self._refuse(400, msg)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        self._refuse(408, f"the request was not received whole within {self.read_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Write a one-line JSON error with ``status`` and close the connection."""
        if self.transport.is_closing():
            return
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = json.dumps({"error": message}).encode()
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, reason, len(body)) + body)
        self.transport.close()


def deadline_protocol(read_timeout: float) -> type[DeadlineProtocol]:
    """:class:`DeadlineProtocol` with ``read_timeout`` seconds (uvicorn's ``http=`` takes the class)."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"read_timeout": read_timeout})
