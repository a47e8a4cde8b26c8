"""Step 1 of compound scaling as a resumable, distributed Optuna study: grid-search (α, β, γ) at φ = 1.

The candidates are every (α, β, γ) of :func:`effnet.scaling.grid` (``|α·β²·γ² − target| ≤ tol``) plus the
depth-only, width-only and resolution-only points at the same FLOPs target (always included, so every study
answers "does compound beat single-dimension scaling?") and the unscaled baseline as a reference. Each candidate
is trained ``seeds`` times: trial = (α, β, γ, seed). A trial scales the baseline by ``d = α``, ``w = β``,
``r = γ`` (:func:`effnet.specs.scale`), trains it with :func:`effnet.training.trainer.fit` (or any ``trainer`` with the
same contract) and records top-1, exact params/MACs, wall time and seed as trial user attributes.

Distribution and fault tolerance, with Optuna's public API only: trials live in an Optuna RDB storage (SQLite
file by default, any PostgreSQL URL for many machines). The worker that creates the study (study names are unique,
so exactly one does) enqueues every candidate as a WAITING trial (``enqueue_trial``) carrying its ``grid_id``;
every worker runs ``Study.optimize(n_trials=1)`` while WAITING trials are left, which pops one atomically. A
running trial records Optuna heartbeats; a worker killed mid-trial leaves a RUNNING trial whose heartbeat goes
stale, :func:`optuna.storages.fail_stale_trials` marks it FAIL and ``RetryFailedTrialCallback`` enqueues a copy.
A trial whose trainer raises (or is interrupted) is FAILed and its point enqueued again. A worker that pops a
trial whose point another trial already finished or runs marks it FAIL without training (``duplicate_of``), so
no point is trained twice even if a point was queued twice. COMPLETE and PRUNED trials are never re-run.
With ``strategy="halving"`` every trial reports validation top-1 after each epoch and Optuna's asynchronous
``SuccessiveHalvingPruner`` (``min_resource = min_epochs``, ``reduction_factor = eta``) stops weak ones, except
the ``keep`` best at each epoch (:mod:`effnet.search.halving`), so the report's leaders are fully trained.
See :mod:`effnet.search.report` for the report.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from effnet.config.search import (
    DEFAULT_OUTPUT,
    DEFAULT_STEP,
    DEFAULT_STUDY,
    DEFAULT_TOL,
    MAX_TRIALS,
    STRATEGIES,
    SearchConfig,
    default_storage,
)
from effnet.scaling import flops_factor, grid, single_dimension_points
from effnet.search.baselines import load_baseline
from effnet.search.storage import open_storage, redact
from effnet.specs import NetworkSpec, scale

__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_STUDY",
    "DEFAULT_STEP",
    "DEFAULT_TOL",
    "STRATEGIES",
    "SearchConfig",
    "Candidate",
    "distinct_networks",
    "candidates",
    "baseline_spec",
    "trial_spec",
    "definition",
    "default_storage",
    "open_storage",
    "Trainer",
    "train_config",
    "run_search",
    "run_trials",
    "run_search_jobs",
    "usable_cpus",
    "load_study_result",
    "majority_top1",
]

_FORMAT = "effnet-search/1"
_ATTR = "effnet_search"
_ENQUEUED = "effnet_enqueued"
_GRID_ID = "grid_id"


@dataclass(frozen=True)
class Candidate:
    """One trial of the study: coefficients, which kind of scaling they are, and the training seed."""

    alpha: float
    beta: float
    gamma: float
    kind: str
    seed: int

    @property
    def params(self) -> dict[str, float | int]:
        """The Optuna parameters of this trial (names ``alpha``, ``beta``, ``gamma``, ``seed``)."""
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "seed": self.seed}

    @property
    def point(self) -> tuple[float, float, float]:
        """``(α, β, γ)``."""
        return (self.alpha, self.beta, self.gamma)


def _kind(alpha: float, beta: float, gamma: float) -> str:
    scaled = [name for name, v in (("depth", alpha), ("width", beta), ("resolution", gamma)) if v != 1.0]
    if not scaled:
        return "baseline"
    return scaled[0] if len(scaled) == 1 else "compound"


def candidates(
    target: float = 2.0,
    tol: float = DEFAULT_TOL,
    step: float = DEFAULT_STEP,
    low: float = 1.0,
    high: float = 2.0,
    *,
    seeds: Sequence[int] = (0,),
    include_baseline: bool = True,
) -> list[Candidate]:
    """Every trial of a study: grid points, the exact single-dimension points, optionally (1, 1, 1), × seeds.

    Order: baseline first, then the points sorted, each repeated for every seed in ``seeds`` (seed-major
    within a point). Raises ``ValueError`` when the grid has no point inside the tolerance.
    """
    points = set(grid(target=target, tol=tol, step=step, low=low, high=high))
    points.update((round(a, 10), round(b, 10), round(g, 10)) for a, b, g in single_dimension_points(target))
    ordered = sorted(points)
    if include_baseline:
        ordered = [(1.0, 1.0, 1.0)] + [p for p in ordered if p != (1.0, 1.0, 1.0)]
    if len(ordered) * len(seeds) > MAX_TRIALS:
        raise ValueError(
            f"the grid has {len(ordered)} points x {len(seeds)} seeds = {len(ordered) * len(seeds)} "
            f"trials, more than {MAX_TRIALS}; use a coarser --step or a smaller --tol"
        )
    return [Candidate(a, b, g, _kind(a, b, g), int(s)) for a, b, g in ordered for s in seeds]


_SAME_NETWORK_NOTE = "not training "


def distinct_networks(
    items: Sequence[Candidate], base: NetworkSpec
) -> tuple[list[Candidate], list[tuple[Candidate, Candidate]]]:
    """``items`` without the trials that would train a network (and seed) an earlier item already trains.

    Two points can round to the same network: at 32 px, γ = 1.4 and γ = √2 both give 45 px inputs. Returns
    the kept items (order preserved) and ``(dropped, same_as)`` pairs.
    """
    first: dict[tuple[NetworkSpec, int], Candidate] = {}
    kept: list[Candidate] = []
    dropped: list[tuple[Candidate, Candidate]] = []
    for item in items:
        key = (trial_spec(base, item.alpha, item.beta, item.gamma).replace(name=base.name), item.seed)
        if key in first:
            dropped.append((item, first[key]))
        else:
            first[key] = item
            kept.append(item)
    return kept, dropped


def baseline_spec(config: SearchConfig) -> NetworkSpec:
    """The baseline the search scales: ``--baseline`` with the budget's width/depth multipliers and resolution."""
    base = load_baseline(config.baseline)
    return scale(base, depth=config.depth, width=config.width, resolution=config.resolution)


def trial_spec(base: NetworkSpec, alpha: float, beta: float, gamma: float) -> NetworkSpec:
    """``base`` scaled by ``d = α``, ``w = β`` and ``r = γ`` (input size ``round(resolution·γ)``, at least 8)."""
    resolution = max(8, int(round(base.resolution * gamma)))
    name = f"{base.name}_a{alpha:g}_b{beta:g}_g{gamma:g}"
    return scale(base, depth=alpha, width=beta, resolution=resolution, name=name)


def definition(config: SearchConfig, base: NetworkSpec, items: Sequence[Candidate]) -> dict[str, Any]:
    """What makes two runs the same study: grid, seeds, baseline spec, data and training budget (JSON-ready)."""
    return {
        "format": _FORMAT,
        "grid": {
            "target": config.target,
            "tol": config.tol,
            "step": config.step,
            "low": config.low,
            "high": config.high,
            "include_baseline": config.include_baseline,
        },
        "seeds": [config.seed + i for i in range(config.seeds)],
        "strategy": {"name": config.strategy, "eta": config.eta, "min_epochs": config.min_epochs, "keep": config.keep},
        "baseline": base.to_dict(),
        "budget": {
            "data": config.data,
            "epochs": config.epochs,
            "train_limit": config.train_limit,
            "val_limit": config.val_limit,
            "batch_size": config.batch_size,
            "train_options": dict(config.train_options),
        },
        "candidates": [[c.alpha, c.beta, c.gamma, c.kind, c.seed] for c in items],
    }


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            if isinstance(a, list) and isinstance(b, list):
                out.append(f"{prefix}{key}: {len(a)} stored entries vs {len(b)} given")
            else:
                out.append(f"{prefix}{key}: stored {a!r}, given {b!r}")
    return out


# ------------------------------------------------------------------------------------------------ worker

Trainer = Callable[..., Any]
"""``trainer(train_config, spec[, on_epoch=callback]) -> result``: the contract of
:func:`effnet.training.trainer.fit` (``spec``: the network to train; ``on_epoch(record)`` is called after each
epoch with ``record["epoch"]`` and ``record["val_top1"]`` and may raise to stop; it is passed only with
``strategy="halving"``, the default whenever ``epochs > min_epochs``). The result has ``last_top1`` and, when
available, ``best_top1``, ``last_top5``, ``ema_top1``, ``params``, ``macs``, ``epochs``, ``images_per_s``,
``wall_time_s``."""


def _default_trainer(
    train_config: Any,
    spec: NetworkSpec,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    from effnet.training.trainer import fit

    return fit(train_config, spec=spec, progress=progress, on_epoch=on_epoch)


def train_config(config: SearchConfig, seed: int, output: Path, model: str = "search-trial") -> Any:
    """The ``effnet.training.trainer.TrainConfig`` of one trial: the budget, the seed, run folder and name.

    Raises ``ValueError`` for an unknown ``train_options`` field or an invalid value (checked by the recipe).
    """
    from effnet.training.recipe import resolve_recipe
    from effnet.training.trainer import TrainConfig

    fields = {
        "data": config.data,
        "model": model,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "train_limit": config.train_limit,
        "val_limit": config.val_limit,
        "seed": seed,
        "output": str(output),
        "data_root": config.data_root,
        "threads": config.threads,
        **dict(config.train_options),
    }
    try:
        train = TrainConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--train-option: {exc}") from None
    try:
        resolve_recipe(train)  # validates every value now, not after the study was created
    except TypeError:  # e.g. lr=abc reaches a numeric comparison as a string
        given = ", ".join(f"{k}={v!r}" for k, v in config.train_options if isinstance(v, str))
        raise ValueError(
            f"--train-option: a value has the wrong type ({given}); numbers must be numbers, e.g. lr=0.05"
        ) from None
    return train


def _pruner(config: SearchConfig) -> Any:
    import optuna

    if config.strategy == "halving":
        from effnet.search.halving import KeepLeadersPruner

        return KeepLeadersPruner(config.min_epochs, config.eta, config.keep)
    return optuna.pruners.NopPruner()


def _enqueue(study: Any, items: Sequence[Candidate], ids: Sequence[int], *, skip_if_exists: bool) -> None:
    for i in ids:
        study.enqueue_trial(items[i].params, user_attrs={_GRID_ID: i}, skip_if_exists=skip_if_exists)


def _load_study(storage: Any, config: SearchConfig, defn: dict[str, Any], items: Sequence[Candidate]) -> Any:
    """Create the study and enqueue its grid (exactly one worker does), or load it and check its definition."""
    import optuna

    name, url = config.study, config.storage_url
    kwargs = {
        "storage": storage,
        "study_name": name,
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "pruner": _pruner(config),
    }
    given = json.loads(json.dumps(defn))
    try:  # the unique study name makes creation atomic: the winner enqueues the grid, the others wait for it
        study = optuna.create_study(direction="maximize", **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
    else:
        study.set_user_attr(_ATTR, given)
        _enqueue(study, items, range(len(items)), skip_if_exists=True)
        study.set_user_attr(_ENQUEUED, len(items))
        return study
    deadline = time.monotonic() + 30
    while _ENQUEUED not in study.user_attrs and time.monotonic() < deadline:
        if study.user_attrs.get(_ATTR) is None and study.get_trials(deepcopy=False):
            break  # a study somebody else made
        time.sleep(0.2)
    stored = study.user_attrs.get(_ATTR)
    if stored is None and study.get_trials(deepcopy=False):
        raise ValueError(
            f"--study {name!r} in {redact(url)} already holds {len(study.trials)} trials that "
            "effnet search did not create; choose another --study name"
        )
    if stored is not None and stored != given:
        diffs = sorted(_differences(stored, given), key=lambda d: d.startswith("candidates"))  # causes first
        raise ValueError(
            f"--study {name!r} in {redact(url)} was created for a different search ({'; '.join(diffs[:4])}"
            f"{'; ...' if len(diffs) > 4 else ''}); its trials are kept unchanged. Re-run with the flags it was "
            "created with, or pass a new --study name"
        )
    if _ENQUEUED not in study.user_attrs:  # its creator died while enqueueing: finish that
        study.set_user_attr(_ATTR, given)
        _enqueue(study, items, range(len(items)), skip_if_exists=True)
        study.set_user_attr(_ENQUEUED, len(items))
    return study


def _record(
    item: Candidate, base: NetworkSpec, spec: NetworkSpec, result: Any, wall: float, run_dir: Path
) -> dict[str, Any]:
    from effnet.cost import cost

    trained = getattr(result, "spec", None)  # the trainer fits classes and input channels to the data
    fit = {"num_classes": int(trained["num_classes"]), "in_chans": int(trained["in_chans"])} if trained else {}
    exact = cost(spec.replace(**fit))  # macs and macs_factor both of the networks really trained
    params = getattr(result, "params", None) or exact.params
    macs = getattr(result, "macs", None) or exact.macs
    record = {
        "kind": item.kind,
        "alpha": item.alpha,
        "beta": item.beta,
        "gamma": item.gamma,
        "seed": item.seed,
        "depth": spec.depth,
        "width": spec.width,
        "resolution": spec.resolution,
        "flops_factor": flops_factor(*item.point),
        "macs_factor": exact.macs / cost(base.replace(**fit)).macs,
        "params": int(params),
        "macs": int(macs),
        "top1": float(result.last_top1),
        "wall_time_s": round(wall, 3),
        "output_dir": str(run_dir),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "pruned": False,
    }
    for name in ("best_top1", "last_top5", "ema_top1", "epochs", "images_per_s"):
        value = getattr(result, name, None)
        if value is not None:
            record[name] = value
    record.update(fit)
    return record


def _saved_spec(run_dir: Path) -> dict[str, Any] | None:
    """The spec (classes and input channels fitted to the data) in a stopped trial's best weights, if it wrote any."""
    from effnet.models.weight_files import read_safetensors_header

    try:
        return json.loads(read_safetensors_header(run_dir / "best.safetensors")["effnet.spec"])
    except (OSError, ValueError, KeyError):
        return None


class _SpareTrial(Exception):
    """A trial this worker must not train (no grid point left for it, or its point is taken); marked FAIL."""


class _Worker:
    """One worker's loop over a study: take WAITING trials until every grid point is COMPLETE or PRUNED."""

    def __init__(
        self,
        config: SearchConfig,
        trainer: Trainer,
        items: Sequence[Candidate],
        base: NetworkSpec,
        echo: Callable[[str], None],
    ) -> None:
        self.config, self.trainer, self.items, self.base, self.echo = config, trainer, items, base, echo
        self.ran = 0

    def progress(self, study: Any) -> tuple[set[int], set[int], int]:
        """``(finished grid ids, running grid ids, WAITING trials)``."""
        from optuna.trial import TrialState

        done, running, waiting = set(), set(), 0
        for t in study.get_trials(deepcopy=False):
            gid = t.user_attrs.get(_GRID_ID)
            if gid is None:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                done.add(gid)
            elif t.state == TrialState.RUNNING:
                running.add(gid)
            elif t.state == TrialState.WAITING:
                waiting += 1
        return done, running - done, waiting

    def loop(self, study: Any, bar: Any) -> None:
        """Train WAITING trials; wait for other workers' running ones (re-queued if their heartbeat stops)."""
        import optuna

        total, said = len(self.items), False
        while True:
            optuna.storages.fail_stale_trials(study)  # a stale trial is FAILed and re-enqueued (retry callback)
            done, running, waiting = self.progress(study)
            bar.n = len(done)
            bar.refresh()
            if len(done) == total:
                return
            if not waiting and not running:  # e.g. a trial failed by an error: its retry was never queued
                _enqueue(study, self.items, [i for i in range(total) if i not in done], skip_if_exists=False)
                continue
            if not waiting:
                if not said:
                    self.echo(
                        f"waiting for {len(running)} trial(s) running in other workers (a killed worker's "
                        f"trial is re-run here after {3 * self.config.heartbeat} s without heartbeat)"
                    )
                    said = True
                time.sleep(min(self.config.heartbeat, 5))
                continue
            try:
                study.optimize(
                    functools.partial(self.objective, study), n_trials=1, catch=(_SpareTrial,), gc_after_trial=False
                )
            except ValueError as exc:  # the trial was finished elsewhere meanwhile (e.g. failed as stale under load)
                if not str(exc).startswith("Cannot tell a "):
                    raise
                self.echo(f"a trial of this worker was already finished by another worker ({exc}); going on")

    def _taken(self, study: Any, number: int, gid: int) -> int | None:
        """Number of another trial that finished or is (earlier) running this grid point, else None."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
            if t.user_attrs.get(_GRID_ID) == gid and t.number != number:
                if t.state != TrialState.RUNNING or t.number < number:
                    return t.number
        return None

    def objective(self, study: Any, trial: Any) -> float:
        """Train the trial's grid point; report each epoch to the pruner with ``strategy="halving"``."""
        import optuna

        from effnet.training.rundir import RunDirLocked

        gid = trial.user_attrs.get(_GRID_ID)
        if gid is None:
            raise _SpareTrial("no WAITING trial was left when this worker asked (another worker took it)")
        item, items = self.items[gid], self.items
        values = {
            name: trial.suggest_float(name, min(getattr(c, name) for c in items), max(getattr(c, name) for c in items))
            for name in ("alpha", "beta", "gamma")
        }
        values["seed"] = trial.suggest_int("seed", min(c.seed for c in items), max(c.seed for c in items))
        if values != item.params:
            raise RuntimeError(f"trial {trial.number}: its parameters {values} are not grid point {gid} {item.params}")
        other = self._taken(study, trial.number, gid)
        if other is not None:
            trial.set_user_attr("duplicate_of", other)
            raise _SpareTrial(f"grid point {gid} is already taken by trial {other}")
        spec = trial_spec(self.base, item.alpha, item.beta, item.gamma)
        run_dir = (
            Path(self.config.output)
            / "trials"
            / self.config.study
            / (f"{trial.number:04d}_{item.kind}_a{item.alpha:g}_b{item.beta:g}_g{item.gamma:g}_s{item.seed}")
        )
        start = time.perf_counter()
        epochs: list[dict[str, Any]] = []
        kwargs = {}
        if self.config.strategy == "halving":
            kwargs["on_epoch"] = functools.partial(self._on_epoch, trial, epochs)
        try:
            result = self.trainer(train_config(self.config, item.seed, run_dir, spec.name), spec, **kwargs)
        except RunDirLocked as exc:  # another worker was handed this very trial (SQLite's read-then-write race)
            trial.set_user_attr("duplicate_of", trial.number)
            raise _SpareTrial(f"trial {trial.number} is being trained by another worker ({exc})") from None
        except optuna.TrialPruned:
            last = SimpleNamespace(last_top1=epochs[-1]["val_top1"], epochs=len(epochs), spec=_saved_spec(run_dir))
            record = {**_record(item, self.base, spec, last, time.perf_counter() - start, run_dir), "pruned": True}
            self._finish(trial, record, "pruned after")
            raise
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the point is queued again for the next worker
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                study.enqueue_trial(item.params, user_attrs={_GRID_ID: gid})
            raise
        record = _record(item, self.base, spec, result, time.perf_counter() - start, run_dir)
        self._finish(trial, record, "in")
        return record["top1"]

    def _on_epoch(self, trial: Any, epochs: list[dict[str, Any]], record: Mapping[str, Any]) -> None:
        import optuna

        epochs.append(dict(record))
        trial.report(float(record["val_top1"]), int(record["epoch"]))
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {record['epoch']}: top-1 {record['val_top1']:.2f}% below its rung")

    def _finish(self, trial: Any, record: Mapping[str, Any], verb: str) -> None:
        for key, value in record.items():
            trial.set_user_attr(key, value)
        self.ran += 1
        epochs = f" epochs={record['epochs']}" if "epochs" in record else ""
        self.echo(
            f"trial {trial.number}: {record['kind']} a={record['alpha']:g} b={record['beta']:g} "
            f"g={record['gamma']:g} seed={record['seed']} top1={record['top1']:.2f}%{epochs} "
            f"MACs={record['macs'] / 1e6:.2f}M {verb} {record['wall_time_s']:.1f}s"
        )


def majority_top1(config: SearchConfig) -> float:
    """Top-1 (%) of the trivial classifier on the search's validation set: always its most frequent class."""
    from collections import Counter

    from effnet.training.data import load_datasets

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
    if getattr(trainer, "func", None) is _default_trainer:
        return round(majority_top1(config), 3)
    classes = next((int(r["num_classes"]) for r in records if r.get("num_classes")), None)
    return round(100.0 / classes, 3) if classes else None


def _finished_records(study: Any) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    records = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if _GRID_ID in t.user_attrs and "top1" in t.user_attrs:
            records.append({"trial": t.number, **t.user_attrs})
    return sorted(records, key=lambda r: r["trial"])


def run_search(
    config: SearchConfig,
    *,
    trainer: Trainer | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    before_report: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Work on the study until every candidate has a COMPLETE (or PRUNED) trial, then write and return the report.

    Several processes or machines may run this with the same storage and study; each takes the next WAITING
    trial. A worker that finds none while other workers' trials are running waits for them (and re-runs any
    whose heartbeat goes stale). ``trainer`` defaults to :func:`effnet.training.trainer.fit`. ``before_report``:
    as in :func:`run_trials`.
    """
    from effnet.search.report import write_report

    seeds = [config.seed + i for i in range(config.seeds)]
    items = candidates(
        config.target,
        config.tol,
        config.step,
        config.low,
        config.high,
        seeds=seeds,
        include_baseline=config.include_baseline,
    )
    records, summary = run_trials(
        config, items, trainer=trainer, progress=progress, echo=echo, before_report=before_report
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
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train every point of ``items`` as one trial of the Optuna study ``config.study`` (the study machinery of
    :func:`run_search`: enqueued points, many workers and machines, resumable), with ``config``'s budget.

    ``extra`` is added to the study's definition (a resumed study must match it). Points that round to the same
    network are trained once (:func:`distinct_networks`). ``before_report()`` is called once this worker's loop
    is over, before the records are read, and its mapping is added to the summary (``--jobs``: it waits for the
    helper workers, :func:`effnet.search.jobs.run_jobs`). Returns ``(finished trial records, summary)``.
    """
    import optuna
    from tqdm.auto import tqdm

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
        )


def _check_trainer(trainer: Trainer, strategy: str) -> None:
    """``ValueError`` before any study when halving needs ``on_epoch`` and ``trainer`` does not take it."""
    if strategy != "halving":
        return
    try:
        params = inspect.signature(trainer).parameters
    except (TypeError, ValueError):  # a callable without a signature: trust it
        return
    if "on_epoch" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(
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
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from tqdm.auto import tqdm

    from effnet.cost import cost

    base = baseline_spec(config)
    if getattr(trainer, "func", None) is _default_trainer:
        train_config(config, config.seed, Path(config.output))  # bad --train-option values fail before any study
    items, same = distinct_networks(items, base)
    for dropped, kept in same:
        echo(
            f"{_SAME_NETWORK_NOTE}a={dropped.alpha:g} b={dropped.beta:g} g={dropped.gamma:g}: it is the same "
            f"network as a={kept.alpha:g} b={kept.beta:g} g={kept.gamma:g}"
        )
    defn = {**definition(config, base, items), **extra}
    url = config.storage_url
    storage = open_storage(url, config.heartbeat)
    study = _load_study(storage, config, defn, items)
    start = time.perf_counter()
    worker = _Worker(config, trainer, items, base, echo)
    with tqdm(
        total=len(items), desc=f"{extra.get('tool', 'search')} {config.study}", unit="trial", disable=not progress
    ) as bar:
        worker.loop(study, bar)
    wall = round(time.perf_counter() - start, 1)
    after = dict(before_report())
    records = _finished_records(study)
    summary = {
        "study": config.study,
        "storage": redact(url),
        "data": config.data,
        "baseline_name": base.name,
        "baseline_macs": cost(base).macs,
        "trials_run_by_this_worker": worker.ran,
        "worker_wall_time_s": wall,
        "strategy": config.strategy,
        "trials_wall_time_s": round(sum(float(r["wall_time_s"]) for r in records), 1),
        "epochs_trained": sum(int(r.get("epochs", config.epochs)) for r in records),
        "epochs_full_grid": config.epochs * len(items),
        "chance_top1": _chance(config, trainer, records),
        "definition": defn,
        **after,
    }
    return records, summary


def load_study_result(storage: str, study: str) -> dict[str, Any]:
    """Definition, ranked rows and chosen (α, β, γ) of an existing search study (for ``effnet scale --study``).

    Uses the COMPLETE trials present now (a study still running elsewhere gives a partial answer; the counts
    say so). ``FileNotFoundError`` for a missing SQLite file, ``ValueError`` for an unknown or foreign study.
    """
    import optuna
    from sqlalchemy.engine import make_url

    from effnet.search.report import choose, summarize

    missing = None
    with contextlib.suppress(Exception):  # a malformed URL is reported by open_storage
        parsed = make_url(storage)
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
            missing = database
    if missing:
        raise FileNotFoundError(f"--storage {storage}: no such SQLite file {missing}")
    st = open_storage(storage, heartbeat=None)
    try:
        loaded = optuna.load_study(study_name=study, storage=st)
    except KeyError:
        names = optuna.get_all_study_names(st)
        raise ValueError(
            f"--study {study!r} is not in {redact(storage)}; it holds: {', '.join(names) or 'no study'}"
        ) from None
    defn = loaded.user_attrs.get(_ATTR)
    if defn is None:
        raise ValueError(f"--study {study!r} in {redact(storage)} was not created by effnet search")
    records = [
        {"trial": t.number, **t.user_attrs}
        for t in loaded.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        )
        if _GRID_ID in t.user_attrs and "top1" in t.user_attrs
    ]
    rows = summarize(records, 1) if records else []
    chosen = choose(rows)
    if chosen is None:
        raise ValueError(
            f"--study {study!r} has no finished scaled trial yet ({len(records)} complete of "
            f"{len(defn['candidates'])}); run effnet search to finish it"
        )
    trained = next(
        (
            {"num_classes": r["num_classes"], "in_chans": r["in_chans"]}
            for r in records
            if "num_classes" in r and "in_chans" in r
        ),
        {},
    )
    return {
        "definition": defn,
        "rows": rows,
        "chosen": dict(chosen),
        "complete": len(records),
        "total": len(defn["candidates"]),
        "trained": trained,
    }


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_search_jobs(config: SearchConfig, jobs: int = 1, *, progress: bool = True) -> dict[str, Any]:
    """:func:`run_search` with ``jobs`` local worker processes on the same study (this process is one of them):
    :func:`effnet.search.jobs.run_jobs` with ``tool="search"``. Returns this process's report."""
    from effnet.search.jobs import run_jobs

    return run_jobs("search", config, jobs, progress=progress)
