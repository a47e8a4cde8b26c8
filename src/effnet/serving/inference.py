"""Classify image files and measure top-1/top-5 accuracy with a model and its preprocessing.

The functions take ``run``: any callable mapping a normalised batch (N, C, H, W) to logits, typically
``effnet.serving.runtimes.optimize_for_inference(model, example, runtime=...)``. Unreadable files never stop a
batch: they are returned as ``(path, reason)`` problems.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from effnet.serving.preprocess import Preprocessing, eval_transform, load_image

__all__ = ["Prediction", "EvalResult", "predict_files", "evaluate_samples"]

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image: ``(class index, label, probability)``, most likely first."""

    path: str
    top: tuple[tuple[int, str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"file": self.path,
                "top": [{"index": i, "label": label, "probability": p} for i, label, p in self.top]}  # fmt: skip


@dataclass(frozen=True)
class EvalResult:
    """Accuracy on a labelled set of images (fractions in [0, 1]) and the measured throughput."""

    images: int
    top1: float
    top5: float
    correct1: int
    correct5: int
    seconds: float
    skipped: tuple[tuple[str, str], ...] = field(default=())

    @property
    def images_per_second(self) -> float:
        """Images classified per second of wall time (loading and preprocessing included)."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"images": self.images, "top1": self.top1, "top5": self.top5, "correct1": self.correct1,
                "correct5": self.correct5, "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images_per_second, 2),
                "skipped": [{"file": f, "error": e} for f, e in self.skipped]}  # fmt: skip


def _run_full(run: Runner, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``run`` on ``batch`` zero-padded to ``batch_size`` rows (runtimes compiled for one batch shape then never
    recompile for a short last batch; eval-mode models treat rows independently), padding rows dropped."""
    n = batch.shape[0]
    if n < batch_size:
        batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
    return run(batch)[:n]


def _label(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else f"class {index}"


def predict_files(
    run: Runner,
    preprocessing: Preprocessing,
    files: Sequence[str | Path],
    top_k: int = 5,
    batch_size: int = 16,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Top-k predictions for each readable file; ``(file, reason)`` for each one that could not be read."""
    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    transform = eval_transform(preprocessing)
    predictions: list[Prediction] = []
    problems: list[tuple[str, str]] = []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([t for _, t in pending])
        probs = _run_full(run, batch, batch_size).float().softmax(-1)
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        for (path, _), vals, idxs in zip(pending, values.tolist(), indices.tolist(), strict=True):
            top = tuple((i, _label(preprocessing.class_names, i), float(v)) for v, i in zip(vals, idxs, strict=True))
            predictions.append(Prediction(path, top))
        pending.clear()

    for file in files:
        try:
            image = load_image(file)
        except (ValueError, OSError) as exc:
            problems.append((str(file), str(exc)))
            continue
        pending.append((str(file), transform(image)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return predictions, problems


class _LabelledImages(Dataset):
    """(tensor, label, path, error) items; unreadable images come back as an empty tensor and are filtered out."""

    def __init__(self, samples: Sequence[tuple[Path, int]], preprocessing: Preprocessing) -> None:
        self.samples = list(samples)
        self.transform = eval_transform(preprocessing)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str, str]:
        path, label = self.samples[i]
        try:
            return self.transform(load_image(path)), label, str(path), ""
        except (ValueError, OSError) as exc:
            return torch.empty(0), label, str(path), str(exc)


def _collate(
    items: list[tuple[torch.Tensor, int, str, str]],
) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[str, str]]]:
    good = [it for it in items if not it[3]]
    errors = [(it[2], it[3]) for it in items if it[3]]
    if not good:
        return None, torch.empty(0, dtype=torch.long), errors
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), errors


def evaluate_samples(
    run: Runner,
    preprocessing: Preprocessing,
    samples: Sequence[tuple[Path, int]],
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Top-1/top-5 accuracy of ``run`` on ``(image path, class index)`` samples, with a tqdm progress bar."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    if not samples:
        raise ValueError("no images to evaluate")
    loader = DataLoader(_LabelledImages(samples, preprocessing), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate)  # fmt: skip
    correct1 = correct5 = seen = 0
    skipped: list[tuple[str, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(samples), unit="img", disable=not progress, desc="eval", dynamic_ncols=True)
    for images, labels, errors in loader:
        for path, error in errors:
            skipped.append((path, error))
            bar.write(f"skipped {error}")
        if images is not None:
            logits = _run_full(run, images, batch_size).float()
            k = min(5, logits.shape[-1])
            top = logits.topk(k, dim=-1).indices
            hits = top.eq(labels[:, None])
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            seen += len(labels)
        bar.update(len(errors) + (0 if images is None else len(images)))
        elapsed = time.perf_counter() - start
        bar.set_postfix(top1=f"{correct1 / max(seen, 1):.3f}", img_s=f"{seen / max(elapsed, 1e-9):.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    if seen == 0:
        raise ValueError(f"none of the {len(samples)} images could be read (first: {skipped[0][1]})")
    return EvalResult(seen, correct1 / seen, correct5 / seen, correct1, correct5, seconds, tuple(skipped))
