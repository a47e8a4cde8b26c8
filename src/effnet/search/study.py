"""Step 1 of compound scaling as a resumable, distributed Optuna study: grid-search (α, β, γ) at φ = 1.

The candidates are every (α, β, γ) of :func:`effnet.scaling.grid` (``|α·β²·γ² − target| ≤ tol``) plus the
depth-only, width-only and resolution-only points at the same FLOPs target (always included, so every study
answers "does compound beat single-dimension scaling?") and the unscaled baseline as a reference. Each candidate
is trained ``seeds`` times: trial = (α, β, γ, seed). A trial scales the baseline by ``d = α``, ``w = β``,
``r = γ`` (:func:`effnet.specs.scale`), trains it with :func:`effnet.training.trainer.fit` (or any ``trainer`` with the
same contract) and records top-1, exact params/MACs, wall time and seed as trial user attributes.

Distribution and fault tolerance: trials live in an Optuna RDB storage (SQLite file by default, any
PostgreSQL URL for many machines). :class:`~effnet.search.sampler.CandidateGridSampler` (a ``GridSampler`` over
the explicit candidate list) gives each new trial the lowest candidate that has neither a COMPLETE nor a
RUNNING trial. Asking for a trial happens under a storage-wide claim lock (``flock`` beside a SQLite file,
``pg_advisory_lock`` on PostgreSQL), so concurrent workers never pick the same candidate. A running trial
records an Optuna heartbeat; a worker killed mid-trial leaves a RUNNING trial whose heartbeat goes stale, and
:func:`optuna.storages.fail_stale_trials` (run by every worker before claiming) marks it FAIL, which makes its
candidate claimable again. COMPLETE trials are never re-run. See :mod:`effnet.search.report` for the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.scaling import flops_factor, grid, single_dimension_points
from effnet.search.baselines import load_baseline
from effnet.search.storage import Heartbeat, claim_lock, default_storage, open_storage, redact
from effnet.specs import NetworkSpec, scale

__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_STUDY",
    "DEFAULT_STEP",
    "DEFAULT_TOL",
    "SearchConfig",
    "Candidate",
    "distinct_networks",
    "candidates",
    "baseline_spec",
    "trial_spec",
    "definition",
    "default_storage",
    "open_storage",
    "claim_lock",
    "Trainer",
    "train_config",
    "run_search",
    "run_search_jobs",
    "usable_cpus",
    "load_study_result",
]

DEFAULT_OUTPUT = "runs/search"
"""Where ``effnet search`` writes its SQLite study, trial runs and report by default."""
DEFAULT_STUDY = "effnet-search"
"""Default Optuna study name."""
DEFAULT_STEP = 0.1
"""Default grid step of the CLI (the quick study); the paper-like fine grid is ``--step 0.05 --tol 0.1``."""
DEFAULT_TOL = 0.05
"""Default tolerance on ``|α·β²·γ² − target|`` of the CLI (the quick study)."""

_RESERVED_OPTIONS = frozenset({
    "data", "model", "width", "depth", "resolution", "spec_file", "weights", "epochs", "batch_size", "train_limit",
    "val_limit", "seed", "output", "resume", "data_root", "threads",
})  # fmt: skip
_FORMAT = "effnet-search/1"
_ATTR = "effnet_search"


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search study (grid, baseline, training budget) and how this worker runs.

    ``width``/``depth``/``resolution`` shape the *baseline* before the search scales it; ``epochs``,
    ``train_limit``, ``val_limit`` and ``batch_size`` are the per-trial training budget. ``storage`` None means
    ``sqlite:///<output>/study.db``. ``heartbeat`` is the liveness interval in seconds: a killed worker's trial is
    re-run after ``3 × heartbeat`` seconds without a heartbeat. ``threads`` limits torch threads per worker.
    """

    data: str = "fashion-mnist"
    baseline: str = "efficientnet_b0"
    storage: str | None = None
    study: str = DEFAULT_STUDY
    target: float = 2.0
    tol: float = DEFAULT_TOL
    step: float = DEFAULT_STEP
    low: float = 1.0
    high: float = 2.0
    seeds: int = 1
    seed: int = 0
    include_baseline: bool = True
    width: float = 0.25
    depth: float = 0.5
    resolution: int | None = 32
    epochs: int = 3
    train_limit: int | None = 4000
    val_limit: int | None = 2000
    batch_size: int = 32
    data_root: str | None = None
    output: str = DEFAULT_OUTPUT
    heartbeat: int = 10
    threads: int | None = None
    train_options: tuple[tuple[str, Any], ...] = (
        ("opt", "adamw"), ("schedule", "cosine"), ("lr", 0.04), ("warmup_epochs", 0.3), ("bn_momentum", 0.1),
        ("augment", "none"), ("crop_pct", 1.0), ("ema_decay", 0.0), ("label_smoothing", 0.0), ("dropout", 0.0),
        ("drop_path", 0.0),
    )  # fmt: skip

    def __post_init__(self) -> None:
        options = tuple((str(k), v) for k, v in dict(self.train_options).items())
        object.__setattr__(self, "train_options", options)
        reserved = sorted(set(dict(options)) & _RESERVED_OPTIONS)
        if reserved:
            raise ValueError(f"--train-option {', '.join(reserved)}: set by the search itself; use its own flags "
                             "(--epochs, --batch-size, --train-limit, --width, --resolution, --seeds, --output, ...)")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1, got {self.seeds!r}")
        if not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise ValueError(f"--heartbeat must be an integer number of seconds >= 1, got {self.heartbeat!r}")
        if not isinstance(self.study, str) or not self.study.strip():
            raise ValueError(f"--study must be a non-empty name, got {self.study!r}")
        if self.target < 1:
            raise ValueError(f"--target must be >= 1 (the FLOPs growth per unit of phi), got {self.target}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "val_limit", "resolution", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")

    @property
    def storage_url(self) -> str:
        """The storage URL this config uses (the default SQLite file when ``storage`` is None)."""
        return self.storage or default_storage(self.output)


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


def candidates(target: float = 2.0, tol: float = DEFAULT_TOL, step: float = DEFAULT_STEP, low: float = 1.0,
               high: float = 2.0, *, seeds: Sequence[int] = (0,),
               include_baseline: bool = True) -> list[Candidate]:  # fmt: skip
    """Every trial of a study: grid points, the exact single-dimension points, optionally (1, 1, 1), × seeds.

    Order: baseline first, then the points sorted, each repeated for every seed in ``seeds`` (seed-major
    within a point). Raises ``ValueError`` when the grid has no point inside the tolerance.
    """
    points = set(grid(target=target, tol=tol, step=step, low=low, high=high))
    points.update((round(a, 10), round(b, 10), round(g, 10)) for a, b, g in single_dimension_points(target))
    ordered = sorted(points)
    if include_baseline:
        ordered = [(1.0, 1.0, 1.0)] + [p for p in ordered if p != (1.0, 1.0, 1.0)]
    return [Candidate(a, b, g, _kind(a, b, g), int(s)) for a, b, g in ordered for s in seeds]


_SAME_NETWORK_NOTE = "not training "


def distinct_networks(items: Sequence[Candidate],
                      base: NetworkSpec) -> tuple[list[Candidate], list[tuple[Candidate, Candidate]]]:  # fmt: skip
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
        "grid": {"target": config.target, "tol": config.tol, "step": config.step, "low": config.low,
                 "high": config.high, "include_baseline": config.include_baseline},  # fmt: skip
        "seeds": [config.seed + i for i in range(config.seeds)],
        "baseline": base.to_dict(),
        "budget": {"data": config.data, "epochs": config.epochs, "train_limit": config.train_limit,
                   "val_limit": config.val_limit, "batch_size": config.batch_size,
                   "train_options": dict(config.train_options)},  # fmt: skip
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

Trainer = Callable[[Any, NetworkSpec], Any]
"""``trainer(train_config, spec) -> result``: the contract of :func:`effnet.training.trainer.fit` (``spec``: the
network to train; the result has ``last_top1`` and, when available, ``best_top1``, ``last_top5``, ``ema_top1``,
``params``, ``macs``, ``epochs``, ``images_per_s``, ``wall_time_s``)."""


def _default_trainer(train_config: Any, spec: NetworkSpec, progress: bool = False) -> Any:
    from effnet.training.trainer import fit

    return fit(train_config, spec=spec, progress=progress)


def train_config(config: SearchConfig, seed: int, output: Path, model: str = "search-trial") -> Any:
    """The ``effnet.training.trainer.TrainConfig`` of one trial: the budget, the seed, run folder and name.

    Raises ``ValueError`` for an unknown ``train_options`` field or an invalid value (checked by the recipe).
    """
    from effnet.training.recipe import resolve_recipe
    from effnet.training.trainer import TrainConfig

    fields = {
        "data": config.data, "model": model, "epochs": config.epochs, "batch_size": config.batch_size,
        "train_limit": config.train_limit, "val_limit": config.val_limit, "seed": seed, "output": str(output),
        "data_root": config.data_root, "threads": config.threads, **dict(config.train_options),
    }  # fmt: skip
    try:
        train = TrainConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--train-option: {exc}") from None
    resolve_recipe(train)  # validates every value now, not after the study was created
    return train


def _load_study(storage: Any, name: str, sampler: Any, defn: dict[str, Any], url: str) -> Any:
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, direction="maximize",
                                load_if_exists=True)  # fmt: skip
    given = json.loads(json.dumps(defn))
    stored = study.user_attrs.get(_ATTR)
    if stored is None:
        if study.trials:
            raise ValueError(f"--study {name!r} in {redact(url)} already holds {len(study.trials)} trials that "
                             "effnet search did not create; choose another --study name")  # fmt: skip
        study.set_user_attr(_ATTR, given)
    elif stored != given:
        diffs = sorted(_differences(stored, given), key=lambda d: d.startswith("candidates"))  # causes first
        raise ValueError(
            f"--study {name!r} in {redact(url)} was created for a different search ({'; '.join(diffs[:4])}"
            f"{'; ...' if len(diffs) > 4 else ''}); its trials are kept unchanged. Re-run with the flags it was "
            "created with, or pass a new --study name"
        )
    return study


def _record(item: Candidate, base: NetworkSpec, spec: NetworkSpec, result: Any, wall: float,
            run_dir: Path) -> dict[str, Any]:  # fmt: skip
    from effnet.cost import cost

    exact = cost(spec)
    params = getattr(result, "params", None) or exact.params
    macs = getattr(result, "macs", None) or exact.macs
    record = {
        "kind": item.kind, "alpha": item.alpha, "beta": item.beta, "gamma": item.gamma, "seed": item.seed,
        "depth": spec.depth, "width": spec.width, "resolution": spec.resolution,
        "flops_factor": flops_factor(*item.point), "macs_factor": exact.macs / cost(base).macs,
        "params": int(params), "macs": int(macs), "top1": float(result.last_top1), "wall_time_s": round(wall, 3),
        "output_dir": str(run_dir), "worker": f"{socket.gethostname()}:{os.getpid()}",
    }  # fmt: skip
    for name in ("best_top1", "last_top5", "ema_top1", "epochs", "images_per_s"):
        value = getattr(result, name, None)
        if value is not None:
            record[name] = value
    trained = getattr(result, "spec", None)  # the trainer fits classes and input channels to the data
    if trained:
        record["num_classes"], record["in_chans"] = int(trained["num_classes"]), int(trained["in_chans"])
    return record


def _run_trial(study: Any, storage: Any, trial: Any, items: Sequence[Candidate], base: NetworkSpec,
               config: SearchConfig, trainer: Trainer) -> dict[str, Any]:  # fmt: skip
    from optuna.trial import TrialState

    item = items[storage.get_trial_system_attrs(trial._trial_id)["grid_id"]]
    values = {
        name: trial.suggest_float(name, min(getattr(c, name) for c in items), max(getattr(c, name) for c in items))
        for name in ("alpha", "beta", "gamma")
    }  # fmt: skip
    values["seed"] = trial.suggest_int("seed", min(c.seed for c in items), max(c.seed for c in items))
    if values != item.params:
        raise RuntimeError(f"trial {trial.number}: sampled {values} but its grid point is {item.params}")
    spec = trial_spec(base, item.alpha, item.beta, item.gamma)
    run_dir = Path(config.output) / "trials" / config.study / (
        f"{trial.number:04d}_{item.kind}_a{item.alpha:g}_b{item.beta:g}_g{item.gamma:g}_s{item.seed}")
    start = time.perf_counter()
    try:
        with Heartbeat(storage, trial._trial_id, config.heartbeat):
            result = trainer(train_config(config, item.seed, run_dir, spec.name), spec)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            study.tell(trial, state=TrialState.FAIL)
        raise
    record = _record(item, base, spec, result, time.perf_counter() - start, run_dir)
    for key, value in record.items():
        trial.set_user_attr(key, value)
    study.tell(trial, record["top1"])
    return record


def _complete_records(study: Any, fingerprint: str) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    records = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.system_attrs.get("effnet_grid") == fingerprint:
            records.append({"trial": t.number, **t.user_attrs})
    return sorted(records, key=lambda r: r["trial"])


def run_search(config: SearchConfig, *, trainer: Trainer | None = None, progress: bool = True,
               echo: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Work on the study until every candidate has a COMPLETE trial, then write and return the report.

    Several processes or machines may run this with the same storage and study; each claims candidates one
    at a time. A worker that finds nothing to claim while other workers' trials are running waits for them
    (and re-runs any whose heartbeat goes stale). ``trainer`` defaults to :func:`effnet.training.trainer.fit`.
    """
    import optuna
    from tqdm.auto import tqdm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        if trainer is None:
            trainer = functools.partial(_default_trainer, progress=progress)
        return _work(config, trainer, progress, echo or (lambda text: tqdm.write(text)))


def _work(config: SearchConfig, trainer: Trainer, progress: bool, echo: Callable[[str], None]) -> dict[str, Any]:
    import optuna
    from tqdm.auto import tqdm

    from effnet.cost import cost
    from effnet.search.report import write_report
    from effnet.search.sampler import CandidateGridSampler

    base = baseline_spec(config)
    if getattr(trainer, "func", None) is _default_trainer:
        train_config(config, config.seed, Path(config.output))  # bad --train-option values fail before any study
    seeds = [config.seed + i for i in range(config.seeds)]
    items = candidates(config.target, config.tol, config.step, config.low, config.high, seeds=seeds,
                       include_baseline=config.include_baseline)  # fmt: skip
    items, same = distinct_networks(items, base)
    for dropped, kept in same:
        echo(f"{_SAME_NETWORK_NOTE}a={dropped.alpha:g} b={dropped.beta:g} g={dropped.gamma:g}: it is the same "
             f"network as a={kept.alpha:g} b={kept.beta:g} g={kept.gamma:g}")  # fmt: skip
    defn = definition(config, base, items)
    url = config.storage_url
    sampler = CandidateGridSampler([c.params for c in items])
    with claim_lock(url, ""):  # creating tables and studies must not race between workers
        storage = open_storage(url, config.heartbeat)
        study = _load_study(storage, config.study, sampler, defn, url)
    start = time.perf_counter()
    complete, _, total = sampler.progress(study)
    ran = 0
    waiting_said = False
    with tqdm(total=total, initial=complete, desc=f"search {config.study}", unit="trial", disable=not progress) as bar:
        while True:
            trial = None
            with claim_lock(url, config.study):
                optuna.storages.fail_stale_trials(study)
                if sampler.unclaimed(study):
                    trial = study.ask()
                    storage.record_heartbeat(trial._trial_id)
            if trial is None:
                complete, running, total = sampler.progress(study)
                bar.n = complete
                bar.refresh()
                if complete == total:
                    break
                if not waiting_said:
                    echo(f"waiting for {running} trial(s) running in other workers (a killed worker's trial is "
                         f"re-run here after {3 * config.heartbeat} s without heartbeat)")  # fmt: skip
                    waiting_said = True
                time.sleep(min(config.heartbeat, 5))
                continue
            record = _run_trial(study, storage, trial, items, base, config, trainer)
            ran += 1
            echo(f"trial {trial.number}: {record['kind']} a={record['alpha']:g} b={record['beta']:g} "
                 f"g={record['gamma']:g} seed={record['seed']} top1={record['top1']:.2f}% "
                 f"MACs={record['macs'] / 1e6:.2f}M in {record['wall_time_s']:.1f}s")  # fmt: skip
            bar.n = sampler.progress(study)[0]
            bar.refresh()
    records = _complete_records(study, sampler.fingerprint)
    summary = {
        "study": config.study, "storage": redact(url), "data": config.data, "baseline_name": base.name,
        "baseline_macs": cost(base).macs, "trials_run_by_this_worker": ran,
        "worker_wall_time_s": round(time.perf_counter() - start, 1),
        "trials_wall_time_s": round(sum(float(r["wall_time_s"]) for r in records), 1), "definition": defn,
    }  # fmt: skip
    return write_report(records, summary["baseline_macs"], config.output, summary=summary)


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
        raise ValueError(f"--study {study!r} is not in {redact(storage)}; it holds: "
                         f"{', '.join(names) or 'no study'}") from None  # fmt: skip
    defn = loaded.user_attrs.get(_ATTR)
    if defn is None:
        raise ValueError(f"--study {study!r} in {redact(storage)} was not created by effnet search")
    records = [
        {"trial": t.number, **t.user_attrs}
        for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if "effnet_grid" in t.system_attrs and "top1" in t.user_attrs
    ]
    rows = summarize(records, 1) if records else []
    chosen = choose(rows)
    if chosen is None:
        raise ValueError(f"--study {study!r} has no finished scaled trial yet ({len(records)} complete of "
                         f"{len(defn['candidates'])}); run effnet search to finish it")  # fmt: skip
    trained = next(({"num_classes": r["num_classes"], "in_chans": r["in_chans"]} for r in records
                    if "num_classes" in r and "in_chans" in r), {})  # fmt: skip
    return {"definition": defn, "rows": rows, "chosen": dict(chosen), "complete": len(records),
            "total": len(defn["candidates"]), "trained": trained}  # fmt: skip


_CHILD = "import sys; from effnet.search.study import _child_main; _child_main()"


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _child_main() -> None:
    """Body of a ``--jobs`` worker process: a JSON :class:`SearchConfig` on stdin, then :func:`run_search`."""
    config = SearchConfig(**json.loads(sys.stdin.read()))

    def echo(text: str) -> None:
        if not text.startswith(_SAME_NETWORK_NOTE):  # the parent process says those once
            print(f"[worker {os.getpid()}] {text}", flush=True)

    run_search(config, progress=False, echo=echo)


def run_search_jobs(config: SearchConfig, jobs: int = 1, *, progress: bool = True) -> dict[str, Any]:
    """:func:`run_search` with ``jobs`` local worker processes on the same study (this process is one of them).

    Each worker gets ``config.threads`` torch threads, by default ``usable_cpus() // jobs``: on a small CPU several
    single-threaded trainings use the cores better than one multi-threaded one. Returns this process's report.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    if jobs == 1:
        return run_search(config, progress=progress)
    threads = config.threads or max(1, usable_cpus() // jobs)
    config = dataclasses.replace(config, threads=threads)
    payload = json.dumps(dataclasses.asdict(config))
    children = []
    try:
        for _ in range(jobs - 1):
            child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, text=True)
            child.stdin.write(payload)  # type: ignore[union-attr]
            child.stdin.close()  # type: ignore[union-attr]
            children.append(child)
        report = run_search(config, progress=progress)
    except BaseException:
        for child in children:  # stop our own helpers; their trials are re-run by the next worker
            if child.poll() is None:
                child.terminate()
        raise
    finally:
        for child in children:
            child.wait()
    report["jobs"] = jobs
    report["threads_per_job"] = threads
    return report
