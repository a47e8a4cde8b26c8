"""The successive-halving pruner of ``effnet search --strategy halving``: Optuna's asynchronous
``SuccessiveHalvingPruner``, except that a trial whose point ranks in the top ``keep`` at its epoch is never
stopped.

Plain successive halving fully trains about ``trials / eta^rungs`` trials (two of twelve with ``eta`` 2 and rungs at
1, 2 and 4 epochs), so the report's second and third places would be trials compared at fewer epochs than the
first. With ``keep = K`` the trials of the K points (parameters without the seed) with the best validation top-1 at
each epoch among those that reached it go on, so the top K rows of the report are fully trained and ranked on
equal terms. Ranking reads only public Optuna API (``Study.get_trials``, ``FrozenTrial.intermediate_values``), so it
works across processes and machines.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["KeepLeadersPruner", "rank_at_step"]

_RANKED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _point(trial: FrozenTrial) -> tuple[tuple[str, object], ...]:
    return tuple(sorted((k, v) for k, v in trial.params.items() if k != "seed"))


def rank_at_step(study: optuna.Study, trial: FrozenTrial, step: int) -> int:
    """How many other points (trials' parameters without ``seed``) did strictly better than ``trial``'s point at
    ``step`` (0: it leads), a point's score being its best trial's value there. The seeds of a point share its rank,
    so the seeds of a leading point go on together and ``keep`` counts the report's rows."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else 1.0
    best: dict[tuple[tuple[str, object], ...], float] = {}
    for other in (*study.get_trials(deepcopy=False, states=_RANKED), trial):
        seen = other.intermediate_values.get(step)
        if seen is not None:
            point = _point(other)
            best[point] = max(best.get(point, -math.inf), sign * seen)
    mine = best[_point(trial)]
    return sum(score > mine for score in best.values())


class KeepLeadersPruner(optuna.pruners.BasePruner):
    """``SuccessiveHalvingPruner(min_resource, reduction_factor)`` that never stops a trial whose point ranks in the
    top ``keep`` (:func:`rank_at_step`); ``keep`` is validated where it is set
    (:class:`effnet.config.search.SearchConfig`)."""

    def __init__(self, min_resource: int, reduction_factor: int, keep: int) -> None:
        self._halving = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=reduction_factor
        )
        self._keep = keep

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Successive halving's decision, overruled while ``trial`` ranks in the top ``keep`` at its last epoch."""
        if not self._halving.prune(study, trial):
            return False
        step = trial.last_step
        return step is None or rank_at_step(study, trial, step) >= self._keep
