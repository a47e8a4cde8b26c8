"""Classify image files and measure top-1/top-5 accuracy with a model and its preprocessing.

The functions take ``run``: any callable mapping a normalised batch (N, C, H, W) to logits, typically
``effnet.serving.runtimes.optimize_for_inference(model, example, runtime=...)``. Images go through the
preprocessing's one :func:`~effnet.serving.preprocess.eval_transform` (gray or RGB by its ``in_chans``).
Unreadable files never stop a batch: they are returned as ``(path, reason)`` problems. :func:`top_k` and
:func:`count_correct` are the one top-k implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from effnet.errors import BadFile, InvalidValue
from effnet.machine import bound_count, usable_cpus
from effnet.preprocessing import Preprocessing
from effnet.serving.image_files import load_image
from effnet.serving.preprocess import ImageFiles, collate_skip, eval_transform

__all__ = ["Prediction", "EvalResult", "top_k", "count_correct", "predict_files", "evaluate_samples"]

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image: ``(class index, label, probability)``, most likely first."""

    path: str
    top: tuple[tuple[int, str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"file": self.path, "top": [{"index": i, "label": label, "probability": p} for i, label, p in self.top]}


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
        return {
            "images": self.images,
            "top1": self.top1,
            "top5": self.top5,
            "correct1": self.correct1,
            "correct5": self.correct5,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "skipped": [{"file": f, "error": e} for f, e in self.skipped],
        }


def _run_full(run: Runner, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``run`` on ``batch`` zero-padded to ``batch_size`` rows (runtimes compiled for one batch shape then never
    recompile for a short last batch; eval-mode models treat rows independently), padding rows dropped."""
    n = batch.shape[0]
    if n < batch_size:
        batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
    return run(batch)[:n]


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities, class indices)`` of the ``min(k, classes)`` highest logits of each row, highest first."""
    logits = logits.float()
    indices = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    return logits.softmax(-1).gather(-1, indices), indices


def count_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[int, int]:
    """``(top-1 hits, top-k hits)`` of ``logits`` (N, classes) against ``labels`` (N,); ``k`` clipped to classes."""
    hits = top_k(logits, k)[1].eq(labels.to(logits.device)[:, None])
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum())


def _label(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else f"class {index}"


def predict_files(
    run: Runner,
    preprocessing: Preprocessing,
    files: Sequence[str | Path],
    k: int = 5,
    batch_size: int = 16,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Top-``k`` predictions for each readable file; ``(file, reason)`` for each one that could not be read."""
    if k < 1:
        raise InvalidValue(f"--top-k must be >= 1, got {k}")
    if batch_size < 1:
        raise InvalidValue(f"--batch-size must be >= 1, got {batch_size}")
    transform = eval_transform(preprocessing)
    predictions: list[Prediction] = []
    problems: list[tuple[str, str]] = []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([t for _, t in pending])
        values, indices = top_k(_run_full(run, batch, batch_size), k)
        for (path, _), vals, idxs in zip(pending, values.tolist(), indices.tolist(), strict=True):
            top = tuple((i, _label(preprocessing.class_names, i), float(v)) for v, i in zip(vals, idxs, strict=True))
            predictions.append(Prediction(path, top))
        pending.clear()

    for file in files:
        try:
            tensor = transform(load_image(file, preprocessing.image_mode))
        except (ValueError, OSError) as exc:
            problems.append((str(file), str(exc) if str(file) in str(exc) else f"{file}: {exc}"))
            continue
        pending.append((str(file), tensor))
        if len(pending) >= batch_size:
            flush()
    flush()
    return predictions, problems


def evaluate_samples(
    run: Runner,
    preprocessing: Preprocessing,
    samples: Sequence[tuple[Path, int]],
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Top-1/top-5 accuracy of ``run`` on ``(image path, class index)`` samples, with a tqdm progress bar."""
    if batch_size < 1:
        raise InvalidValue(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise InvalidValue(f"--workers must be >= 0, got {workers}")
    if not samples:
        raise InvalidValue("no images to evaluate")
    dataset = ImageFiles(samples, eval_transform(preprocessing), preprocessing.image_mode)
    cpus, batches = usable_cpus(), -(-len(samples) // batch_size)  # each worker is a process reading whole batches
    workers = bound_count("--workers", workers, min(cpus, batches), f"{cpus} usable CPU cores, {batches} batches")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip)
    correct1 = correct5 = seen = 0
    skipped: list[tuple[str, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(samples), unit="img", disable=not progress, desc="eval", dynamic_ncols=True)
    for batch in loader:
        for bad in batch.bad:
            skipped.append((bad.path, bad.error))
            bar.write(f"skipped {bad.error}")
        if len(batch.labels):
            hits1, hits5 = count_correct(_run_full(run, batch.images, batch_size), batch.labels)
            correct1, correct5, seen = correct1 + hits1, correct5 + hits5, seen + len(batch.labels)
        bar.update(len(batch.bad) + len(batch.labels))
        elapsed = time.perf_counter() - start
        bar.set_postfix(top1=f"{correct1 / max(seen, 1):.3f}", img_s=f"{seen / max(elapsed, 1e-9):.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    if seen == 0:
        raise BadFile(f"none of the {len(samples)} images could be read (first: {skipped[0][1]})")
    return EvalResult(seen, correct1 / seen, correct5 / seen, correct1, correct5, seconds, tuple(skipped))
