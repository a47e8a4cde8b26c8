"""Pretrained weights by name from the hubs: parse a weights reference, download it once, say how to preprocess.

Two forms, as timm and torchvision users write them:

- ``hf-hub:<namespace>/<repo>[@<revision>]`` (also ``hf_hub:``): a timm model repository on the Hugging Face Hub,
  e.g. ``hf-hub:timm/efficientnet_b0.ra_in1k``. Its ``config.json`` names the timm architecture (which must be an
  EfficientNet / EfficientNetV2 / Lite that effnet builds) and holds the ``pretrained_cfg`` (input_size,
  crop_pct, interpolation, mean, std, num_classes, label_names); the weights are ``model.safetensors``, else
  ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``). Downloads go through
  ``huggingface_hub.hf_hub_download`` into the standard HF cache (``HF_HUB_CACHE`` / ``HF_HOME``) and honour
  ``HF_ENDPOINT``, read when called.
- ``torchvision:<Enum>[.<MEMBER>]`` or ``torchvision:<model name>`` (the enum's ``DEFAULT``), e.g.
  ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1`` or ``torchvision:efficientnet_v2_s``. The file is the
  enum's ``url``, checked against the sha256 prefix in its name (torchvision's convention) by
  a download that waits at most :data:`~effnet.limits.DOWNLOAD_TIMEOUT_S` for the host or the next bytes, fetches
  at most :data:`~effnet.limits.MAX_DOWNLOAD_BYTES` and writes a temporary file renamed when complete and checked,
  into ``torch.hub.get_dir()/checkpoints`` (torchvision's own cache). The preprocessing is the enum's
  ``transforms()`` and the class names its ``meta["categories"]``. ``EFFNET_TORCHVISION_BASE_URL`` replaces
  ``https://download.pytorch.org`` in the URL (a mirror, or a test server).

Offline: with ``HF_HUB_OFFLINE=1`` or ``EFFNET_OFFLINE=1`` nothing is downloaded; a cached file is used and a
file not in the cache is a one-line :class:`~effnet.errors.MissingFile` naming it. Every failure is one line
(:mod:`effnet.errors`): an unknown repository, enum or file (``MissingFile``), a hash mismatch (``BadFile``, the
file removed), a dropped connection or unreachable host (``DownloadFailed``, nothing partial kept), a repository
that is not an EfficientNet (``Unsupported``). :func:`parse_weights_ref` is pure; nothing is imported from
torch, torchvision or huggingface_hub until a reference is resolved.
"""

from __future__ import annotations

import http.client
import inspect
import os
import re
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, DownloadFailed, InvalidValue, MissingFile, Unsupported
from effnet.io import atomic_path
from effnet.limits import DOWNLOAD_TIMEOUT_S, MAX_CLASSES, MAX_DOWNLOAD_BYTES, MAX_IN_CHANS, check_int, read_json_file
from effnet.models.sources import imagenet_class_names
from effnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

__all__ = [
    "HF_PREFIXES",
    "TORCHVISION_PREFIX",
    "TORCHVISION_BASE_URL",
    "TORCHVISION_BASE_ENV",
    "OFFLINE_ENVS",
    "DEFAULT_WEIGHTS",
    "WeightsRef",
    "HubWeights",
    "parse_weights_ref",
    "is_weights_ref",
    "default_weights",
    "offline",
    "hf_cache_dir",
    "torchvision_hash_prefix",
    "resolve_weights",
]

HF_PREFIXES = ("hf-hub:", "hf_hub:")
"""Prefixes of a Hugging Face Hub reference (timm accepts both spellings)."""
TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_BASE_URL = "https://download.pytorch.org"
"""Host of torchvision's weight files; ``EFFNET_TORCHVISION_BASE_URL`` replaces it when set."""
TORCHVISION_BASE_ENV = "EFFNET_TORCHVISION_BASE_URL"
OFFLINE_ENVS = ("EFFNET_OFFLINE", "HF_HUB_OFFLINE")
"""Either set to 1/true/yes/on: use cached files only."""
_TRUE = {"1", "ON", "YES", "TRUE"}

DEFAULT_WEIGHTS: dict[str, str] = {
    **{f"efficientnet_b{i}": f"torchvision:efficientnet_b{i}" for i in range(8)},
    **{f"efficientnet_v2_{s}": f"torchvision:efficientnet_v2_{s}" for s in "sml"},
    "efficientnet_b8": "hf-hub:timm/tf_efficientnet_b8.ra_in1k",
    "efficientnet_l2": "hf-hub:timm/tf_efficientnet_l2.ns_jft_in1k",
    "efficientnet_lite0": "hf-hub:timm/efficientnet_lite0.ra_in1k",
    **{f"efficientnet_lite{i}": f"hf-hub:timm/tf_efficientnet_lite{i}.in1k" for i in range(1, 5)},
    "efficientnet_v2_xl": "hf-hub:timm/tf_efficientnetv2_xl.in21k_ft_in1k",
    **{f"efficientnet_v2_b{i}": f"hf-hub:timm/tf_efficientnetv2_b{i}.in1k" for i in range(4)},
}
"""What ``create_model(name, pretrained=True)`` loads: torchvision's ``DEFAULT`` where torchvision has weights,
else timm's ImageNet-1k repository on the Hugging Face Hub. ``mobilenetv2`` and ``resnet50`` have none."""

_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO = re.compile(rf"(?:{_PART}/)?{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,255}")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
_ACCEPTED = (
    "hf-hub:<namespace>/<repo>[@<revision>] (e.g. hf-hub:timm/efficientnet_b0.ra_in1k) or "
    "torchvision:<Enum>[.<MEMBER>] / torchvision:<model> "
    "(e.g. torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1)"
)


@dataclass(frozen=True)
class WeightsRef:
    """A parsed weights reference. ``hub``: ``hf-hub`` or ``torchvision``; ``name``: the repository id, or the
    torchvision weight enum / model name; ``member``: the revision (hf-hub) or enum member (torchvision), if given."""

    hub: str
    name: str
    member: str | None = None

    def __str__(self) -> str:
        if self.hub == "hf-hub":
            return f"hf-hub:{self.name}" + (f"@{self.member}" if self.member else "")
        return f"torchvision:{self.name}" + (f".{self.member}" if self.member else "")


@dataclass(frozen=True)
class HubWeights:
    """A resolved reference: the local file, the converter layout (``timm``, ``tf``, ``torchvision``), the model
    name the source uses (timm architecture / torchvision model), the source's preprocessing and class count."""

    ref: str
    path: Path
    source: str
    model_name: str
    preprocessing: Preprocessing
    num_classes: int


def _is_valid_repo(name: str) -> bool:
    return bool(_REPO.fullmatch(name)) and ".." not in name and "--" not in name and not name.endswith(".git")


def parse_weights_ref(text: str) -> WeightsRef | None:
    """The reference in ``text``, or ``None`` when it has no hub prefix (a local path). Pure; no I/O.

    A prefixed text that is not well formed is a one-line :class:`InvalidValue` saying what is accepted.
    """
    if not isinstance(text, str):
        return None
    prefix = next((p for p in (*HF_PREFIXES, TORCHVISION_PREFIX) if text.startswith(p)), None)
    if prefix is None:
        return None
    body = text[len(prefix) :]
    if prefix in HF_PREFIXES:
        repo, sep, revision = body.partition("@")
        if not _is_valid_repo(repo) or (sep and (not _REVISION.fullmatch(revision) or ".." in revision)):
            raise InvalidValue(f"weights reference {text!r} is not well formed; expected {_ACCEPTED}")
        return WeightsRef("hf-hub", repo, revision or None)
    name, sep, member = body.partition(".")
    if not _IDENT.fullmatch(name) or (sep and not _IDENT.fullmatch(member)):
        raise InvalidValue(f"weights reference {text!r} is not well formed; expected {_ACCEPTED}")
    if sep and not name.endswith("_Weights"):
        raise InvalidValue(
            f"weights reference {text!r}: a member (.{member}) follows a weight enum such as "
            "EfficientNet_B0_Weights; a model name (torchvision:efficientnet_b0) means its "
            "DEFAULT"
        )
    return WeightsRef("torchvision", name, member or None)


def is_weights_ref(value: Any) -> bool:
    """Whether ``value`` is a hub reference (a resolved :class:`HubWeights` or a prefixed string)."""
    return isinstance(value, HubWeights) or (
        isinstance(value, str) and value.startswith((*HF_PREFIXES, TORCHVISION_PREFIX))
    )


def default_weights(name: str) -> str:
    """The reference ``pretrained=True`` loads for model ``name`` (:data:`DEFAULT_WEIGHTS`); none is one line."""
    if name not in DEFAULT_WEIGHTS:
        raise Unsupported(
            f"model {name!r} has no default pretrained weights; pretrained=True works for "
            f"{', '.join(DEFAULT_WEIGHTS)} (or pass a reference: {_ACCEPTED})"
        )
    return DEFAULT_WEIGHTS[name]


def offline() -> bool:
    """Whether ``EFFNET_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return any(os.environ.get(name, "").strip().upper() in _TRUE for name in OFFLINE_ENVS)


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache as ``huggingface_hub`` computes it, from the environment at call time."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def torchvision_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix in a torchvision file name: the hex digits after the last ``-`` (``b0-7f5810bc.pth``)."""
    match = re.search(r"-([0-9a-f]+)\.[^-]*$", filename)
    return match.group(1) if match else None


def resolve_weights(ref: str | WeightsRef | HubWeights) -> HubWeights:
    """Download (or find in the cache) the weights ``ref`` names; the file, its layout and preprocessing."""
    if isinstance(ref, HubWeights):
        return ref
    parsed = ref if isinstance(ref, WeightsRef) else parse_weights_ref(ref)
    if parsed is None:
        raise InvalidValue(f"{ref!r} is not a weights reference; expected {_ACCEPTED}")
    return _resolve_hf(parsed) if parsed.hub == "hf-hub" else _resolve_torchvision(parsed)


# --------------------------------------------------------------------------------------------
# Hugging Face Hub (timm repositories)
# --------------------------------------------------------------------------------------------


_DROPPED = {"ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectionResetError", "IncompleteRead"}
"""httpx / OS errors that mean the transfer started and the connection was lost."""


class _NoSuchEntry(Exception):
    """A file the repository does not have (the caller tries the next name)."""


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no response"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


def _hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _check_size(ref: WeightsRef, filename: str, info: Any) -> None:
    """Refuse, before any byte of it is fetched, a file over :data:`MAX_DOWNLOAD_BYTES` (a dry run's answer)."""
    size = getattr(info, "file_size", None)
    if getattr(info, "will_download", False) and size is not None and size > MAX_DOWNLOAD_BYTES:
        raise InvalidValue(
            f"{ref}: {filename} is {size:,} bytes; at most {MAX_DOWNLOAD_BYTES:,} are downloaded "
            "(effnet.limits.MAX_DOWNLOAD_BYTES)"
        )


def _hf_file(ref: WeightsRef, filename: str, sized: bool = False) -> Path:
    """``hf_hub_download`` of one file, every huggingface_hub / HTTP failure translated to one line.

    ``sized``: ask the file's size first (a dry run: one HEAD request) and refuse one over the bound.
    """
    from huggingface_hub import errors as hf
    from huggingface_hub import hf_hub_download

    endpoint, cache, is_offline = _hf_endpoint(), hf_cache_dir(), offline()
    where = {"revision": ref.member, "cache_dir": str(cache), "endpoint": endpoint, "local_files_only": is_offline}
    try:
        if sized and not is_offline and "dry_run" in inspect.signature(hf_hub_download).parameters:
            _check_size(ref, filename, hf_hub_download(ref.name, filename, dry_run=True, **where))
        return Path(hf_hub_download(ref.name, filename, **where))
    except hf.RevisionNotFoundError:
        raise MissingFile(f"{ref}: repository {ref.name} has no revision {ref.member!r} on {endpoint}") from None
    except hf.RepositoryNotFoundError:
        raise MissingFile(f"{ref}: no repository {ref.name} on {endpoint} (not found, private or gated)") from None
    except hf.LocalEntryNotFoundError as exc:
        if is_offline:
            raise MissingFile(
                f"{ref}: {filename} of {ref.name} is not in the Hugging Face cache {cache} and "
                "downloads are off (HF_HUB_OFFLINE/EFFNET_OFFLINE)"
            ) from None
        raise DownloadFailed(
            f"{ref}: cannot download {filename} from {endpoint} ({_describe(exc.__cause__)}) and "
            f"it is not in the cache {cache}"
        ) from None
    except getattr(hf, "RemoteEntryNotFoundError", hf.EntryNotFoundError):  # after the local miss, its sibling
        raise _NoSuchEntry(filename) from None
    except hf.HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise DownloadFailed(
            f"{ref}: downloading {filename} from {endpoint} failed (HTTP {status}); nothing partial was kept"
        ) from None
    except InvalidValue:
        raise
    except Exception as exc:  # httpx/OS errors after huggingface_hub's retries: a dropped connection, a full disk
        dropped = type(exc).__name__ in _DROPPED
        what = "the connection dropped mid-file" if dropped else "failed"
        raise DownloadFailed(
            f"{ref}: downloading {filename} from {endpoint}: {what} ({_describe(exc)}); nothing partial was kept"
        ) from None


def _label_names(config: dict[str, Any], cfg: dict[str, Any], num_classes: int) -> tuple[str, ...]:
    labels = config.get("label_names", cfg.get("label_names"))
    if isinstance(labels, dict):
        labels = [labels.get(str(i), labels.get(i)) for i in range(len(labels))]
    if isinstance(labels, list) and len(labels) == num_classes and all(isinstance(x, str) for x in labels):
        return tuple(labels)
    return imagenet_class_names() if num_classes == 1000 else ()


def _timm_config(config: Any, ref: WeightsRef) -> tuple[str, Preprocessing, int]:
    """(architecture, preprocessing, num_classes) from a timm ``config.json``; malformed fields are one line."""
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise Unsupported(
            f"{ref}: config.json names no timm architecture; effnet loads timm EfficientNet "
            "repositories (hf-hub:timm/<architecture>.<tag>)"
        )
    cfg = config.get("pretrained_cfg", config)
    if not isinstance(cfg, dict):
        raise BadFile(f"{ref}: config.json pretrained_cfg must be an object, got {type(cfg).__name__}")
    try:
        num_classes = check_int("num_classes", config.get("num_classes", cfg.get("num_classes", 1000)), 1, MAX_CLASSES)
        size = cfg.get("input_size", [3, 224, 224])
        if not isinstance(size, list) or len(size) != 3:
            raise InvalidValue(f"input_size must be [channels, height, width], got {size!r}")
        in_chans = check_int("input_size channels", size[0], 1, MAX_IN_CHANS)
        pre = Preprocessing(
            size[-1],
            cfg.get("crop_pct", 0.875),
            cfg.get("interpolation", "bicubic"),
            tuple(cfg.get("mean", IMAGENET_MEAN)),
            tuple(cfg.get("std", IMAGENET_STD)),
            _label_names(config, cfg, num_classes),
            in_chans,
        )
    except (TypeError, ValueError) as exc:
        raise BadFile(f"{ref}: config.json pretrained_cfg: {exc}") from None
    return config["architecture"], pre, num_classes


def _timm_source(architecture: str, ref: WeightsRef) -> str:
    """``tf`` or ``timm`` for an architecture effnet builds; any other is a one-line Unsupported."""
    from effnet.models.weights import resolve_model_name

    try:
        name, hint, _ = resolve_model_name(architecture)
    except ValueError:
        name, hint = "", None
    if not name.startswith("efficientnet_"):
        raise Unsupported(
            f"{ref}: timm architecture {architecture!r} is not an EfficientNet effnet builds; "
            "accepted: efficientnet_b*/lite*, efficientnetv2_*, tf_efficientnet_*, "
            "tf_efficientnetv2_*"
        )
    return "tf" if hint == "tf" else "timm"


def _resolve_hf(ref: WeightsRef) -> HubWeights:
    try:
        config_file = _hf_file(ref, "config.json")
    except _NoSuchEntry:
        raise Unsupported(
            f"{ref}: the repository has no config.json, so it is not a timm model; effnet loads "
            "timm EfficientNet repositories (hf-hub:timm/<architecture>.<tag>)"
        ) from None
    architecture, pre, num_classes = _timm_config(read_json_file(config_file, f"{ref} config.json"), ref)
    source = _timm_source(architecture, ref)
    try:
        weights = _hf_file(ref, "model.safetensors", sized=True)
    except _NoSuchEntry:
        try:
            weights = _hf_file(ref, "pytorch_model.bin", sized=True)
        except _NoSuchEntry:
            raise MissingFile(f"{ref}: the repository has neither model.safetensors nor pytorch_model.bin") from None
    return HubWeights(str(ref), weights, source, architecture, pre, num_classes)


# --------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------


def _torchvision_enums() -> list[str]:
    from torchvision import models

    return sorted(n for n in dir(models) if n.startswith("EfficientNet") and n.endswith("_Weights"))


def _torchvision_member(ref: WeightsRef) -> Any:
    """The weight enum member ``ref`` names (``DEFAULT`` when no member is given)."""
    from torchvision import models

    if ref.name.endswith("_Weights"):
        enum = getattr(models, ref.name, None)
        if not (isinstance(enum, type) and issubclass(enum, models.WeightsEnum)):
            raise MissingFile(
                f"{ref}: torchvision has no weight enum {ref.name}; EfficientNet ones: "
                f"{', '.join(_torchvision_enums())}"
            )
    else:
        try:
            enum = models.get_model_weights(ref.name)
        except (ValueError, KeyError):
            names = ", ".join(n for n in models.list_models() if n.startswith("efficientnet"))
            raise MissingFile(
                f"{ref}: torchvision has no model {ref.name!r} with weights; EfficientNet ones: {names}"
            ) from None
    if not enum.__name__.startswith("EfficientNet_"):
        raise Unsupported(
            f"{ref}: {enum.__name__} are not EfficientNet weights; effnet loads {', '.join(_torchvision_enums())}"
        )
    member = ref.member or "DEFAULT"
    if member not in enum.__members__:
        raise MissingFile(f"{ref}: {enum.__name__} has no member {member}; it has {', '.join(enum.__members__)}")
    return enum[member]


def _torchvision_preprocessing(weights: Any) -> Preprocessing:
    """The enum's ``transforms()`` sizes, interpolation, mean/std and ``meta["categories"]``."""
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocessing(
        crop, crop / resize, interpolation, tuple(t.mean), tuple(t.std), tuple(weights.meta.get("categories") or ())
    )


def _torchvision_url(url: str) -> str:
    base = os.environ.get(TORCHVISION_BASE_ENV)
    if base and url.startswith(TORCHVISION_BASE_URL):
        return base.rstrip("/") + url[len(TORCHVISION_BASE_URL) :]
    return url


def _torchvision_file(ref: WeightsRef, url: str) -> Path:
    """The cached file for ``url`` in ``torch.hub.get_dir()/checkpoints``, downloaded and hash-checked if absent."""
    import torch.hub

    filename = Path(urllib.parse.urlparse(url).path).name
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if target.is_file():
        return target
    if offline():
        raise MissingFile(
            f"{ref}: {filename} is not in the torch hub cache {target.parent} and downloads are off "
            "(HF_HUB_OFFLINE/EFFNET_OFFLINE)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source = _torchvision_url(url)
    try:  # a temporary file beside target, renamed to it when complete and checked; removed otherwise
        _download(ref, source, target, torchvision_hash_prefix(filename))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise MissingFile(f"{ref}: {source} not found (HTTP 404)") from None
        raise DownloadFailed(f"{ref}: downloading {source} failed (HTTP {exc.code}); nothing was kept") from None
    except urllib.error.URLError as exc:
        raise DownloadFailed(f"{ref}: cannot reach {source} ({_describe(exc.reason)})") from None
    except TimeoutError:
        raise DownloadFailed(
            f"{ref}: {source} sent nothing for {DOWNLOAD_TIMEOUT_S:g} s "
            "(effnet.limits.DOWNLOAD_TIMEOUT_S); the partial file was removed"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadFailed(
            f"{ref}: the connection to {source} dropped mid-file ({_describe(exc)}); the partial file was removed"
        ) from None
    return target


def _download(ref: WeightsRef, source: str, target: Path, hash_prefix: str | None) -> None:
    """``source`` into ``target`` atomically: each wait bounded by ``DOWNLOAD_TIMEOUT_S``, at most
    ``MAX_DOWNLOAD_BYTES`` (refused from the announced size before the body, else when passed), fewer bytes than
    announced is a dropped connection, the sha256 checked against ``hash_prefix`` (``BadFile``; nothing kept)."""
    import hashlib
    import urllib.request

    from tqdm.auto import tqdm

    def too_big(size: int) -> InvalidValue:
        return InvalidValue(
            f"{ref}: {source} is {size:,}+ bytes; at most {MAX_DOWNLOAD_BYTES:,} are downloaded "
            "(effnet.limits.MAX_DOWNLOAD_BYTES)"
        )

    request = urllib.request.Request(source, headers={"User-Agent": "effnet"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        announced = int(response.headers.get("Content-Length") or 0) or None
        if announced is not None and announced > MAX_DOWNLOAD_BYTES:
            raise too_big(announced)
        digest, done = hashlib.sha256(), 0
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out, tqdm(total=announced, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    done += len(chunk)
                    if done > MAX_DOWNLOAD_BYTES:
                        raise too_big(done)
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            if announced is not None and done < announced:  # read(amt) returns b"" at a close, never raises
                raise http.client.IncompleteRead(b"", announced - done)
            if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
                raise BadFile(
                    f"{ref}: {source}: the download's sha256 does not start with {hash_prefix} from its "
                    "name (corrupt, changed or cut short); the file was removed"
                )


def _resolve_torchvision(ref: WeightsRef) -> HubWeights:
    weights = _torchvision_member(ref)
    model_name = type(weights).__name__.removesuffix("_Weights").lower()
    pre = _torchvision_preprocessing(weights)
    path = _torchvision_file(ref, weights.url)
    return HubWeights(str(ref), path, "torchvision", model_name, pre, len(weights.meta.get("categories") or ()) or 1000)
