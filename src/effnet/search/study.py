"""The Optuna study of a search: create it and enqueue its grid once, or load it and check its definition.

Distribution and fault tolerance, with Optuna's public API only: trials live in an Optuna storage
(:mod:`effnet.search.storage`: a journal file by default, any PostgreSQL URL for many machines). The worker that
creates the study (study names are unique, so exactly one does) stores the study's definition
(:func:`effnet.search.grid.definition`) and enqueues every candidate as a WAITING trial (``enqueue_trial``)
carrying its grid id (:data:`GRID_ID`); every other worker loads the study and checks that it was made for the
same search. The workers then take WAITING trials (:mod:`effnet.search.worker`). With ``strategy="halving"`` the
study's pruner is :class:`effnet.search.halving.KeepLeadersPruner`. :func:`load_study_result` reads a study's
finished trials back for ``effnet scale --study``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from effnet.config.search import SearchConfig
from effnet.errors import InvalidValue, MissingFile
from effnet.search.grid import Candidate
from effnet.search.halving import KeepLeadersPruner
from effnet.search.report import choose, summarize
from effnet.search.storage import is_journal, open_storage, redact

__all__ = [
    "GRID_ID",
    "DIVERGED",
    "enqueue",
    "open_study",
    "finished_records",
    "diverged_records",
    "trained_io",
    "load_study_result",
]

GRID_ID = "grid_id"
"""The user attribute of a trial that names its candidate (index into the study's candidates)."""
DIVERGED = "diverged"
"""The user attribute of a FAILed trial whose training diverged (the one-line reason): its point is done."""
_ATTR = "effnet_search"
_ENQUEUED = "effnet_enqueued"
_CREATOR_WAIT_S = 30


def _pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.strategy == "halving":
        return KeepLeadersPruner(config.min_epochs, config.eta, config.keep, order=GRID_ID)
    return optuna.pruners.NopPruner()


def enqueue(study: optuna.Study, items: Sequence[Candidate], ids: Sequence[int], *, skip_if_exists: bool) -> None:
    """Enqueue the candidates ``items[i]`` for ``i`` in ``ids`` as WAITING trials carrying their grid id."""
    for i in ids:
        study.enqueue_trial(items[i].params, user_attrs={GRID_ID: i}, skip_if_exists=skip_if_exists)


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


def _enqueue_grid(study: optuna.Study, given: Mapping[str, Any], items: Sequence[Candidate]) -> None:
    study.set_user_attr(_ATTR, dict(given))
    enqueue(study, items, range(len(items)), skip_if_exists=True)
    study.set_user_attr(_ENQUEUED, len(items))


def open_study(storage: Any, config: SearchConfig, defn: Mapping[str, Any], items: Sequence[Candidate]) -> optuna.Study:
    """Create the study and enqueue its grid (exactly one worker does), or load it and check its definition.

    ``defn``: the study's definition (:func:`effnet.search.grid.definition`, plus any extra). Raises
    :class:`~effnet.errors.InvalidValue` when the study was created for a different search or not by effnet.
    """
    name, url = config.study, config.storage_url
    kwargs = {
        "storage": storage,
        "study_name": name,
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "pruner": _pruner(config),
    }
    given = json.loads(json.dumps(dict(defn)))
    try:  # the unique study name makes creation atomic: the winner enqueues the grid, the others wait for it
        study = optuna.create_study(direction="maximize", **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
    else:
        study.set_metric_names(["top1"])  # what optuna-dashboard calls the objective
        _enqueue_grid(study, given, items)
        return study
    deadline = time.monotonic() + _CREATOR_WAIT_S
    while _ENQUEUED not in study.user_attrs and time.monotonic() < deadline:
        if study.user_attrs.get(_ATTR) is None and study.get_trials(deepcopy=False):
            break  # a study somebody else made
        time.sleep(0.2)
    stored = study.user_attrs.get(_ATTR)
    if stored is None and study.get_trials(deepcopy=False):
        raise InvalidValue(
            f"--study {name!r} in {redact(url)} already holds {len(study.trials)} trials that "
            "effnet search did not create; choose another --study name"
        )
    if stored is not None and stored != given:
        diffs = sorted(_differences(stored, given), key=lambda d: d.startswith("candidates"))  # causes first
        raise InvalidValue(
            f"--study {name!r} in {redact(url)} was created for a different search ({'; '.join(diffs[:4])}"
            f"{'; ...' if len(diffs) > 4 else ''}); its trials are kept unchanged. Re-run with the flags it was "
            "created with, pass a new --study name, or leave out --output (each search's settings then get a "
            "folder of its own)"
        )
    if _ENQUEUED not in study.user_attrs:  # its creator died while enqueueing: finish that
        _enqueue_grid(study, given, items)
    return study


def finished_records(study: optuna.Study) -> list[dict[str, Any]]:
    """The records (user attributes and ``trial`` number) of the COMPLETE and PRUNED trials of grid points."""
    records = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if GRID_ID in t.user_attrs and "top1" in t.user_attrs:
            records.append({"trial": t.number, **t.user_attrs})
    return sorted(records, key=lambda r: r["trial"])


def trained_io(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``num_classes`` and ``in_chans`` of the networks the trials trained (fitted to the data), from the first
    record that has them; empty when none does (a stand-in trainer that does not report them)."""
    for r in records:
        if r.get("num_classes") and r.get("in_chans"):
            return {"num_classes": int(r["num_classes"]), "in_chans": int(r["in_chans"])}
    return {}


def diverged_records(study: optuna.Study) -> list[dict[str, Any]]:
    """``{"trial", "alpha", "beta", "gamma", "seed", "diverged"}`` of each trial whose training diverged."""
    return [
        {"trial": t.number, **t.params, DIVERGED: t.user_attrs[DIVERGED]}
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if DIVERGED in t.user_attrs and GRID_ID in t.user_attrs
    ]


def _missing_sqlite_file(storage: str) -> str | None:
    if is_journal(storage):
        return None if Path(storage).is_file() else storage
    with contextlib.suppress(Exception):  # a malformed URL is reported by open_storage
        parsed = make_url(storage)
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
            return database
    return None


def load_study_result(storage: str, study: str) -> dict[str, Any]:
    """Definition, ranked rows and chosen (α, β, γ) of an existing search study (for ``effnet scale --study``).

    Uses the COMPLETE trials present now (a study still running elsewhere gives a partial answer; the counts
    say so). :class:`~effnet.errors.MissingFile` for a missing SQLite file, :class:`~effnet.errors.InvalidValue`
    for an unknown or foreign study or one without a finished scaled trial.
    """
    missing = _missing_sqlite_file(storage)
    if missing:
        kind = "journal" if is_journal(storage) else "SQLite"
        raise MissingFile(f"--storage {storage}: no such {kind} file {missing}")
    st = open_storage(storage, heartbeat=None)
    try:
        loaded = optuna.load_study(study_name=study, storage=st)
    except KeyError:
        names = optuna.get_all_study_names(st)
        raise InvalidValue(
            f"--study {study!r} is not in {redact(storage)}; it holds: {', '.join(names) or 'no study'}"
        ) from None
    defn = loaded.user_attrs.get(_ATTR)
    if defn is None:
        raise InvalidValue(f"--study {study!r} in {redact(storage)} was not created by effnet search")
    records = finished_records(loaded)
    rows = summarize(records, 1, defn) if records else []
    chosen = choose(rows)
    if chosen is None:
        raise InvalidValue(
            f"--study {study!r} has no finished scaled trial at equal cost yet ({len(records)} complete of "
            f"{len(defn['candidates'])}); run effnet search to finish it"
        )
    return {
        "definition": defn,
        "rows": rows,
        "chosen": dict(chosen),
        "complete": len(records),
        "total": len(defn["candidates"]),
        "trained": trained_io(records),
    }
