"""Reading and writing weight files: recognise the format by content, load safely, write effnet's own format.

- Reading: :func:`read_checkpoint` returns the tensors of a ``.safetensors`` file or of a PyTorch ``.pth``/``.pt``
  state dict (unwrapped from ``{"state_dict": ...}``-style checkpoints, DDP's ``module.`` prefix stripped) and the
  safetensors header. Torch files go through :func:`torch_load_safely` only (``torch.load(weights_only=True)``): a
  pickle holding anything but tensors is refused without being run. An empty, text, ONNX, truncated or
  non-regular file is a one-line :class:`~effnet.errors.BadFile` naming it.
- Checking: :func:`check_finite` refuses a file whose tensors hold NaN or Inf, naming the first such tensor.
- Writing: :func:`write_effnet_weights`, effnet's format: safetensors whose header also holds the spec
  (:meth:`~effnet.specs.NetworkSpec.to_json`), the :class:`~effnet.preprocessing.Preprocessing`, the layout the
  weights came from and ``user.<key>`` entries; written atomically.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from effnet.errors import BadFile, MissingFile
from effnet.io import atomic_path
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = [
    "FORMAT_VERSION",
    "read_safetensors_header",
    "torch_load_safely",
    "read_checkpoint",
    "check_finite",
    "write_effnet_weights",
]

FORMAT_VERSION = "1"
"""Version of effnet's header (``effnet.format_version``)."""

_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header, in bytes
_ACCEPTED = "effnet .safetensors or a PyTorch .pth/.pt state dict"
_WRAPPERS = ("state_dict", "model", "model_state", "model_state_dict", "module")
_SHOW = 5  # offending keys listed in an error


def _sniff(file: Path) -> str:
    """``"safetensors"`` or ``"torch"`` from a weights file's first bytes; anything else is a one-line BadFile."""
    try:
        info = file.stat()
    except FileNotFoundError:
        raise MissingFile(f"weights file not found: {file}") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadFile(f"{file} is a folder; --weights takes a file ({_ACCEPTED})")
    if not stat.S_ISREG(info.st_mode):
        raise BadFile(f"{file} is not a regular file (a FIFO, socket or device); --weights takes {_ACCEPTED}")
    if info.st_size == 0:
        raise BadFile(f"{file} is empty (0 bytes); expected {_ACCEPTED}")
    with open(file, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":  # before the pickle test: a header length may start with byte 0x80
        (size,) = struct.unpack("<Q", head[:8])
        if size > min(_MAX_HEADER, info.st_size - 8):
            raise BadFile(
                f"{file}: safetensors header length {size:,} does not fit the file's {info.st_size:,} "
                "bytes (truncated or corrupt)"
            )
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # legacy pickle, protocol 2-5
        return "torch"
    if file.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower())):
        raise BadFile(f"{file} looks like an ONNX model; --weights takes {_ACCEPTED} (ONNX files are export output)")
    if all(32 <= b < 127 or b in b"\t\n\r" for b in head):
        raise BadFile(f"{file} is a text file, not weights; expected {_ACCEPTED}")
    kind = "safetensors file (header cut short or corrupt)" if file.suffix == ".safetensors" else "weights format"
    raise BadFile(f"{file}: not a readable {kind}; expected {_ACCEPTED}")


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (empty when it has none); a bad file is a one-line BadFile."""
    file = Path(path)
    if _sniff(file) != "safetensors":
        raise BadFile(f"{file}: not a safetensors file; expected {_ACCEPTED}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types (not ValueError) for corrupt files
        raise BadFile(f"{file}: not a readable safetensors file (truncated or corrupt: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.split(". ", 1)[0].rstrip(".")


def torch_load_safely(path: str | os.PathLike[str], what: str = "weights file") -> Any:
    """``torch.load(weights_only=True)`` on CPU with every failure as one line naming the file.

    A pickle holding objects other than tensors and plain containers is refused without being run, and the
    message does not relay PyTorch's advice to retry with ``weights_only=False``.
    """
    file = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4" notices from the weights-only unpickler
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() or "unsupported" in str(exc).lower():
            reason = re.search(r"Unsupported[^.\n]*", str(exc))
            detail = f" ({reason.group(0)})" if reason else ""
            raise BadFile(
                f"{file}: refused: the checkpoint contains pickled Python objects other than tensors{detail}; "
                "effnet only loads tensors (torch.load weights_only=True) or safetensors"
            ) from None
        raise BadFile(f"{file}: not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None
    except FileNotFoundError:
        raise MissingFile(f"{what} not found: {file}") from None
    except IsADirectoryError:
        raise BadFile(f"{what} {file} is a folder; expected a file") from None
    except Exception as exc:  # RuntimeError, EOFError, KeyError, zipfile/struct errors from damaged files
        raise BadFile(f"{file}: not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors of a checkpoint and its safetensors metadata (``{}`` for torch files), safely.

    The format is recognised by content (safetensors, torch zip or legacy pickle); an empty, text, ONNX,
    truncated or non-regular file is a one-line :class:`~effnet.errors.BadFile` naming it. Torch files go
    through ``torch.load(weights_only=True)``. Nested ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints
    are unwrapped and a DDP ``module.`` prefix is stripped.
    """
    file = Path(path)
    if _sniff(file) == "safetensors":
        header = read_safetensors_header(file)
        try:
            tensors = load_file(str(file), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            reason = _first_line(exc)
            raise BadFile(f"{file}: not a readable safetensors file (truncated or corrupt: {reason})") from None
        return dict(tensors), header
    return _unwrap(torch_load_safely(file), file), {}


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """A one-line :class:`~effnet.errors.BadFile` naming the first floating-point tensor (in the order the file
    lists them) that holds a NaN or an infinity: such weights compute NaN for every input. ``where`` names the
    file."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int(finite.numel() - finite.sum())
                raise BadFile(
                    f"{where}: tensor {key} holds NaN or infinite values ({bad:,} of {tensor.numel():,}); weights "
                    "must be finite (--allow-nonfinite / allow_nonfinite=True loads them anyway, for debugging)"
                )


def _unwrap(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise BadFile(f"{file}: not a state dict (expected a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadFile(f"{file}: not a state dict: non-tensor entries {', '.join(map(str, bad[:_SHOW]))}")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def write_effnet_weights(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    spec: NetworkSpec,
    preprocessing: Preprocessing,
    source: str,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` (moved to the CPU, contiguous) as safetensors, atomically, with effnet's header.

    The header holds the format version, the model's name, spec and padding, the ``preprocessing``, the layout
    the weights came from (``source``) and each ``metadata`` entry as ``user.<key>``. Returns the path written.
    """
    header = {
        "format": "pt",
        "effnet.format_version": FORMAT_VERSION,
        "effnet.name": spec.name,
        "effnet.spec": spec.to_json(),
        "effnet.preprocessing": preprocessing.to_json(),
        "effnet.source": source,
        "effnet.padding": spec.padding,
    }
    for key, value in (metadata or {}).items():
        header[f"user.{key}"] = str(value)
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(contiguous, str(tmp), metadata=header)
    return target
