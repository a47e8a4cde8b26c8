"""The run of a search: train every candidate as one trial of the study, then write the report.

:func:`run_search` is step 1 of compound scaling as a resumable, distributed Optuna study (the candidates:
:mod:`effnet.search.grid`; the study: :mod:`effnet.search.study`; the worker: :mod:`effnet.search.worker`). Each
trial trains with :func:`effnet.training.trainer.fit` (or any ``trainer`` with the same contract). With
``strategy="halving"`` Optuna's asynchronous successive halving (``min_resource = min_epochs``,
``reduction_factor = eta``) stops weak trials, except the ``keep`` best at each epoch
(:mod:`effnet.search.halving`), so the report's leaders are fully trained. :func:`run_trials` is the same
machinery for any list of points (``effnet curves``). See :mod:`effnet.search.report` for the report.
"""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from tqdm.auto import tqdm

from effnet.config.search import SearchConfig
from effnet.config.training import TrainConfig
from effnet.cost import cost
from effnet.errors import InvalidValue, check_type
from effnet.search.grid import (
    Candidate,
    band_notes,
    baseline_spec,
    cost_model,
    definition,
    distinct_networks,
    exact_cost_model,
    latency_cost_model,
    latency_definition,
    same_network_note,
    search_profile,
    study_candidates,
)
from effnet.search.report import write_report
from effnet.search.storage import open_storage, redact
from effnet.search.study import diverged_records, finished_records, open_study, trained_io
from effnet.search.worker import Trainer, Worker, train_config
from effnet.specs import NetworkSpec
from effnet.training.data import load_datasets
from effnet.training.trainer import fit

__all__ = ["run_search", "run_trials", "majority_top1", "trained_baseline"]


def _default_trainer(
    train: TrainConfig,
    spec: NetworkSpec,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    return fit(train, spec=spec, progress=progress, on_epoch=on_epoch)


def _is_default(trainer: Trainer) -> bool:
    return getattr(trainer, "func", None) is _default_trainer


def trained_baseline(config: SearchConfig) -> NetworkSpec:
    """The baseline as its trials train it: classes and input channels of ``config.data`` (read once; the points
    are solved and costed on the networks that are really trained)."""
    base = baseline_spec(config)
    bundle = load_datasets(config.data, resolution=8, data_root=config.data_root, train_limit=1, val_limit=1)
    return base.replace(num_classes=bundle.num_classes, in_chans=bundle.in_chans)


def majority_top1(config: SearchConfig) -> float:
    """Top-1 (%) of the trivial classifier on the search's validation set: always its most frequent class."""
    limit_seed = train_config(config, config.seed, Path(config.output)).limit_seed
    bundle = load_datasets(
        config.data,
        resolution=8,
        data_root=config.data_root,
        train_limit=1,
        val_limit=config.val_limit,
        limit_seed=limit_seed,
    )
    val = bundle.val
    indices = getattr(val, "indices", None)
    base = getattr(val, "dataset", val)
    labels = [base.targets[i] for i in indices] if indices is not None else list(base.targets)
    return 100.0 * max(Counter(labels).values()) / max(len(labels), 1)


def _chance(config: SearchConfig, trainer: Trainer, records: Sequence[Mapping[str, Any]]) -> float | None:
    """The majority-class top-1 with the real trainer; 100 / classes for a stand-in trainer that reports them."""
    if _is_default(trainer):
        return round(majority_top1(config), 3)
    classes = next((int(r["num_classes"]) for r in records if r.get("num_classes")), None)
    return round(100.0 / classes, 3) if classes else None


def run_search(
    config: SearchConfig,
    *,
    trainer: Trainer | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    before_report: Callable[[], Mapping[str, Any]] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Work on the study until every candidate has a COMPLETE (or PRUNED) trial, then write and return the report.

    Several processes or machines may run this with the same storage and study; each takes the next WAITING
    trial. A worker that finds none while other workers' trials are running waits for them (and re-runs any
    whose heartbeat goes stale). ``trainer`` defaults to :func:`effnet.training.trainer.fit`. ``before_report``
    and ``on_ready``: as in :func:`run_trials`. The grid is at equal ``config.cost``
    (:func:`effnet.search.grid.cost_model`), costed on the baseline as trained (with the real trainer: the data's
    classes and input channels, :func:`trained_baseline`; with a stand-in, as the baseline spec says).
    """
    check_type("config", config, SearchConfig, "a SearchConfig")
    base = trained_baseline(config) if trainer is None else baseline_spec(config)
    profile = search_profile(config)
    model = cost_model(base, config.cost, profile)
    items = study_candidates(config, model)  # the profile read once, for the grid and the definition
    say = echo or (lambda text: tqdm.write(text))
    compared = model or exact_cost_model(base)  # the formula's points are compared at equal exact MACs
    for note in band_notes(items, compared, config.target, config.tol, config.cost):
        say(note)
    extra = None
    if profile is not None:  # every point's predicted latency factor, in the study's definition
        timing = model if config.cost == "latency" and model is not None else latency_cost_model(base, profile)
        extra = {"latency": latency_definition(profile, timing, items)}
    records, summary = run_trials(
        config,
        items,
        trainer=trainer,
        progress=progress,
        echo=echo,
        extra=extra,
        before_report=before_report,
        on_ready=on_ready,
    )
    return write_report(records, summary["baseline_macs"], config.output, summary=summary)


def run_trials(
    config: SearchConfig,
    items: Sequence[Candidate],
    *,
    trainer: Trainer | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    extra: Mapping[str, Any] | None = None,
    before_report: Callable[[], Mapping[str, Any]] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train every point of ``items`` as one trial of the Optuna study ``config.study`` (the study machinery of
    :func:`run_search`: enqueued points, many workers and machines, resumable), with ``config``'s budget.

    ``extra`` is added to the study's definition (a resumed study must match it). Points that round to the same
    network are trained once (:func:`effnet.search.grid.distinct_networks`). ``before_report()`` is called once
    this worker's loop is over, before the records are read, and its mapping is added to the summary (``--jobs``:
    it waits for the helper workers, :func:`effnet.search.jobs.run_jobs`). ``on_ready()`` is called once the study
    is open and its definition checked, before this worker trains (``--jobs``: it starts the helpers, so that a
    study refused here starts none). Returns ``(finished trial records, summary)``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if trainer is None:
            trainer = functools.partial(_default_trainer, progress=progress)
        _check_trainer(trainer, config.strategy)
        return _work(
            config,
            items,
            trainer,
            progress,
            echo or (lambda text: tqdm.write(text)),
            extra or {},
            before_report or dict,
            on_ready or (lambda: None),
        )


def _check_trainer(trainer: Trainer, strategy: str) -> None:
    """:class:`~effnet.errors.InvalidValue` before any study when halving needs ``on_epoch`` and ``trainer`` does
    not take it."""
    if strategy != "halving":
        return
    try:
        params = inspect.signature(trainer).parameters
    except (TypeError, ValueError):  # a callable without a signature: trust it
        return
    if "on_epoch" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise InvalidValue(
            "strategy 'halving' calls trainer(config, spec, on_epoch=...) after each epoch; this trainer "
            "takes no on_epoch: add it or use strategy 'grid'"
        )


def _work(
    config: SearchConfig,
    items: Sequence[Candidate],
    trainer: Trainer,
    progress: bool,
    echo: Callable[[str], None],
    extra: Mapping[str, Any],
    before_report: Callable[[], Mapping[str, Any]],
    on_ready: Callable[[], None],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """This worker's part of the study: its loop over the trials, then the finished records and the summary."""
    base = baseline_spec(config)
    if _is_default(trainer):
        train_config(config, config.seed, Path(config.output))  # bad --train-option values fail before any study
    items, same = distinct_networks(items, base)
    for note in dict.fromkeys(same_network_note(dropped, kept) for dropped, kept in same):  # once per point
        echo(note)
    defn = {**definition(config, base, items), **extra}
    url = config.storage_url
    study = open_study(open_storage(url, config.heartbeat), config, defn, items)
    on_ready()
    start = time.perf_counter()
    worker = Worker(config, trainer, items, base, echo)
    with tqdm(
        total=len(items), desc=f"{extra.get('tool', 'search')} {config.study}", unit="trial", disable=not progress
    ) as bar:
        worker.loop(study, bar)
    wall = round(time.perf_counter() - start, 1)
    after = dict(before_report())
    records = finished_records(study)
    summary = {
        "study": config.study,
        "storage": redact(url),
        "data": config.data,
        "baseline_name": base.name,
        "baseline_macs": cost(base.replace(**trained_io(records))).macs,  # the baseline as trained: one baseline
        "trials_run_by_this_worker": worker.ran,
        "worker_wall_time_s": wall,
        "strategy": config.strategy,
        "trials_wall_time_s": round(sum(float(r["wall_time_s"]) for r in records), 1),
        "epochs_trained": sum(int(r.get("epochs", config.epochs)) for r in records),
        "epochs_full_grid": config.epochs * len(items),
        "chance_top1": _chance(config, trainer, records),
        "diverged_trials": diverged_records(study),
        "definition": defn,
        **after,
    }
    return records, summary
