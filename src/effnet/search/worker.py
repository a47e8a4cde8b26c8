"""The Optuna worker of a search: take WAITING trials, train each one's grid point, record it, skip duplicates.

Every worker runs ``Study.optimize(n_trials=1)`` while WAITING trials are left, which pops one atomically. A trial
scales the baseline to its point (:func:`effnet.search.grid.trial_spec`), trains it with the ``trainer``
(:data:`Trainer`) and records top-1, exact params/MACs, wall time and seed as trial user attributes. A running
trial records Optuna heartbeats; a worker killed mid-trial leaves a RUNNING trial whose heartbeat goes stale,
:func:`optuna.storages.fail_stale_trials` marks it FAIL and the storage's retry callback enqueues a copy. A trial
whose trainer raises (or is interrupted) is FAILed and its point enqueued again. On a journal storage (no
heartbeats) a trial names its process (:func:`effnet.search.storage.claim`) and a worker that finds it RUNNING after
that process died FAILs and re-queues it (:func:`effnet.search.storage.recover_dead_trials`). A worker that pops a
trial whose point another trial already finished or runs marks it FAIL without training (``duplicate_of``), so no
point is trained twice even if a point was queued twice. COMPLETE and PRUNED trials are never re-run, nor is a trial
whose training diverged (:class:`~effnet.errors.TrainingDiverged`: FAIL with the ``diverged`` attribute, never
chosen). With
``strategy="halving"`` every trial reports validation top-1 after each epoch and the study's pruner may stop it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import TrialState

from effnet.config.search import SearchConfig
from effnet.config.training import TrainConfig, resolve_recipe
from effnet.cost import cost
from effnet.errors import InvalidValue, TrainingDiverged
from effnet.models.weight_files import read_safetensors_header
from effnet.scaling import flops_factor
from effnet.search.grid import Candidate, trial_spec
from effnet.search.storage import claim, is_journal, recover_dead_trials
from effnet.search.study import DIVERGED, GRID_ID, enqueue
from effnet.specs import NetworkSpec
from effnet.training.checkpoint import CHECKPOINT_NAME
from effnet.training.rundir import LOCK_NAME, RunDirLocked, RunLock

__all__ = ["Trainer", "train_config", "Worker"]

Trainer = Callable[..., Any]
"""``trainer(train_config, spec[, on_epoch=callback]) -> result``: the contract of
:func:`effnet.training.trainer.fit` (``spec``: the network to train; ``on_epoch(record)`` is called after each
epoch with ``record["epoch"]`` and ``record["val_top1"]`` and may raise to stop; it is passed only with
``strategy="halving"``, the default whenever ``epochs > min_epochs``). The result has ``last_top1`` and, when
available, ``best_top1``, ``last_top5``, ``ema_top1``, ``params``, ``macs``, ``epochs``, ``images_per_s``,
``wall_time_s`` and ``spec`` (the network trained, classes and channels fitted to the data). A trainer that fits
them writes that spec at its start to ``config.output``/``config.json`` (key ``spec``), as ``fit`` does, so a
trial stopped early records the cost of the network it trained."""


def train_config(config: SearchConfig, seed: int, output: Path, model: str = "search-trial") -> TrainConfig:
    """The :class:`~effnet.config.training.TrainConfig` of one trial: the budget, the seed, run folder and name.

    Raises :class:`~effnet.errors.InvalidValue` for an unknown ``train_options`` field or an invalid value
    (checked by the recipe).
    """
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
        raise InvalidValue(f"--train-option: {exc}") from None
    try:
        resolve_recipe(train)  # validates every value now, not after the study was created
    except TypeError:  # e.g. lr=abc reaches a numeric comparison as a string
        given = ", ".join(f"{k}={v!r}" for k, v in config.train_options if isinstance(v, str))
        raise InvalidValue(
            f"--train-option: a value has the wrong type ({given}); numbers must be numbers, e.g. lr=0.05"
        ) from None
    return train


def _record(
    item: Candidate, base: NetworkSpec, spec: NetworkSpec, result: Any, wall: float, run_dir: Path
) -> dict[str, Any]:
    """The user attributes of a finished trial: its point, network, exact cost, accuracy and where it ran."""
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
    """The spec (classes and input channels fitted to the data) a stopped trial trained: its ``config.json``'s (the
    trainer writes it at the start), else its best weights' header, if it wrote either."""
    try:
        return dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["spec"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return json.loads(read_safetensors_header(run_dir / "best.safetensors")["effnet.spec"])
    except (OSError, ValueError, KeyError):
        return None


def _final(run_dir: Path, artifacts: str) -> None:
    """A trial that ends for good before its last epoch (stopped by halving, diverged) is never resumed: its
    checkpoint goes, unless the trial keeps full run folders (``artifacts=all``)."""
    if artifacts != "all":
        (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)


def _clear_failed_attempt(run_dir: Path) -> None:
    """Empty the folder an earlier, failed attempt at this trial's point left (a trial is trained again from its
    start); :class:`RunDirLocked` when a worker is training in it."""
    if not run_dir.is_dir():
        return
    with RunLock(run_dir):
        for entry in run_dir.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


class _SpareTrial(Exception):
    """A trial this worker must not train (no grid point left for it, or its point is taken); marked FAIL."""


class _DivergedTrial(Exception):
    """A trial whose training diverged (NaN/inf loss): marked FAIL with the ``diverged`` attribute, its grid point
    done (never trained again, never chosen)."""


class Worker:
    """One worker's loop over a study: take WAITING trials until every grid point is COMPLETE or PRUNED.

    ``ran`` counts the trials this worker trained (finished or pruned).
    """

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

    def progress(self, study: optuna.Study) -> tuple[set[int], set[int], int]:
        """``(finished grid ids, running grid ids, WAITING trials)``."""
        done, running, waiting = set(), set(), 0
        for t in study.get_trials(deepcopy=False):
            gid = t.user_attrs.get(GRID_ID)
            if gid is None:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or DIVERGED in t.user_attrs:
                done.add(gid)
            elif t.state == TrialState.RUNNING:
                running.add(gid)
            elif t.state == TrialState.WAITING:
                waiting += 1
        return done, running - done, waiting

    def loop(self, study: optuna.Study, bar: Any) -> None:
        """Train WAITING trials; wait for other workers' running ones (re-queued if their heartbeat stops)."""
        total, said = len(self.items), False
        journal = is_journal(self.config.storage_url)
        while True:
            optuna.storages.fail_stale_trials(study)  # a stale trial is FAILed and re-enqueued (retry callback)
            if journal:  # no heartbeats: a trial whose process is gone is FAILed and re-enqueued
                recover_dead_trials(study, 3 * self.config.heartbeat)
            done, running, waiting = self.progress(study)
            bar.n = len(done)
            bar.refresh()
            if len(done) == total:
                return
            if not waiting and not running:  # e.g. a trial failed by an error: its retry was never queued
                enqueue(study, self.items, [i for i in range(total) if i not in done], skip_if_exists=False)
                continue
            if not waiting:
                if not said:
                    when = (
                        "once its process is gone"
                        if journal
                        else f"after {3 * self.config.heartbeat} s without heartbeat"
                    )
                    self.echo(
                        f"waiting for {len(running)} trial(s) running in other workers (a killed worker's "
                        f"trial is re-run here {when})"
                    )
                    said = True
                time.sleep(min(self.config.heartbeat, 5))
                continue
            try:
                study.optimize(
                    functools.partial(self.objective, study),
                    n_trials=1,
                    catch=(_SpareTrial, _DivergedTrial),
                    gc_after_trial=False,
                )
            except ValueError as exc:  # the trial was finished elsewhere meanwhile (e.g. failed as stale under load)
                if not str(exc).startswith("Cannot tell a "):
                    raise
                self.echo(f"a trial of this worker was already finished by another worker ({exc}); going on")

    def _taken(self, study: optuna.Study, number: int, gid: int) -> int | None:
        """Number of another trial that finished (or diverged) or is (earlier) running this grid point, else None."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)
        for t in study.get_trials(deepcopy=False, states=states):
            if t.state == TrialState.FAIL and DIVERGED not in t.user_attrs:
                continue  # failed by an error or a signal: its point is queued again
            if t.user_attrs.get(GRID_ID) == gid and t.number != number:
                if t.state != TrialState.RUNNING or t.number < number:
                    return t.number
        return None

    def _candidate(self, study: optuna.Study, trial: optuna.Trial) -> tuple[int, Candidate]:
        """The grid id and candidate of ``trial`` (its parameters suggested); :class:`_SpareTrial` if it has none."""
        gid = trial.user_attrs.get(GRID_ID)
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
        return gid, item

    def objective(self, study: optuna.Study, trial: optuna.Trial) -> float:
        """Train the trial's grid point; report each epoch to the pruner with ``strategy="halving"``."""
        claim(trial)
        gid, item = self._candidate(study, trial)
        spec = trial_spec(self.base, item.alpha, item.beta, item.gamma)
        name = f"{gid:04d}_{item.kind}_a{item.alpha:g}_b{item.beta:g}_g{item.gamma:g}_s{item.seed}"
        run_dir = Path(self.config.output) / "trials" / self.config.study / name  # the point's, whoever trains it
        start = time.perf_counter()
        epochs: list[dict[str, Any]] = []
        kwargs = {}
        if self.config.strategy == "halving":
            kwargs["on_epoch"] = functools.partial(self._on_epoch, trial, epochs)
        train = train_config(self.config, item.seed, run_dir, spec.name)
        try:
            _clear_failed_attempt(run_dir)
            result = self.trainer(train, spec, **kwargs)
        except TrainingDiverged as exc:  # deterministic: failed for good, never queued again nor chosen
            _final(run_dir, train.artifacts)
            trial.set_user_attr(DIVERGED, str(exc))
            self.ran += 1
            self.echo(
                f"trial {trial.number}: {item.kind} a={item.alpha:g} b={item.beta:g} g={item.gamma:g} "
                f"seed={item.seed} failed: {exc}"
            )
            raise _DivergedTrial(str(exc)) from None
        except RunDirLocked as exc:  # another worker was handed this very trial (SQLite's read-then-write race)
            trial.set_user_attr("duplicate_of", trial.number)
            raise _SpareTrial(f"trial {trial.number} is being trained by another worker ({exc})") from None
        except optuna.TrialPruned:
            _final(run_dir, train.artifacts)
            last = SimpleNamespace(last_top1=epochs[-1]["val_top1"], epochs=len(epochs), spec=_saved_spec(run_dir))
            record = {**_record(item, self.base, spec, last, time.perf_counter() - start, run_dir), "pruned": True}
            self._finish(trial, record, "pruned after")
            raise
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the point is queued again for the next worker
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                study.enqueue_trial(item.params, user_attrs={GRID_ID: gid})
                if isinstance(exc, KeyboardInterrupt):  # an error is reported by whoever catches it
                    self.echo(f"trial {trial.number}: stopped by a signal; marked failed, its point queued again")
            raise
        record = _record(item, self.base, spec, result, time.perf_counter() - start, run_dir)
        self._finish(trial, record, "in")
        return record["top1"]

    def _on_epoch(self, trial: optuna.Trial, epochs: list[dict[str, Any]], record: Mapping[str, Any]) -> None:
        epochs.append(dict(record))
        trial.report(float(record["val_top1"]), int(record["epoch"]))
        if int(record["epoch"]) >= self.config.epochs:  # trained in full: stopping it now would only hide it
            return
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {record['epoch']}: top-1 {record['val_top1']:.2f}% below its rung")

    def _finish(self, trial: optuna.Trial, record: Mapping[str, Any], verb: str) -> None:
        for key, value in record.items():
            trial.set_user_attr(key, value)
        self.ran += 1
        epochs = f" epochs={record['epochs']}" if "epochs" in record else ""
        self.echo(
            f"trial {trial.number}: {record['kind']} a={record['alpha']:g} b={record['beta']:g} "
            f"g={record['gamma']:g} seed={record['seed']} top1={record['top1']:.2f}%{epochs} "
            f"MACs={record['macs'] / 1e6:.2f}M {verb} {record['wall_time_s']:.1f}s"
        )
