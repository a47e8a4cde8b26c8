"""``effnet serve``: weights (or an exported file) behind an HTTP endpoint, batched across clients, on LitServe.

LitServe (Lightning AI) runs the processes: one HTTP process (uvicorn, forked) and ``workers`` inference processes
(spawned), joined by its request and response queues; it answers ``GET /health`` (200 ``ok`` once every worker has
loaded the model, else 503). effnet plugs into its three extension points: :class:`ClassifierSpec` (a ``LitSpec``:
the HTTP contract, ``POST /predict`` and ``GET /metadata``), :class:`~effnet.serving.batching.ClassifierAPI` (the
``LitAPI`` of each worker) and :class:`~effnet.serving.batching.BatchLoop` (its ``LitLoop``).

A request is read, bounded and decoded in the HTTP process (:mod:`effnet.serving.http`; a decode thread pool keeps
the event loop answering), so a bad upload is refused there with a 4xx and never reaches a batch shared with other
clients; only the preprocessed image travels to a worker. ``SIGTERM`` (or Ctrl+C) drains: the HTTP process stops
accepting connections and finishes the requests in flight (at most ``drain_timeout`` s), then the workers stop and
the command exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litserve as ls
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from effnet.config.serve import ServeConfig
from effnet.config.serving import default_backend
from effnet.errors import InvalidValue
from effnet.preprocessing import Preprocessing
from effnet.serving.batching import STOP, ClassifierAPI, batch_sizes
from effnet.serving.http import (
    ACCEPTED,
    RequestError,
    deadline_protocol,
    decode_image,
    error_response,
    image_bytes,
    parse_top_k,
    read_body,
)

__all__ = ["ANSWER_GRACE_S", "ClassifierSpec", "describe", "serve"]

ANSWER_GRACE_S = 60.0
"""Seconds the HTTP process waits for a worker's answer beyond ``request_timeout`` before answering 504 itself (a
worker that died mid-batch)."""


class ClassifierSpec(LitSpec):
    """The HTTP contract, in each HTTP process: ``POST /predict`` and ``GET /metadata``.

    ``/predict`` admits at most ``max_pending`` requests at once (else 429), reads the body within
    ``max_upload_bytes``, takes the image out of it (multipart, raw bytes or base64 JSON), decodes and preprocesses
    it in a thread, queues it for a worker and answers ``{"model", "labels", "indices", "probabilities",
    "batch_size", "engine"}``. Refusals are one-line JSON ``{"error": ...}`` with a 4xx status.
    """

    def __init__(self, config: ServeConfig, preprocessing: Preprocessing, num_classes: int, metadata: dict) -> None:
        super().__init__()
        self.api_path = "/predict"
        self.config, self.preprocessing, self.num_classes, self.metadata = config, preprocessing, num_classes, metadata
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None
        self._transform: Any = None
        self.add_endpoint("/predict", self.predict_endpoint, ["POST"])
        self.add_endpoint("/metadata", self.metadata_endpoint, ["GET"])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled into the worker processes without the HTTP process's thread pool and transform."""
        state = super().__getstate__()
        state["_pool"] = state["_transform"] = None
        return state

    async def metadata_endpoint(self, request: Request) -> Response:
        """The model, its spec and preprocessing, the classes, the engine and precision, the batching and limits."""
        return JSONResponse(self.metadata)

    async def predict_endpoint(self, request: Request) -> Response:
        """Classify the request's image; a 4xx with ``{"error": ...}`` for anything the server refuses."""
        if self._pending >= self.config.max_pending:
            return error_response(429, f"{self._pending} requests are in progress (--max-pending); retry later")
        self._pending += 1
        try:
            return await self._predict(request)
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        except ClientDisconnect:  # the client went away (or was cut off at --read-timeout): nobody to answer
            return error_response(400, "the client disconnected before sending the whole request")
        finally:
            self._pending -= 1

    async def _predict(self, request: Request) -> Response:
        k = parse_top_k(request.query_params.get("top_k"), self.config.top_k, self.num_classes)
        body = await read_body(request, self.config.max_upload_bytes)
        data = await image_bytes(request, body, self.config.max_upload_bytes)
        del body
        uid = uuid.uuid4().hex
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event)
        try:
            await asyncio.get_running_loop().run_in_executor(self._decoder(), self._submit, uid, data, k)
            try:
                await asyncio.wait_for(event.wait(), self.config.request_timeout + ANSWER_GRACE_S)
            except asyncio.TimeoutError:
                return error_response(504, "no answer from the inference worker")
            answer, status = self.response_buffer[uid].response
        finally:
            self.response_buffer.pop(uid, None)
        if status != LitAPIStatus.OK:
            problem = answer if isinstance(answer, dict) else {}
            return error_response(problem.get("status", 500), problem.get("error", "inference failed"))
        return JSONResponse({"model": self.metadata["model"], **answer})

    def _decoder(self) -> ThreadPoolExecutor:
        """This HTTP process's decoding threads and transform, made at first use (after the fork)."""
        if self._pool is None:
            import torch  # lazy: only HTTP processes decode; one torch thread each, the requests run side by side

            from effnet.serving.preprocess import eval_transform  # lazy: imports torchvision

            torch.set_num_threads(1)
            self._transform = eval_transform(self.preprocessing)
            self._pool = ThreadPoolExecutor(self.config.decode_threads, thread_name_prefix="effnet-decode")
        return self._pool

    def _submit(self, uid: str, data: bytes, k: int) -> None:
        """Decode and preprocess ``data`` and queue it for a worker (in a decoding thread: both take time)."""
        image = decode_image(data, self.preprocessing, self._transform, self.config.max_image_pixels)
        payload = {"image": image.numpy(), "top_k": k}
        self.request_queue.put((self.response_queue_id, uid, time.monotonic(), payload))


def describe(config: ServeConfig, model: Any, precision: str, engines: dict[int, str]) -> dict[str, Any]:
    """``GET /metadata``: the model, its spec, preprocessing and classes, the engine per padded batch size, the
    precision, the batching settings and the limits on requests."""
    pre = model.preprocessing.to_dict()
    classes = pre.pop("class_names")
    return {
        "model": model.spec.name,
        "weights": config.weights,
        "exported": config.exported,
        "spec": model.spec.to_dict(),
        "preprocessing": pre,
        "num_classes": model.num_classes,
        "classes": classes,
        "runtime": "exported" if config.exported else config.runtime,
        "engine": {str(size): name for size, name in engines.items()},
        "precision": precision,
        "device": config.device,
        "batching": {
            "max_batch_size": config.max_batch_size,
            "batch_timeout_s": config.batch_timeout,
            "workers": config.workers,
            "padded_batch_sizes": list(engines),
        },
        "limits": {
            "max_upload_bytes": config.max_upload_bytes,
            "max_image_pixels": config.max_image_pixels,
            "read_timeout_s": config.read_timeout,
            "request_timeout_s": config.request_timeout,
            "max_pending": config.max_pending,
        },
        "inputs": ACCEPTED,
    }


def _engines(config: ServeConfig) -> tuple[str, dict[int, str]]:
    """The precision served and the engine planned for each padded batch size: the exported file's own (read now,
    so a bad file is a one-line error before any worker starts), else :func:`select_engine`'s choice."""
    from effnet.serving.select import installed_engines  # lazy: imports torch

    sizes = batch_sizes(config.max_batch_size)
    if config.exported:
        from effnet.serving.exported import load_exported  # lazy: imports onnxruntime / openvino

        engine = load_exported(config.exported)
        backend = "openvino" if config.exported.endswith(".xml") else "onnxruntime"
        return engine.precision, dict.fromkeys(sizes, f"{backend} ({engine.backend})")
    if config.runtime != "default":
        return config.precision, dict.fromkeys(sizes, config.runtime)
    device = config.device.split(":")[0]
    installed = installed_engines()
    return config.precision, {n: default_backend(device, config.precision, n, **installed) for n in sizes}


def _check_port(host: str, port: int) -> None:
    """A one-line error now, rather than uvicorn's exit after the workers loaded, when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidValue(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None


def _on_signal(server: Any, spec: ClassifierSpec, config: ServeConfig) -> Callable[[int, Any], None]:
    """The main process's SIGTERM and SIGINT handler: drain, from a thread (the main thread waits inside LitServe).

    The HTTP process gets SIGTERM and drains (uvicorn's graceful shutdown: no new connections, the requests in
    flight answered, ``drain_timeout`` at most); then each worker gets a stop message behind the requests it still
    has queued, and LitServe's own shutdown event is set (what its ``/shutdown`` endpoint sets). Workers ignore the
    signals themselves, and processes forked from the main one inherit this handler and ignore them too, so that a
    signal sent to the whole process group (Ctrl+C, systemd) drains the same way.
    """
    main_pid = os.getpid()

    def stop() -> None:
        while server._shutdown_event is None:  # a signal during start-up: stop as soon as the server is up
            time.sleep(0.1)
        http = [p for p in multiprocessing.active_children() if p.name.startswith("LitServer-")]
        for process in http:
            process.terminate()
        for process in http:
            process.join(config.drain_timeout + 5)
        logging.getLogger("litserve").setLevel(logging.ERROR)  # it would warn that the HTTP process has exited
        try:
            for _ in range(config.workers):
                spec.request_queue.put(STOP)
            server._shutdown_event.set()
        except (OSError, EOFError):  # LitServe's queue manager already gone: the server is stopping anyway
            pass

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() == main_pid:
            threading.Thread(target=stop, name="effnet-drain", daemon=True).start()

    return handler


def serve(
    config: ServeConfig,
    load_model: Callable[[ServeConfig], Any],
    make_runner: Callable[[Any, ServeConfig, int], Any],
    announce: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Serve ``config``'s weights until SIGTERM or Ctrl+C. ``load_model`` / ``make_runner`` are ``effnet predict``'s;
    the weights (and an ``--exported`` file) are read here first, so a bad file is a one-line error before any
    process starts. ``announce`` gets one line once the server is about to listen."""
    _check_port(config.host, config.port)
    model = load_model(config)
    precision, engines = _engines(config)
    metadata = describe(config, model, precision, engines)
    spec = ClassifierSpec(config, model.preprocessing, model.num_classes, metadata)
    api = ClassifierAPI(config, spec, load_model, make_runner)
    del model
    server = ls.LitServer(
        api,
        accelerator="cpu",  # where LitServe schedules workers; the model goes to config.device in setup
        workers_per_device=config.workers,
        timeout=config.request_timeout,
        disable_openapi_url=True,
    )
    server.uvicorn_graceful_timeout = config.drain_timeout
    handler = _on_signal(server, spec, config)
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    where = f"[{config.host}]" if ":" in config.host else config.host
    announce(
        f"effnet serve: {metadata['model']} ({precision}) loading into {config.workers} worker(s), then answering on "
        f"http://{where}:{config.port} (POST /predict, GET /metadata, GET /health); main pid {os.getpid()}"
    )
    try:
        server.run(
            host=config.host,
            port=config.port,
            num_api_servers=1,
            log_level="warning",
            generate_client_file=False,
            http=deadline_protocol(config.read_timeout),
            access_log=config.access_log,
        )
    except RuntimeError as exc:  # LitServe: "One or more workers failed to start" (their traceback is logged above)
        raise InvalidValue(f"the inference worker could not start: {exc}") from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
