"""The inference side of ``effnet serve``: a LitServe worker process that batches requests from every client.

:class:`ClassifierAPI` is the LitServe ``LitAPI`` each worker process runs: ``setup`` loads the weights and makes the
engine exactly as ``effnet predict`` does (the CLI passes in its own ``load_model`` and ``make_runner``), then warms
it at every batch size it will see; ``predict`` runs one batch of preprocessed images and returns each one's top
classes. :class:`BatchLoop` is the worker's loop (a LitServe ``LitLoop``): it blocks until a request arrives, then
takes every request already queued, up to ``max_batch_size``, waiting at most ``batch_timeout`` for more while the
batch is not full. So a lone client waits for no one, and under load the requests that arrived while a batch ran
form the next one. Batches are zero-padded to the next power of two (at most ``max_batch_size``): an engine that
compiles per batch size (OpenVINO) compiles a handful of shapes, all at start-up. Each answer says how many
requests shared its forward pass (``batch_size``) and which engine ran it: the batching is measured per request.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from queue import Empty
from typing import Any

import litserve as ls
from litserve.loops.base import LitLoop
from litserve.utils import LitAPIStatus, LoopResponseType

from effnet.config.serve import ServeConfig

__all__ = ["batch_sizes", "padded_size", "ClassifierAPI", "BatchLoop"]

STOP = (None, None, None, None)
"""A worker stops when it takes this from its request queue (LitServe's own stop value): every request queued
before it has been answered."""


def batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes a server runs: powers of two below ``max_batch_size``, then ``max_batch_size``."""
    sizes, n = [], 1
    while n < max_batch_size:
        sizes.append(n)
        n *= 2
    return (*sizes, max_batch_size)


def padded_size(n: int, max_batch_size: int) -> int:
    """The batch size ``n`` requests run at: the smallest of :func:`batch_sizes` that holds them."""
    return next(size for size in batch_sizes(max_batch_size) if size >= n)


class ClassifierAPI(ls.LitAPI):
    """The model in a worker process: ``setup`` loads it, ``predict`` classifies a batch of preprocessed images.

    ``load_model(config)`` and ``make_runner(model, config, batch)`` are ``effnet predict``'s own (the CLI's), so the
    server runs the weights, runtime and precision exactly as ``predict`` does.
    """

    def __init__(
        self,
        config: ServeConfig,
        spec: Any,
        load_model: Callable[[ServeConfig], Any],
        make_runner: Callable[[Any, ServeConfig, int], Any],
    ) -> None:
        super().__init__(
            max_batch_size=config.max_batch_size,
            batch_timeout=config.batch_timeout,
            spec=spec,
            loop=BatchLoop(),
        )
        self.config, self._load_model, self._make_runner = config, load_model, make_runner
        self.runner: Any = None
        self.class_names: tuple[str, ...] = ()

    def setup(self, device: str) -> None:
        """Load the weights and make the engine on ``config.device`` (LitServe's ``device`` is only where the
        worker was scheduled); the CPU's cores are split among the workers; every padded batch size is run once."""
        import torch  # lazy: the worker process imports torch here, the CLI's --help never does

        # Ctrl+C or a SIGTERM sent to the whole process group must not drop the requests in flight: the main
        # process drains the HTTP process first, then queues a STOP behind the last request (effnet.serving.server)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.config.workers))
        model = self._load_model(self.config)
        pre = model.preprocessing
        self.class_names = pre.class_names
        self.runner = self._make_runner(model, self.config, 1)
        for size in batch_sizes(self.config.max_batch_size):
            self.runner(torch.zeros(size, pre.in_chans, pre.input_size, pre.input_size))

    def predict(self, x: Sequence[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
        """``x``: one ``{"image": (C, H, W) float32 array, "top_k": k}`` per request, all run in one forward pass
        (zero-padded to :func:`padded_size`). One ``{"labels", "indices", "probabilities", "batch_size",
        "engine"}`` per request."""
        import torch  # lazy: see setup

        from effnet.serving.inference import top_k  # lazy: imports torch

        n = len(x)
        batch = torch.stack([torch.from_numpy(item["image"]) for item in x])
        size = padded_size(n, self.config.max_batch_size)
        if size > n:
            batch = torch.cat([batch, batch.new_zeros((size - n, *batch.shape[1:]))])
        logits = self.runner(batch)[:n]
        engine = self.runner.backend
        k_max = max(item["top_k"] for item in x)
        values, indices = top_k(logits, k_max)
        answers = []
        for item, probs, idxs in zip(x, values.tolist(), indices.tolist(), strict=True):
            k = item["top_k"]
            labels = [self.class_names[i] if i < len(self.class_names) else f"class {i}" for i in idxs[:k]]
            answers.append(
                {
                    "labels": labels,
                    "indices": idxs[:k],
                    "probabilities": [float(p) for p in probs[:k]],
                    "batch_size": n,
                    "engine": engine,
                }
            )
        return answers


class BatchLoop(LitLoop):
    """A worker's loop: collect a batch (:meth:`collect`), answer requests that waited past the request timeout
    with 504, run the rest through ``lit_api.predict`` and send each answer to the HTTP process that asked."""

    def __call__(
        self,
        lit_api: ls.LitAPI,
        device: str,
        worker_id: int,
        request_queue: Any,
        transport: Any,
        workers_setup_status: Any,
        callback_runner: Any,
    ) -> None:
        while True:
            items, stop = self.collect(lit_api, request_queue)
            if items:
                self._answer(lit_api, items, transport)
            if stop:
                # every request is answered; the interpreter's own shutdown can hang in native code (the engines'
                # thread pools: seen > 4 s with no Python frame left), so the process ends here
                sys.stderr.flush()
                os._exit(0)

    def collect(self, lit_api: ls.LitAPI, request_queue: Any) -> tuple[list[Any], bool]:
        """The next batch of ``(response_queue_id, uid, timestamp, payload)`` and whether the server asked the
        worker to stop: blocks up to 1 s for a first request, then takes what is queued (waiting at most
        ``batch_timeout`` for more) up to ``max_batch_size``."""
        try:
            first = request_queue.get(timeout=1.0)
        except Empty:
            return [], False
        if first == STOP:
            return [], True
        items = [first]
        deadline = time.monotonic() + lit_api.batch_timeout
        while len(items) < lit_api.max_batch_size:
            wait = deadline - time.monotonic()
            try:
                item = request_queue.get(timeout=wait) if wait > 0 else request_queue.get_nowait()
            except Empty:
                break
            if item == STOP:
                return items, True
            items.append(item)
        return items, False

    def _answer(self, lit_api: ls.LitAPI, items: list[Any], transport: Any) -> None:
        timeout = lit_api.request_timeout
        now = time.monotonic()
        fresh = []
        for queue_id, uid, timestamp, payload in items:
            if timeout and timeout > 0 and now - timestamp > timeout:
                error = {"status": 504, "error": f"the request waited over {timeout:g} s for an inference worker"}
                self._send(transport, queue_id, uid, error, LitAPIStatus.ERROR)
            else:
                fresh.append((queue_id, uid, payload))
        if not fresh:
            return
        try:
            answers = lit_api.predict([payload for _, _, payload in fresh])
        except Exception as exc:  # an engine failure: every request of the batch gets a 500 naming it
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            for queue_id, uid, _ in fresh:
                self._send(
                    transport, queue_id, uid, {"status": 500, "error": f"inference failed: {line}"}, LitAPIStatus.ERROR
                )
            return
        for (queue_id, uid, _), answer in zip(fresh, answers, strict=True):
            self._send(transport, queue_id, uid, answer, LitAPIStatus.OK)

    def _send(self, transport: Any, queue_id: int, uid: str, data: Any, status: str) -> None:
        self.put_response(transport, queue_id, uid, data, status, LoopResponseType.REGULAR)
