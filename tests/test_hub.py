"""Weights by name from the hubs (``hf-hub:``, ``torchvision:``) against real HTTP servers on loopback.

One ``ThreadingHTTPServer`` on 127.0.0.1 plays both hosts: the Hugging Face Hub API that ``hf_hub_download``
talks to (``HEAD``/``GET /{repo}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``, ``ETag``,
``Content-Length``; 404s carry ``X-Error-Code`` as the Hub sends them) via ``HF_ENDPOINT``, and
download.pytorch.org (``GET /models/{file}``) via ``EFFNET_TORCHVISION_BASE_URL``. The weights are randomly
initialised timm / torchvision B0s; caches are temporary (``HF_HOME``, ``TORCH_HOME``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from effnet import limits
from effnet.errors import BadFile, DownloadFailed, InvalidValue, MissingFile, Unsupported
from effnet.models.download import torchvision_hash_prefix
from effnet.models.hub import HubWeights, WeightsRef, default_weights, parse_weights_ref, resolve_weights
from effnet.models.pretrained import PRETRAINED
from test_weights import randomize  # random weights with calibrated BN statistics (logits of a trained net's size)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "timm/efficientnet_b0.test_in1k"


class Files:
    """What the fake hosts serve: ``{url path: bytes}``, plus paths whose connection drops mid-file."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: set[str] = set()
        self.drop: set[str] = set()
        self.stall: set[str] = set()
        self.cut: set[str] = set()
        self.trickle: set[str] = set()  # one byte every 50 ms until the client or the server goes
        self.closing = threading.Event()
        self.requests: list[tuple[str, str]] = []


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _not_found(self) -> None:
            parts = self.path.lstrip("/").split("/resolve/")
            self.send_response(404)
            if parts[0] in files.repos:  # the Hub: a known repo without that file
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
            elif len(parts) == 2:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            files.requests.append((self.command, self.path))
            data = files.files.get(self.path)
            if data is None:
                return self._not_found()
            dropping = self.path in files.drop
            if dropping and body and self.headers.get("Range"):  # a resume attempt: hang up again at once
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if not body:
                return
            if self.path in files.stall:  # half the file, then silence longer than the client's timeout
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                time.sleep(2)
                self.close_connection = True
                return
            if self.path in files.trickle:  # a byte at a time: every read returns, the transfer never ends
                for i in range(len(data)):
                    if files.closing.wait(0.05):
                        break
                    try:
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        break
                self.close_connection = True
                return
            if self.path in files.cut:  # half the file, then an orderly close (FIN) before the announced length
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if dropping:  # half the file, then a reset (RST): the connection dropped mid-file
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

    return Handler


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ThreadingHTTPServer, Files]]:
    """A loopback server for both hosts, with the caches and endpoints pointed at temporary places."""
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", base)
    monkeypatch.setenv("EFFNET_TORCHVISION_BASE_URL", base)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "EFFNET_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    yield httpd, files
    files.closing.set()
    _stop(httpd)


def _stop(httpd: ThreadingHTTPServer) -> None:
    """Stop serving and close the listening socket (later connections are refused, not left waiting)."""
    httpd.shutdown()
    httpd.server_close()


def _timm_repo(
    files: Files, tmp_path: Path, repo: str = REPO, architecture: str = "efficientnet_b0", safetensors: bool = True
) -> torch.nn.Module:
    """A randomly initialised timm model saved with timm's own ``save_for_hf`` and served as ``repo``."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomize(timm.create_model(architecture, pretrained=False))
    folder = tmp_path / "repo" / repo
    timm.models.save_for_hf(model, str(folder), safe_serialization=safetensors)
    files.repos.add(repo)
    for file in folder.iterdir():
        files.files[f"/{repo}/resolve/main/{file.name}"] = file.read_bytes()
    return model


def _torchvision_file(files: Files, monkeypatch: pytest.MonkeyPatch, wrong_hash: bool = False) -> torch.nn.Module:
    """A random torchvision B0 served under a file name carrying its sha256 prefix (or a wrong one); the
    enum's URL points there (same host, download.pytorch.org, replaced by EFFNET_TORCHVISION_BASE_URL)."""
    from torchvision import models

    torch.manual_seed(0)
    model = randomize(models.efficientnet_b0(weights=None))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:8]
    prefix = ("0" if digest[0] != "0" else "1") + digest[1:] if wrong_hash else digest
    name = f"efficientnet_b0_test-{prefix}.pth"
    files.files[f"/models/{name}"] = data
    monkeypatch.setattr(
        models.EfficientNet_B0_Weights.IMAGENET1K_V1.value, "url", f"https://download.pytorch.org/models/{name}"
    )
    return model


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    generator = torch.Generator().manual_seed(1)
    pixels = (torch.rand(300, 260, 3, generator=generator) * 255).to(torch.uint8).numpy()
    path = tmp_path / "img.png"
    Image.fromarray(pixels).save(path)
    return path


def _max_logit_diff(model: torch.nn.Module, reference: torch.nn.Module, tmp_path: Path) -> tuple[float, float]:
    from PIL import Image

    from effnet.serving.preprocess import eval_transform

    x = eval_transform(model.preprocessing)(Image.open(_image(tmp_path))).unsqueeze(0)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    return float((ours - theirs).abs().max()), float(theirs.std())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --------------------------------------------------------------------------------------------
# Parsing (pure)
# --------------------------------------------------------------------------------------------


def test_parse_forms() -> None:
    assert parse_weights_ref("hf-hub:timm/efficientnet_b0.ra_in1k") == WeightsRef(
        "hf-hub", "timm/efficientnet_b0.ra_in1k"
    )
    assert parse_weights_ref("hf_hub:timm/x@v1.0") == WeightsRef("hf-hub", "timm/x", "v1.0")
    assert parse_weights_ref("torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1") == WeightsRef(
        "torchvision", "EfficientNet_B0_Weights", "IMAGENET1K_V1"
    )
    assert parse_weights_ref("torchvision:efficientnet_b0") == WeightsRef("torchvision", "efficientnet_b0")
    assert parse_weights_ref("weights/b0.safetensors") is None
    assert parse_weights_ref("hub:timm/x") is None  # an unknown prefix is a (local) path
    for bad in (
        "hf-hub:",
        "hf-hub:timm/",
        "hf-hub:a/b/c",
        "hf-hub:timm/x@",
        "hf-hub:timm/a..b",
        "hf-hub:t/x y",
        "torchvision:",
        "torchvision:efficientnet_b0.DEFAULT",
        "torchvision:EfficientNet_B0_Weights.",
        "torchvision:1abc",
        "hf-hub:timm/x@../../etc",
    ):
        with pytest.raises(InvalidValue, match="not well formed|a member"):
            parse_weights_ref(bad)


_ident = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
_part = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9_])?", fullmatch=True).filter(
    lambda s: ".." not in s and "--" not in s and not s.endswith(".git")
)


@given(
    st.one_of(
        st.builds(
            WeightsRef, st.just("hf-hub"), st.builds(lambda a, b: f"{a}/{b}", _part, _part), st.one_of(st.none(), _part)
        ),
        st.builds(
            WeightsRef, st.just("torchvision"), _ident.map(lambda s: s + "_Weights"), st.one_of(st.none(), _ident)
        ),
        st.builds(WeightsRef, st.just("torchvision"), _ident.filter(lambda s: not s.endswith("_Weights")), st.none()),
    )
)
def test_parse_round_trips(ref: WeightsRef) -> None:
    assert parse_weights_ref(str(ref)) == ref


@given(st.text(max_size=60))
def test_parse_any_text_is_none_a_ref_or_one_line(text: str) -> None:
    try:
        ref = parse_weights_ref(text)
    except InvalidValue as exc:
        assert "\n" not in str(exc) and text.startswith(("hf-hub:", "hf_hub:", "torchvision:"))
        return
    if ref is None:
        assert not text.startswith(("hf-hub:", "hf_hub:", "torchvision:"))
    else:
        assert parse_weights_ref(str(ref)) == ref


def test_hash_prefix_follows_torchvision() -> None:
    assert torchvision_hash_prefix("efficientnet_b0_rwightman-7f5810bc.pth") == "7f5810bc"
    assert torchvision_hash_prefix("efficientnet_v2_s-dd5fe13b.pth") == "dd5fe13b"
    assert torchvision_hash_prefix("plain.pth") is None


def test_default_weights_exist_in_timm_and_torchvision() -> None:
    timm = pytest.importorskip("timm")
    from torchvision import models

    published = set(timm.list_pretrained("*efficientnet*"))
    for name, entry in PRETRAINED.items():
        ref = entry.reference
        parsed = parse_weights_ref(ref)
        if parsed.hub == "hf-hub":
            assert parsed.name.removeprefix("timm/") in published, ref
        else:
            assert models.get_model_weights(parsed.name).DEFAULT is not None
            assert parsed.name == name
    with pytest.raises(Unsupported, match="resnet50.*no default pretrained weights"):
        default_weights("resnet50")


def test_pretrained_table_records() -> None:
    """Each entry names a registered layout that its library name also picks, and its preprocessing is derived
    offline the way a loaded file's is."""
    pytest.importorskip("timm")
    from effnet.architectures import get_spec
    from effnet.models.convert import REGISTRY, resolve_model_name

    for name, entry in PRETRAINED.items():
        assert entry.model == name and entry.layout in REGISTRY
        assert resolve_model_name(entry.library_name)[:2] == (name, "tf" if entry.layout == "tf" else None)
        pre = entry.preprocessing()
        assert pre.in_chans == 3 and len(pre.class_names) == entry.num_classes == len(entry.class_names()) == 1000
    b1 = PRETRAINED["efficientnet_b1"].preprocessing()  # torchvision's DEFAULT is IMAGENET1K_V2: 255 -> 240 bilinear
    assert (b1.input_size, b1.resize_size, b1.interpolation) == (240, 255, "bilinear")
    v2 = PRETRAINED["efficientnet_v2_b0"].preprocessing()  # timm's input_size is the train size; eval at the spec's
    assert v2.input_size == get_spec("efficientnet_v2_b0").resolution


# --------------------------------------------------------------------------------------------
# Hugging Face Hub (timm repositories)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_hf_hub_success_then_cache_hit_with_server_gone(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import effnet

    httpd, files = server
    reference = _timm_repo(files, tmp_path)
    model = effnet.load_pretrained(None, f"hf-hub:{REPO}")
    assert model.spec.name == "efficientnet_b0" and model.spec.padding == "symmetric"
    assert model.weights_metadata["weights"] == f"hf-hub:{REPO}"
    pre = model.preprocessing
    cfg = reference.pretrained_cfg
    assert (pre.input_size, pre.crop_fraction, pre.interpolation) == (
        cfg["input_size"][-1],
        cfg["crop_pct"],
        cfg["interpolation"],
    )
    assert pre.mean == pytest.approx(cfg["mean"]) and len(pre.class_names) == 1000
    diff, scale = _max_logit_diff(model, reference, tmp_path)
    assert diff <= 1e-4 and scale > 0.1
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") in files.requests
    assert not any("pytorch_model.bin" in path for _, path in files.requests)  # safetensors preferred
    _stop(httpd)  # the host is gone (connections refused): the cache answers
    again = effnet.create_model("efficientnet_b0", pretrained=f"hf-hub:{REPO}")
    torch.testing.assert_close(again.state_dict(), model.state_dict(), rtol=0, atol=0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cache answers without trying the host
    offline = effnet.load_pretrained("efficientnet_b0", f"hf-hub:{REPO}")
    torch.testing.assert_close(offline.state_dict(), model.state_dict(), rtol=0, atol=0)


@pytest.mark.slow
def test_hf_hub_pytorch_model_bin_fallback_and_tf_port(server, tmp_path: Path) -> None:
    import effnet

    _, files = server
    repo = "timm/tf_efficientnet_b0.test"
    reference = _timm_repo(files, tmp_path, repo, "tf_efficientnet_b0", safetensors=False)
    model = effnet.load_pretrained(None, f"hf-hub:{repo}")
    assert model.spec.padding == "tf_same" and model.weights_metadata["source"] == "tf"
    assert ("GET", f"/{repo}/resolve/main/pytorch_model.bin") in files.requests
    diff, _ = _max_logit_diff(model, reference, tmp_path)
    assert diff <= 1e-4


def test_hf_hub_offline_miss_is_one_line(server, monkeypatch: pytest.MonkeyPatch) -> None:
    _, files = server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        MissingFile,
        match=r"config.json of timm/efficientnet_b0.test_in1k is not in the Hugging "
        r"Face cache .* downloads are off",
    ) as info:
        resolve_weights(f"hf-hub:{REPO}")
    assert "\n" not in str(info.value) and files.requests == []


def test_hf_hub_unknown_repo_is_404(server) -> None:
    with pytest.raises(MissingFile, match=r"no repository timm/nope on http://127\.0\.0\.1:\d+ \(not found"):
        resolve_weights("hf-hub:timm/nope")


@pytest.mark.slow
def test_hf_hub_repo_of_another_architecture(server, tmp_path: Path) -> None:
    _, files = server
    _timm_repo(files, tmp_path, "timm/mobilenetv3_small_050.test", "mobilenetv3_small_050")
    with pytest.raises(Unsupported, match="timm architecture 'mobilenetv3_small_050' is not an EfficientNet"):
        resolve_weights("hf-hub:timm/mobilenetv3_small_050.test")
    assert not any("model.safetensors" in path for _, path in files.requests)  # refused before the weights


@pytest.mark.slow
def test_hf_hub_dropped_connection_keeps_nothing(server, tmp_path: Path) -> None:
    _, files = server
    _timm_repo(files, tmp_path)
    files.drop.add(f"/{REPO}/resolve/main/model.safetensors")
    with pytest.raises(DownloadFailed, match="model.safetensors from .*: the connection dropped mid-file") as info:
        resolve_weights(f"hf-hub:{REPO}")
    assert "\n" not in str(info.value)
    blobs = _leftovers(tmp_path / "hf" / "hub" / "models--timm--efficientnet_b0.test_in1k" / "blobs")
    config_blob = hashlib.sha256(files.files[f"/{REPO}/resolve/main/config.json"]).hexdigest()
    assert blobs == [config_blob]  # only the complete config.json; no .incomplete, no partial weights


@pytest.mark.slow
def test_hf_hub_weights_over_the_bound_are_not_fetched(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import effnet.models.download as download

    _, files = server
    _timm_repo(files, tmp_path)
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 1_000_000)
    with pytest.raises(InvalidValue, match=r"model.safetensors is [\d,]+ bytes; at most 1,000,000 are downloaded"):
        resolve_weights(f"hf-hub:{REPO}")
    assert ("HEAD", f"/{REPO}/resolve/main/model.safetensors") in files.requests
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") not in files.requests


# --------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchvision_success_then_cache_hit_offline(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import effnet

    httpd, files = server
    reference = _torchvision_file(files, monkeypatch)
    model = effnet.create_model("efficientnet_b0", pretrained="torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1")
    assert model.weights_metadata["source"] == "torchvision"
    assert (model.preprocessing.input_size, model.preprocessing.resize_size) == (224, 256)
    assert model.preprocessing.interpolation == "bicubic" and model.preprocessing.class_names[0] == "tench"
    diff, scale = _max_logit_diff(model, reference, tmp_path)
    assert diff <= 1e-4 and scale > 0.1
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert _leftovers(checkpoints) == [Path(files.requests[-1][1]).name]  # the file itself, no .partial
    _stop(httpd)
    monkeypatch.setenv("EFFNET_OFFLINE", "1")
    cached = effnet.create_model("efficientnet_b0", pretrained=True)  # DEFAULT = IMAGENET1K_V1, from the cache
    torch.testing.assert_close(cached.state_dict(), model.state_dict(), rtol=0, atol=0)
    assert cached.preprocessing == PRETRAINED["efficientnet_b0"].preprocessing()  # the table's record says so
    features = effnet.create_model("efficientnet_b0", pretrained=True, features_only=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(features(x)[-1], model.stages(model.stem(x)), rtol=0, atol=0)
    ten = effnet.create_model("efficientnet_b0", pretrained=True, num_classes=10)  # a fresh head on the backbone
    assert ten.classifier.out_features == 10 and ten.preprocessing.class_names == ()
    torch.testing.assert_close(ten.stem.conv.weight, model.stem.conv.weight, rtol=0, atol=0)

    from effnet.architectures import get_spec
    from effnet.training.weights import load_initial_weights, weights_conventions  # train --weights: same refs

    plain = effnet.create_model("efficientnet_b0", num_classes=10)  # TF's BN eps 1e-3: not torchvision's network
    refused = r"^torchvision:efficientnet_b0: these torchvision weights need .*bn_eps=1e-05"
    with pytest.raises(ValueError, match=refused):
        load_initial_weights(plain, "torchvision:efficientnet_b0", new_head=False)
    spec = weights_conventions(get_spec("efficientnet_b0").replace(num_classes=10), "torchvision:efficientnet_b0")
    assert (spec.bn_eps, spec.num_classes) == (1e-5, 10)  # what the trainer builds for --weights torchvision:...
    student = effnet.create_model(spec)
    assert load_initial_weights(student, "torchvision:efficientnet_b0", new_head=False) is False  # 1000 != 10
    torch.testing.assert_close(student.stages[3][0].dw.conv.weight, model.stages[3][0].dw.conv.weight)


def test_torchvision_offline_miss_and_unknown_names(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFNET_OFFLINE", "1")
    with pytest.raises(MissingFile, match=r"efficientnet_b0_rwightman-7f5810bc.pth is not in the torch hub cache"):
        resolve_weights("torchvision:efficientnet_b0")
    with pytest.raises(MissingFile, match="has no member IMAGENET9K; it has IMAGENET1K_V1, DEFAULT"):
        resolve_weights("torchvision:EfficientNet_B0_Weights.IMAGENET9K")
    with pytest.raises(MissingFile, match="torchvision has no weight enum EfficientNet_B9_Weights"):
        resolve_weights("torchvision:EfficientNet_B9_Weights")
    with pytest.raises(Unsupported, match="ResNet50_Weights are not EfficientNet weights"):
        resolve_weights("torchvision:resnet50")


@pytest.mark.slow
def test_torchvision_hash_mismatch_removes_the_file(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, files = server
    _torchvision_file(files, monkeypatch, wrong_hash=True)
    with pytest.raises(BadFile, match="sha256 does not start with .* the file was removed"):
        resolve_weights("torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1")
    assert _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


@pytest.mark.slow
@pytest.mark.parametrize("how", ["drop", "cut"])
def test_torchvision_dropped_connection_removes_the_partial(
    how: str, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reset (RST) or an orderly close (FIN) before the announced length: a dropped connection, not a bad hash."""
    _, files = server
    _torchvision_file(files, monkeypatch)
    getattr(files, how).update(files.files)
    with pytest.raises(DownloadFailed, match="dropped mid-file .* the partial file was removed"):
        resolve_weights("torchvision:efficientnet_b0")
    assert _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


def test_torchvision_stalled_host_times_out_and_keeps_nothing(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, files = server
    _torchvision_file(files, monkeypatch)
    files.stall.update(files.files)
    monkeypatch.setattr(limits, "DOWNLOAD_STALL_WINDOW_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(DownloadFailed, match="stalled: nothing received for 0.5 s .* the partial file was removed"):
        resolve_weights("torchvision:efficientnet_b0")
    assert time.perf_counter() - start < 1.9  # given up on before the host spoke again
    assert _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


def test_torchvision_file_over_the_bound_is_refused(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from effnet.models import download

    _, files = server
    _torchvision_file(files, monkeypatch)
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(InvalidValue, match=r"bytes; at most 1,000 are downloaded"):
        resolve_weights("torchvision:efficientnet_b0")
    assert _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


def test_torchvision_404(server, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision import models

    monkeypatch.setattr(
        models.EfficientNet_B0_Weights.IMAGENET1K_V1.value,
        "url",
        "https://download.pytorch.org/models/efficientnet_b0_gone-01234567.pth",
    )
    with pytest.raises(MissingFile, match=r"/models/efficientnet_b0_gone-01234567.pth not found \(HTTP 404\)"):
        resolve_weights("torchvision:efficientnet_b0")


def test_unreachable_host_is_one_line_at_once(server, capfd: pytest.CaptureFixture[str]) -> None:
    """No network (the host takes no connection): said once, at once, not through huggingface_hub's retries."""
    import time

    httpd, _ = server
    _stop(httpd)  # nothing listens on the port any more
    start = time.monotonic()
    with pytest.raises(DownloadFailed) as info:
        resolve_weights(f"hf-hub:{REPO}")
    assert time.monotonic() - start < 5  # huggingface_hub's backoff took 1 + 2 + 4 + 8 + 8 s
    message = str(info.value)
    assert re.fullmatch(
        rf"hf-hub:{REPO}: cannot reach http://127\.0\.0\.1:\d+ \(ConnectionRefusedError: .*\), and config\.json "
        rf"of {REPO} is not in the Hugging Face cache .*",
        message,
    ), message
    out, err = capfd.readouterr()
    assert "Retrying" not in out + err and "thrown while requesting" not in out + err, out + err


def test_create_model_pretrained_refusals() -> None:
    import effnet

    with pytest.raises(Unsupported, match="model 'resnet50' has no default pretrained weights"):
        effnet.create_model("resnet50", pretrained=True)
    with pytest.raises(Unsupported, match="takes padding from the weights"):
        effnet.create_model("efficientnet_b0", pretrained="torchvision:efficientnet_b0", padding="tf_same")
    with pytest.raises(InvalidValue, match="pretrained must be True, False or a weights reference"):
        effnet.create_model("efficientnet_b0", pretrained=1)
    with pytest.raises(InvalidValue, match="not well formed"):
        effnet.create_model("efficientnet_b0", pretrained="hf-hub:a/b/c")


def test_resolved_weights_pass_through(tmp_path: Path) -> None:
    from effnet.preprocessing import Preprocessing

    hub = HubWeights("hf-hub:a/b", tmp_path / "w.safetensors", "timm", "efficientnet_b0", Preprocessing(), 1000)
    assert resolve_weights(hub) is hub


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_predict_with_hf_hub_weights(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from effnet.cli import main

    _, files = server
    _timm_repo(files, tmp_path)
    image = _image(tmp_path)
    rc = main(["predict", str(image), "--weights", f"hf-hub:{REPO}", "--runtime", "eager", "--top-k", "2", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out[out.index("{") :])
    assert result["weights"] == f"hf-hub:{REPO}" and result["model"] == "efficientnet_b0"
    assert len(result["predictions"][0]["top"]) == 2


@pytest.mark.slow
def test_cli_predict_with_torchvision_weights(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from effnet.cli import main

    _, files = server
    _torchvision_file(files, monkeypatch)
    rc = main(
        [
            "predict",
            str(_image(tmp_path)),
            "--weights",
            "torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1",
            "--runtime",
            "eager",
            "--top-k",
            "3",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out[out.index("{") :])
    assert result["model"] == "efficientnet_b0" and len(result["predictions"][0]["top"]) == 3
    monkeypatch.setenv("EFFNET_OFFLINE", "1")  # a reference not in the cache, offline: one line, exit 2
    rc = main(["predict", str(_image(tmp_path)), "--weights", "torchvision:EfficientNet_B1_Weights.IMAGENET1K_V1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("effnet predict: error: ")


def test_cli_predict_unknown_repo_is_one_line(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from effnet.cli import main

    rc = main(["predict", str(_image(tmp_path)), "--weights", "hf-hub:timm/nope", "--runtime", "eager"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("effnet predict: error: hf-hub:timm/nope: no repository timm/nope")


# --------------------------------------------------------------------------------------------
# Hosts that stall: a total deadline and a stall detector on both paths (small bounds, so each test takes seconds)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A host on 127.0.0.1 that accepts connections and never reads or answers; closed (RST) at the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    listener.close()


def _small_bounds(monkeypatch: pytest.MonkeyPatch, window: float = 1.0, deadline: float = 30.0) -> None:
    monkeypatch.setattr(limits, "DOWNLOAD_STALL_WINDOW_S", window)
    monkeypatch.setattr(limits, "DOWNLOAD_DEADLINE_S", deadline)
    monkeypatch.setattr(limits, "DOWNLOAD_MIN_BYTES_PER_S", 1000)


def _incomplete(tmp_path: Path) -> list[str]:
    return [p for p in _leftovers(tmp_path / "hf" / "hub") if p.endswith((".incomplete", ".tmp"))]


def _config_repo(files: Files, size: int = 4000) -> None:
    """A repository whose config.json (the first file a hf-hub: reference fetches) is ``size`` bytes."""
    files.repos.add(REPO)
    files.files[f"/{REPO}/resolve/main/config.json"] = b"{" + b" " * (size - 2) + b"}"


@pytest.mark.parametrize("host", ["hf", "torchvision"])
def test_a_host_that_accepts_and_never_answers_is_given_up_on(
    host: str, server, silent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, files = server
    _small_bounds(monkeypatch)
    if host == "hf":
        monkeypatch.setenv("HF_ENDPOINT", silent)
        ref = f"hf-hub:{REPO}"
    else:
        _torchvision_file(files, monkeypatch)
        monkeypatch.setenv("EFFNET_TORCHVISION_BASE_URL", silent)
        ref = "torchvision:efficientnet_b0"
    start = time.perf_counter()
    with pytest.raises(DownloadFailed, match=r"stalled: 0 bytes in the last 1 s, below 1,000 bytes/s") as info:
        resolve_weights(ref)
    assert time.perf_counter() - start < 15 and "\n" not in str(info.value)  # a helper process starts too
    assert _incomplete(tmp_path) == [] and _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


@pytest.mark.parametrize("host", ["hf", "torchvision"])
def test_a_host_that_trickles_is_given_up_on_and_nothing_partial_is_kept(
    host: str, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, files = server
    _small_bounds(monkeypatch)
    if host == "hf":
        _config_repo(files)
        ref = f"hf-hub:{REPO}"
    else:
        _torchvision_file(files, monkeypatch)
        ref = "torchvision:efficientnet_b0"
    files.trickle.update(files.files)
    start = time.perf_counter()
    with pytest.raises(DownloadFailed, match=r"stalled: \d+ bytes in the last 1 s, below 1,000 bytes/s"):
        resolve_weights(ref)
    assert time.perf_counter() - start < 15  # per-read timeouts alone would wait forever
    assert _incomplete(tmp_path) == [] and _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


@pytest.mark.parametrize("host", ["hf", "torchvision"])
def test_a_download_past_its_deadline_stops(host: str, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, files = server
    _small_bounds(monkeypatch, window=60.0, deadline=1.0)
    monkeypatch.setattr(limits, "DOWNLOAD_MIN_BYTES_PER_S", 1)  # a trickle of 20 bytes/s is not a stall here
    if host == "hf":
        _config_repo(files)
        ref = f"hf-hub:{REPO}"
    else:
        _torchvision_file(files, monkeypatch)
        ref = "torchvision:efficientnet_b0"
    files.trickle.update(files.files)
    start = time.perf_counter()
    with pytest.raises(DownloadFailed, match=r"not finished after 1 s \(effnet.limits.DOWNLOAD_DEADLINE_S\)"):
        resolve_weights(ref)
    assert time.perf_counter() - start < 15
    assert _incomplete(tmp_path) == [] and _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


def test_partial_files_of_a_killed_download_are_removed_next_time(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    _, files = server
    _small_bounds(monkeypatch)
    _torchvision_file(files, monkeypatch)
    name = next(iter(files.files)).rsplit("/", 1)[1]
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    old, fresh = checkpoints / f".{name}.killed.tmp", checkpoints / f".{name}.running.tmp"
    for path in (old, fresh):
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 10, time.time() - 10))  # untouched for more than two stall windows
    blobs = tmp_path / "hf" / "hub" / "models--timm--efficientnet_b0.test_in1k" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "abc.1234.incomplete").write_bytes(b"partial")
    os.utime(blobs / "abc.1234.incomplete", (time.time() - 10, time.time() - 10))
    resolve_weights("torchvision:efficientnet_b0")
    assert not old.exists() and fresh.exists()  # a live download's file is left alone
    _config_repo(files, 100)
    with pytest.raises(Unsupported, match="names no timm architecture"):  # the download itself went through
        resolve_weights(f"hf-hub:{REPO}")
    assert _incomplete(tmp_path) == []
