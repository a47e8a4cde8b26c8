"""Loopback helpers for ``benchmarks/serve_load.py`` and the ``effnet serve`` tests: start a server, send requests.

Every call is bounded in time (socket timeouts, a start-up deadline); servers run in their own session so that a test
can signal one process or the whole group.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (>= 1024, as the server requires)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 1024:
            return port


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, Any]:
    """``(status, parsed JSON or text)`` of one request to ``127.0.0.1:port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    kind = response.getheader("content-type") or ""
    return response.status, json.loads(data) if kind.startswith("application/json") else data.decode()


def predict(port: int, image: bytes, how: str = "raw", top_k: int | None = None, timeout: float = 60) -> tuple:
    """POST ``image`` to ``/predict`` as ``raw`` bytes, a ``multipart`` upload or ``json`` base64."""
    path = "/predict" + (f"?top_k={top_k}" if top_k is not None else "")
    if how == "raw":
        return request(port, "POST", path, image, {"Content-Type": "image/jpeg"}, timeout)
    if how == "json":
        import base64

        body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
        return request(port, "POST", path, body, {"Content-Type": "application/json"}, timeout)
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return request(port, "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout)


def healthy(port: int) -> bool:
    """Whether ``GET /health`` answers 200 now."""
    try:
        return request(port, "GET", "/health", timeout=5)[0] == 200
    except OSError:
        return False


class Server:
    """``effnet serve ARGS --port P`` in a subprocess of its own session; ``start`` waits for ``/health``."""

    def __init__(self, *args: str, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.args = [sys.executable, "-m", "effnet", "serve", *args, "--port", str(self.port)]
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, deadline: float = 300) -> Server:
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        if self.log:
            with open(self.log, "wb") as out:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen(self.args, env=env, stdout=out, stderr=out, start_new_session=True)
        else:
            out = subprocess.DEVNULL
            self.process = subprocess.Popen(self.args, env=env, stdout=out, stderr=out, start_new_session=True)
        end = time.monotonic() + deadline
        while not healthy(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"effnet serve exited with {self.process.returncode}: {self.output()}")
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"effnet serve not healthy after {deadline} s: {self.output()}")
            time.sleep(0.5)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""

    def signal(self, sig: int, group: bool = False) -> None:
        assert self.process is not None
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, then the exit status (SIGKILL to the group after ``timeout`` s)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            pass
