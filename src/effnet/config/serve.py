"""Every setting of ``effnet serve`` (torch-free): which weights, how requests are batched, and the server's bounds.

:class:`ServeConfig` extends :class:`~effnet.config.inference.ServingOptions` (weights, runtime, precision, device,
exported file) with the HTTP server's settings. Each bound on what a client can send is a setting with a documented
default, so that no request can take more memory or time than the operator allowed: the body size, the image size
(decoded and after resizing), the time to send a request, the requests admitted at once and the time one may wait
for inference. :mod:`effnet.serving.server` runs it; ``docs/serving.md`` describes the endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.config.fields import Range, setting
from effnet.config.inference import ServingOptions
from effnet.errors import InvalidValue

__all__ = [
    "SERVE_HOSTS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_SERVE_BATCH",
    "ServeConfig",
]

SERVE_HOSTS = ("127.0.0.1", "0.0.0.0", "::")
"""Addresses the server binds (LitServe's choices): this machine only, or every IPv4 / IPv6 interface."""
DEFAULT_HOST = "127.0.0.1"
"""The default listens on the loopback interface only: exposing a model is the operator's explicit choice."""
DEFAULT_PORT = 8000
MAX_SERVE_BATCH = 256
"""Largest ``--max-batch-size``: 256 preprocessed 224 px images are 154 MB of fp32 input."""


@dataclass(frozen=True, kw_only=True)
class ServeConfig(ServingOptions):
    """Every setting of ``effnet serve``: the weights (or exported file) and how they are served over HTTP."""

    host: str = setting(
        DEFAULT_HOST,
        "address to listen on: 127.0.0.1 (this machine only, the default), 0.0.0.0 or :: (every interface)",
        choices=SERVE_HOSTS,
    )
    port: int = setting(DEFAULT_PORT, "TCP port", limits=Range(1024, 65535))
    max_batch_size: int = setting(
        8,
        f"most requests, from any clients, run in one forward pass, 1..{MAX_SERVE_BATCH} (1: no batching)",
        limits=Range(1, MAX_SERVE_BATCH),
    )
    batch_timeout: float = setting(
        0.0,
        "seconds a batch that has requests but is not full waits for more (0: it takes the requests that arrived "
        "while the previous batch ran, adding no wait)",
        limits=Range(0, 1),
    )
    workers: int = setting(
        1,
        "inference worker processes, each holding the model; the CPU's threads are split among them",
        limits=Range(1, 64),
    )
    top_k: int = setting(5, "classes returned per image when the request has no ?top_k=", limits=Range(1))
    max_upload_mb: float = setting(
        20.0, "largest request body in MiB (larger: 413)", limits=Range(0, 1024, low_open=True)
    )
    max_image_pixels: int = setting(
        50_000_000,
        "largest image in pixels, both as decoded and after its shorter side is resized (larger: 413); bounds "
        "decompression bombs and extreme aspect ratios",
        limits=Range(1, 1 << 31),
    )
    read_timeout: float = setting(
        10.0,
        "seconds a client has to send a whole request, headers and body (slower: 408)",
        limits=Range(0, 3600, low_open=True),
    )
    request_timeout: float = setting(
        30.0, "seconds a request may wait for an inference worker (longer: 504)", limits=Range(0, 3600, low_open=True)
    )
    max_pending: int = setting(
        128,
        "requests admitted at once, being read, decoded or waiting for inference (more: 429)",
        limits=Range(1, 100_000),
    )
    decode_threads: int = setting(2, "threads decoding and preprocessing uploaded images", limits=Range(1, 64))
    drain_timeout: float = setting(
        30.0, "seconds SIGTERM waits for in-flight requests to finish before exiting", limits=Range(0, 3600)
    )
    access_log: bool = setting(False, "log every request (uvicorn's access log) on stderr")

    def _check(self) -> None:
        super()._check()
        if self.batch_timeout >= self.request_timeout:
            raise InvalidValue(
                f"--batch-timeout ({self.batch_timeout:g} s) must be shorter than --request-timeout "
                f"({self.request_timeout:g} s)"
            )

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * (1 << 20))
