"""Model repositories for the serving engines users scale out on: Triton (KServe v2) and OpenVINO Model Server.

Both take versioned folders, ``<root>/<name>/<version>/<model file>``; each export adds the next version (1, 2, ...),
so a repository a server already watches picks the new model up. ``--format triton`` writes ``model.onnx`` and
``<name>/config.pbtxt`` (platform ``onnxruntime_onnx``, a dynamic batch axis up to :data:`TRITON_MAX_BATCH`,
Triton's dynamic batching, the class names as the output's ``labels.txt``, effnet's preprocessing as a parameter);
``--format ovms`` writes the IR (``model.xml`` + ``model.bin``) and ``<root>/config.json``, OpenVINO Model Server's
``model_config_list`` (one entry per model, ``base_path`` relative to the file, other entries kept).

The model file is written and verified against PyTorch by the caller's writer (effnet's ONNX / IR exporters, passed
in); the configuration is then made from the written file's own graph (input and output names, element types and
shapes), never from assumptions, and :func:`check_triton_repository` / :func:`check_ovms_repository` read the
repository back. Neither has been run inside a real Triton or OpenVINO Model Server here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from effnet.config.serving import REPOSITORY_FORMATS
from effnet.errors import InvalidValue
from effnet.io import atomic_write_text

__all__ = [
    "TRITON_MAX_BATCH",
    "TRITON_TYPES",
    "next_version",
    "export_repository",
    "triton_config",
    "onnx_signature",
    "check_triton_repository",
    "check_ovms_repository",
]

TRITON_MAX_BATCH = 64
"""``max_batch_size`` of a Triton config: the largest batch Triton's dynamic batcher forms (the ONNX batch axis is
dynamic)."""
TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 3: "TYPE_INT8", 2: "TYPE_UINT8", 7: "TYPE_INT64"}
"""ONNX element type -> Triton data type."""
_MODEL_FILES = {"triton": "model.onnx", "ovms": "model.xml"}
_SERVED_FILES = {"triton": ("model.onnx",), "ovms": ("model.xml", "model.onnx")}
"""The model files each server loads from a version folder (OpenVINO Model Server also serves ONNX)."""


def next_version(model_dir: Path) -> int:
    """One more than the highest numbered version folder of ``model_dir`` (1 for a new model)."""
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdecimal()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


def onnx_signature(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, int, list[int]]]]:
    """``{"inputs": [...], "outputs": [...]}`` of an ONNX file: ``(name, element type, dims)``, -1 for a dynamic
    dimension."""
    import onnx  # lazy: onnx is needed only to read a written graph

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(values: Any) -> list[tuple[str, int, list[int]]]:
        out = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out.append((value.name, tensor.elem_type, dims))
        return out

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def _tensor(name: str, elem_type: int, dims: list[int], extra: str = "") -> str:
    if elem_type not in TRITON_TYPES:
        raise InvalidValue(f"tensor {name!r}: ONNX element type {elem_type} has no Triton data type here")
    shown = ", ".join(str(d) for d in dims[1:])
    return f'  {{\n    name: "{name}"\n    data_type: {TRITON_TYPES[elem_type]}\n    dims: [ {shown} ]{extra}\n  }}'


def triton_config(name: str, signature: dict, preprocessing: dict, labels: bool) -> str:
    """The ``config.pbtxt`` of an ONNX model with ``signature`` (:func:`onnx_signature`; its first axis is the
    batch): ONNX Runtime backend, dynamic batching, one CPU instance, the labels file on the first output."""
    for kind in ("inputs", "outputs"):
        for tensor, _, dims in signature[kind]:
            if not dims or dims[0] != -1 or any(d < 1 for d in dims[1:]):
                raise InvalidValue(f"{kind[:-1]} {tensor!r} has shape {dims}: Triton needs a dynamic batch axis only")
    inputs = ",\n".join(_tensor(*t) for t in signature["inputs"])
    label = '\n    label_filename: "labels.txt"' if labels else ""
    outputs = ",\n".join(_tensor(*t, extra=label if i == 0 else "") for i, t in enumerate(signature["outputs"]))
    parameter = json.dumps(json.dumps(preprocessing, sort_keys=True))
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {TRITON_MAX_BATCH}\n'
        f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
        "dynamic_batching { }\ninstance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
        f'parameters {{\n  key: "effnet_preprocessing"\n  value {{ string_value: {parameter} }}\n}}\n'
    )


def _ovms_config(root: Path, name: str) -> str:
    """``root/config.json`` with ``name``'s entry (``base_path`` relative to the file) added or replaced."""
    path = root / "config.json"
    entries: list[Any] = []
    if path.is_file():
        try:
            entries = json.loads(path.read_text())["model_config_list"]
        except (ValueError, KeyError, TypeError):
            raise InvalidValue(f"{path}: not an OpenVINO Model Server config (no model_config_list)") from None
    entries = [e for e in entries if not (isinstance(e, dict) and e.get("config", {}).get("name") == name)]
    entries.append({"config": {"name": name, "base_path": name, "target_device": "CPU"}})
    return json.dumps({"model_config_list": entries}, indent=2) + "\n"


def export_repository(
    model: Any,
    root: str | os.PathLike[str],
    fmt: str,
    write: Callable[..., Any],
    input_size: int | None = None,
    **options: Any,
) -> Any:
    """Write ``model`` as the next version of ``root/<model name>`` in the ``fmt`` layout (``triton`` / ``ovms``).

    ``write(model, file, input_size, **options)`` is the format's file exporter (it verifies the file against
    PyTorch and returns an ``ExportResult``); the version folder is removed again if it fails. Returns that result
    with ``path`` the model's folder and ``format`` ``fmt``. The repository is checked after writing.
    """
    if fmt not in REPOSITORY_FORMATS:
        raise InvalidValue(f"repository format must be one of {', '.join(REPOSITORY_FORMATS)}; got {fmt!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InvalidValue(f"--output of --format {fmt} is a repository folder; {root} is a file")
    name = model.spec.name
    model_dir = root / name
    foreign = _versions(model_dir, _SERVED_FILES[fmt]) if model_dir.is_dir() else []
    if any("no version folder" not in problem for problem in foreign):
        raise InvalidValue(f"{foreign[0]}: another format's model; choose another --output for --format {fmt}")
    version_dir = model_dir / str(next_version(model_dir))
    version_dir.mkdir(parents=True)
    try:
        result = write(model, version_dir / _MODEL_FILES[fmt], input_size, **options)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    preprocessing = getattr(model, "preprocessing", None)
    if fmt == "triton":
        pre = preprocessing.to_dict() if preprocessing is not None else {}
        names = pre.pop("class_names", [])
        if names:
            atomic_write_text(model_dir / "labels.txt", "".join(f"{n}\n" for n in names))
        signature = onnx_signature(version_dir / _MODEL_FILES[fmt])
        atomic_write_text(model_dir / "config.pbtxt", triton_config(name, signature, pre, bool(names)))
        problems = check_triton_repository(model_dir)
    else:
        atomic_write_text(root / "config.json", _ovms_config(root, name))
        problems = check_ovms_repository(root)
    if problems:
        raise InvalidValue(f"{model_dir}: the written repository does not check: {problems[0]}")
    method = f"{result.method}; {'Triton' if fmt == 'triton' else 'OpenVINO Model Server'} repository"
    return replace(result, path=str(model_dir), format=fmt, method=method)


def _versions(model_dir: Path, files: tuple[str, ...]) -> list[str]:
    """Problems of the version folders: none, or one holding none of ``files``."""
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdecimal() and int(p.name) > 0]
    if not versions:
        return [f"{model_dir}: no version folder (1, 2, ...)"]
    return [f"{v}: no {' or '.join(files)}" for v in versions if not any((v / f).is_file() for f in files)]


def _pbtxt_tensors(text: str, kind: str) -> list[tuple[str, str, list[int]]]:
    """``(name, data_type, dims)`` of each tensor in the ``kind`` (``input``/``output``) list of effnet's
    ``config.pbtxt`` layout (:func:`triton_config`)."""
    block = re.search(rf"^{kind} \[\n(.*?)\n\]$", text, re.S | re.M)
    found = []
    for entry in re.findall(r"\{(.*?)\}", block.group(1) if block else "", re.S):
        name = re.search(r'name: "([^"]*)"', entry)
        data_type = re.search(r"data_type: (\w+)", entry)
        dims = re.search(r"dims: \[([^\]]*)\]", entry)
        if name and data_type and dims:
            found.append((name.group(1), data_type.group(1), [int(d) for d in dims.group(1).split(",") if d.strip()]))
    return found


def check_triton_repository(model_dir: str | os.PathLike[str]) -> list[str]:
    """Problems of a Triton model folder: its ``config.pbtxt`` names the folder, every version holds
    ``model.onnx``, the config's inputs and outputs (names, types, shapes after the batch axis) are the latest
    model's, and ``labels.txt`` has one line per output class. Empty when it checks."""
    folder = Path(model_dir)
    config = folder / "config.pbtxt"
    if not config.is_file():
        return [f"{folder}: no config.pbtxt"]
    text = config.read_text()
    problems = _versions(folder, ("model.onnx",))
    if f'name: "{folder.name}"' not in text:
        problems.append(f"{config}: the name is not the folder's, {folder.name!r}")
    if problems:
        return problems
    latest = max((p for p in folder.iterdir() if p.name.isdecimal()), key=lambda p: int(p.name))
    signature = onnx_signature(latest / "model.onnx")
    for kind in ("input", "output"):
        want = [(n, TRITON_TYPES.get(t, str(t)), d[1:]) for n, t, d in signature[f"{kind}s"]]
        got = _pbtxt_tensors(text, kind)
        if got != want:
            problems.append(f"{config}: {kind}s {got} are not the model's {want}")
    labels = folder / "labels.txt"
    if 'label_filename: "labels.txt"' in text:
        classes = signature["outputs"][0][2][-1]
        count = len(labels.read_text().splitlines()) if labels.is_file() else 0
        if count != classes:
            problems.append(f"{labels}: {count} labels for {classes} classes")
    return problems


def check_ovms_repository(root: str | os.PathLike[str]) -> list[str]:
    """Problems of an OpenVINO Model Server repository: ``config.json`` lists models whose relative ``base_path``
    folders hold numbered versions, each with an IR (``model.xml`` and its ``model.bin``) or an ONNX model. Empty
    when it checks."""
    base = Path(root)
    try:
        entries = json.loads((base / "config.json").read_text())["model_config_list"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{base / 'config.json'}: not a readable model_config_list ({type(exc).__name__})"]
    problems = []
    for entry in entries:
        config = entry.get("config", {}) if isinstance(entry, dict) else {}
        folder = base / str(config.get("base_path", ""))
        if not config.get("name") or not folder.is_dir():
            problems.append(f"{base / 'config.json'}: entry {config} has no name or no folder")
            continue
        problems += _versions(folder, _SERVED_FILES["ovms"])
        problems += [
            f"{xml}: no model.bin beside it"
            for xml in folder.glob("*/model.xml")
            if not xml.with_suffix(".bin").is_file()
        ]
    return problems
