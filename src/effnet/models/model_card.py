"""The model card (``README.md``) of a Hub folder, filled only from what effnet computed or measured.

:func:`run_evaluation` reads what ``effnet train`` measured for a weights file of its run folder (the epoch in the
file's header, that epoch's validation top-1/top-5 in ``metrics.jsonl``, the data and budget in ``config.json``);
:func:`model_card` writes the Hub's YAML metadata (library, tags, datasets, metrics, model-index), the exact cost
(:func:`effnet.cost.cost`), the preprocessing, which libraries load the folder (and why not, where one cannot) and
the exact spec. Nothing in it is typed in. Nothing here imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effnet.cost import cost
from effnet.errors import BadFile
from effnet.limits import read_json_file
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = ["run_evaluation", "loaders", "model_card"]


def _metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed run
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def run_evaluation(weights: str | Path, header: Mapping[str, str]) -> dict[str, Any] | None:
    """What ``effnet train`` measured for ``weights`` (a ``best``/``last``/``ema`` file in its run folder), or
    ``None`` when the file is not in a run folder (no ``metrics.jsonl`` + ``config.json`` beside it).

    ``header``: the file's safetensors header (its ``user.epoch``; ``user.ema_decay`` marks EMA weights, whose
    accuracy is the EMA's). A damaged run ``config.json`` is a one-line :class:`~effnet.errors.BadFile`.
    """
    run = Path(weights).parent
    if not (run / "metrics.jsonl").is_file() or not (run / "config.json").is_file():
        return None
    config = read_json_file(run / "config.json", "run config.json")
    records = _metrics(run / "metrics.jsonl")
    if not isinstance(config, dict) or not records:
        raise BadFile(f"{run}: config.json or metrics.jsonl holds no training run of effnet train")
    epoch = int(header["user.epoch"]) if str(header.get("user.epoch", "")).isdigit() else records[-1]["epoch"]
    record = next((r for r in records if r["epoch"] == epoch), records[-1])
    ema = "user.ema_decay" in header
    info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    return {
        "dataset": str(config.get("data", "")),
        "top1": record.get("ema_top1" if ema else "val_top1"),
        "top5": record.get("ema_top5" if ema else "val_top5"),
        "epoch": record["epoch"],
        "epochs": config.get("epochs"),
        "train_images": info.get("train_images"),
        "val_images": info.get("val_images"),
        "weights": Path(weights).name + (" (EMA)" if ema else ""),
    }


def _timm_missing(spec: NetworkSpec) -> str:
    return (
        f"timm cannot: {spec.name} (depth {spec.depth:g}, width {spec.width:g}, stem stride {spec.stem_stride}, "
        f"{len(spec.stages)} stages) is none of timm's EfficientNet architectures, so config.json names no "
        "`architecture`"
    )


def loaders(spec: NetworkSpec, architecture: str | None) -> dict[str, str]:
    """Which libraries load the folder: ``"yes"``, or ``"no: <why>"``."""
    if architecture is None:
        why = _timm_missing(spec)
        return {
            "effnet": "yes",
            "timm": f"no: {why}",
            "transformers": "no: transformers loads timm architectures (TimmWrapper); this folder names none",
        }
    rgb = spec.in_chans == 3
    return {
        "effnet": "yes",
        "timm": "yes",
        "transformers": "yes"
        if rgb
        else (
            f"no for pipeline('image-classification'): it feeds 3-channel RGB images and this model takes "
            f"{spec.in_chans}; TimmWrapperForImageClassification takes {spec.in_chans}-channel pixel_values"
        ),
    }


def _yaml_list(key: str, items: list[str]) -> list[str]:
    return [f"{key}:", *(f"- {json.dumps(i)}" for i in items)]


def _front_matter(spec: NetworkSpec, architecture: str | None, evaluation: Mapping[str, Any] | None) -> list[str]:
    lines = ["---", f"library_name: {'timm' if architecture else 'effnet'}", "pipeline_tag: image-classification"]
    lines += _yaml_list("tags", ["image-classification", "effnet", "efficientnet", *(["timm"] if architecture else [])])
    if not evaluation or evaluation.get("top1") is None:
        return [*lines, "---"]
    dataset = evaluation["dataset"]
    lines += _yaml_list("datasets", [dataset]) + _yaml_list("metrics", ["accuracy"])
    lines += ["model-index:", f"- name: {json.dumps(spec.name)}", "  results:", "  - task:"]
    lines += ["      type: image-classification", "    dataset:", f"      name: {json.dumps(dataset)}"]
    lines += [f"      type: {json.dumps(dataset)}", "      split: validation", "    metrics:"]
    for name in ("top1", "top5"):
        if evaluation.get(name) is not None:
            label = "top-1" if name == "top1" else "top-5"
            lines += [
                "    - type: accuracy",
                f"      name: {label}",
                f"      value: {round(float(evaluation[name]), 2)}",
            ]
    return [*lines, "---"]


def _measured(spec: NetworkSpec, pre: Preprocessing, evaluation: Mapping[str, Any] | None, source: str) -> list[str]:
    c = cost(spec, pre.input_size)
    rows = [
        ("parameters", f"{c.params:,}"),
        (f"MACs at {pre.input_size} px", f"{c.macs:,}"),
        (f"activations at {pre.input_size} px", f"{c.activations:,}"),
    ]
    if evaluation and evaluation.get("top1") is not None:
        images = f", {evaluation['val_images']} images" if evaluation.get("val_images") else ""
        where = f"{evaluation['dataset']} validation{images}"
        top5 = f" / {float(evaluation['top5']):.2f} %" if evaluation.get("top5") is not None else ""
        rows.append((f"top-1{' / top-5' if top5 else ''} on {where}", f"{float(evaluation['top1']):.2f} %{top5}"))
        trained = f"epoch {evaluation['epoch']} of {evaluation['epochs']}" if evaluation.get("epochs") else ""
        if evaluation.get("train_images"):
            trained += f" on {evaluation['train_images']} training images"
        rows.append(("weights", f"{evaluation['weights']} of an effnet train run, {trained}".rstrip(", ")))
    else:
        rows.append(("accuracy", f"not measured by effnet for these weights (converted from {source} weights)"))
    out = ["## Measured by effnet", "", "| what | value |", "| --- | --- |"]
    return out + [f"| {k} | {v} |" for k, v in rows]


def _preprocessing(pre: Preprocessing) -> list[str]:
    classes = f"{len(pre.class_names)} named classes" if pre.class_names else "no class names"
    return [
        "## Input",
        "",
        f"{'gray' if pre.in_chans == 1 else 'RGB'} images ({pre.in_chans} channel(s)), shorter side resized to "
        f"{pre.resize_size} px ({pre.interpolation}), center crop {pre.input_size} px, mean {list(pre.mean)}, std "
        f"{list(pre.std)}; {classes}.",
    ]


def _usage(spec: NetworkSpec, architecture: str | None, can: Mapping[str, str]) -> list[str]:
    out = [
        "## Loading",
        "",
        "```python",
        "import effnet",
        'model = effnet.create_model("local-dir:DIR", pretrained=True)',
    ]
    out += ['# or: effnet.load_pretrained(None, "DIR"); on the command line: effnet predict IMAGE --weights DIR', "```"]
    if architecture:
        out += ["", "```python", "import timm", 'model = timm.create_model("local-dir:DIR", pretrained=True)']
        out += ['# after upload: timm.create_model("hf-hub:USER/REPO", pretrained=True)', "```"]
    if can["transformers"] == "yes":
        out += ["", "```python", "from transformers import pipeline"]
        out += ['classify = pipeline("image-classification", model="DIR")', "```"]
    out += ["", *(f"- {lib}: {state}" for lib, state in can.items())]
    return out


def model_card(
    spec: NetworkSpec,
    pre: Preprocessing,
    form: Any,
    evaluation: Mapping[str, Any] | None,
    metadata: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    """The ``README.md`` text of a Hub folder and :func:`loaders`' answer. ``form``: the folder's
    :class:`~effnet.models.hub_folder.TimmForm` or ``None``; ``metadata``: the model's ``weights_metadata``."""
    architecture = getattr(form, "architecture", None)
    can = loaders(spec, architecture)
    source = metadata.get("weights") or metadata.get("source", "effnet")
    kind = f"timm's `{architecture}` layout" if architecture else "effnet's own layout (a spec timm does not build)"
    lines = [*_front_matter(spec, architecture, evaluation), "", f"# {spec.name}", ""]
    lines += [f"An EfficientNet written by `effnet export --format hub` in {kind}.", ""]
    lines += [*_measured(spec, pre, evaluation, source), "", *_preprocessing(pre), "", *_usage(spec, architecture, can)]
    lines += ["", "## Upload", "", "```bash", "huggingface-cli upload USER/REPO DIR .", "```", ""]
    lines += ["## Spec", "", "The exact network (`effnet.NetworkSpec`, also `effnet_spec` in config.json):", ""]
    lines += ["```json", spec.to_json(), "```", ""]
    return "\n".join(lines), can
