"""The successive-halving pruner of ``effnet search --strategy halving``: asynchronous successive halving (the rule
of Optuna's ``SuccessiveHalvingPruner``) in the study's queue order, except that a trial whose point ranks in the
top ``keep`` at its epoch is never stopped.

Plain successive halving fully trains about ``trials / eta^rungs`` trials (two of twelve with ``eta`` 2 and rungs at
1, 2 and 4 epochs), so the report's second and third places would be trials compared at fewer epochs than the
first. With ``keep = K`` the trials of the K points (parameters without the seed) with the best validation top-1 at
each epoch go on, so the top K rows of the report are fully trained and ranked on equal terms.

**Independent of scheduling.** Optuna's asynchronous rule compares a trial at a rung with the trials that happen to
have reported there first, so which trials are stopped depends on which worker was faster. Here a trial is compared
with the trials *before it in the study's queue* (a smaller ``order`` attribute: the candidate's grid id) and only
them; a trial that reaches a rung before an earlier trial that is still running there waits for it. So every
decision, and the report, is the same whatever the number and speed of the workers. (After a killed worker, a
re-queued trial that had not yet reached a rung is not waited for; its earlier attempt's value is used when it had.)
Ranking reads only public Optuna API (``Study.get_trials``, ``FrozenTrial.intermediate_values``), so it works across
processes and machines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["KeepLeadersPruner", "rank_at_step", "promotable"]

_POLL_S = 0.2


def _point(trial: FrozenTrial) -> tuple[tuple[str, object], ...]:
    return tuple(sorted((k, v) for k, v in trial.params.items() if k != "seed"))


def rank_at_step(
    study: optuna.Study, trial: FrozenTrial, step: int, others: Sequence[FrozenTrial] | None = None
) -> int:
    """How many other points (trials' parameters without ``seed``) did strictly better than ``trial``'s point at
    ``step`` (0: it leads), a point's score being its best trial's value there, among ``others`` (default: every
    finished or running trial). The seeds of a point share its rank, so the seeds of a leading point go on
    together and ``keep`` counts the report's rows."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else 1.0
    if others is None:
        others = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    best: dict[tuple[tuple[str, object], ...], float] = {}
    for other in (*others, trial):
        seen = other.intermediate_values.get(step)
        if seen is not None:
            point = _point(other)
            best[point] = max(best.get(point, -math.inf), sign * seen)
    mine = best[_point(trial)]
    return sum(score > mine for score in best.values())


def promotable(value: float, competing: Sequence[float], eta: int, maximize: bool = True) -> bool:
    """Optuna's rule for a trial at a rung: go on when ``value`` (one of ``competing``) is in the top
    ``len(competing) // eta`` (the top one while fewer than ``eta`` compete)."""
    ordered = sorted(competing, reverse=maximize)
    cut = ordered[max(len(ordered) // eta - 1, 0)]
    return value >= cut if maximize else value <= cut


class KeepLeadersPruner(optuna.pruners.BasePruner):
    """Successive halving at steps ``min_resource · reduction_factor^r`` among the trials before this one in the
    queue (user attribute ``order``; module docstring), never stopping a trial whose point ranks in the top
    ``keep`` there (:func:`rank_at_step`); ``keep`` is validated where it is set
    (:class:`effnet.config.search.SearchConfig`)."""

    def __init__(self, min_resource: int, reduction_factor: int, keep: int, order: str = "grid_id") -> None:
        self._min, self._eta, self._keep, self._order = min_resource, reduction_factor, keep, order

    def _rung_step(self, step: int) -> bool:
        rung = self._min
        while rung < step:
            rung *= self._eta
        return rung == step

    def _earlier(self, study: optuna.Study, trial: FrozenTrial, step: int) -> list[FrozenTrial]:
        """One trial per earlier queue position that reached ``step`` (any attempt of it), once no earlier trial
        still running can reach it: until then this waits (a stale one is failed after its heartbeat)."""
        mine = trial.user_attrs.get(self._order)
        while True:
            reached: dict[object, FrozenTrial] = {}
            running: set[object] = set()
            for t in study.get_trials(deepcopy=False):
                position = t.user_attrs.get(self._order)
                if t.number == trial.number or position is None or (mine is not None and position >= mine):
                    continue
                if step in t.intermediate_values:
                    reached.setdefault(position, t)
                elif t.state == TrialState.RUNNING and mine is not None:
                    running.add(position)
            if not running - set(reached):
                return list(reached.values())
            time.sleep(_POLL_S)
            optuna.storages.fail_stale_trials(study)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Halving's decision among the earlier trials at a rung, overruled while ``trial`` ranks in the top
        ``keep`` there; no decision between rungs."""
        step = trial.last_step
        if step is None or not self._rung_step(step):
            return False
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        earlier = self._earlier(study, trial, step)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        if promotable(value, [value, *(t.intermediate_values[step] for t in earlier)], self._eta, maximize):
            return False
        return rank_at_step(study, trial, step, earlier) >= self._keep
