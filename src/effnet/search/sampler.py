"""The exactly-once grid sampler of the scaling search (see :mod:`effnet.search.study`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.samplers import GridSampler

__all__ = ["CandidateGridSampler"]


class CandidateGridSampler(GridSampler):
    """A ``GridSampler`` over an explicit list of candidates that hands out each candidate exactly once.

    Optuna's ``GridSampler`` walks the Cartesian product of per-parameter values and, in distributed runs, may
    give one grid point to two workers or skip a failed one. Here the grid is the list ``points`` (each a dict
    with the same parameter names); a new trial gets the lowest grid id with no COMPLETE and no RUNNING trial
    (FAIL and killed trials become claimable again). Callers serialise :meth:`optuna.Study.ask` with
    :func:`claim_lock` so that the choice and the trial's creation are atomic across workers.
    """

    def __init__(self, points: Sequence[Mapping[str, float | int]]) -> None:
        if not points:
            raise ValueError("CandidateGridSampler needs at least one point")
        names = sorted(points[0])
        if any(sorted(p) != names for p in points):
            raise ValueError("every point must have the same parameter names")
        super().__init__({n: sorted({p[n] for p in points}) for n in names}, seed=0)
        self.names = tuple(names)
        self.points = tuple(tuple(p[n] for n in names) for p in points)
        self.fingerprint = hashlib.sha1(json.dumps(self.points).encode()).hexdigest()

    def before_trial(self, study: Any, trial: Any) -> None:
        """Assign the lowest unclaimed grid id to a fresh trial (retried/enqueued trials keep theirs)."""
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        todo = self.unclaimed(study)
        if not todo:
            raise RuntimeError("no unclaimed candidate left; check CandidateGridSampler.unclaimed() before ask()")
        study._storage.set_trial_system_attr(trial._trial_id, "effnet_grid", self.fingerprint)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", todo[0])

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        """The value of ``param_name`` at the trial's grid point."""
        if "grid_id" not in trial.system_attrs:
            raise ValueError("this trial has no grid point; create trials through Study.ask() with this sampler")
        if param_name not in self.names:
            raise ValueError(f"parameter {param_name!r} is not in the grid ({', '.join(self.names)})")
        return self.points[trial.system_attrs["grid_id"]][self.names.index(param_name)]

    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
        """Nothing: the worker loop decides when the study is done (``GridSampler`` would call ``study.stop``)."""

    def _states(self, study: Any) -> tuple[set[int], set[int]]:
        from optuna.trial import TrialState

        done, running = set(), set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.system_attrs.get("effnet_grid") != self.fingerprint or "grid_id" not in t.system_attrs:
                continue
            if t.state == TrialState.COMPLETE:
                done.add(t.system_attrs["grid_id"])
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                running.add(t.system_attrs["grid_id"])
        return done, running

    def unclaimed(self, study: Any) -> list[int]:
        """Grid ids with neither a COMPLETE nor a RUNNING/WAITING trial, ascending."""
        done, running = self._states(study)
        return [i for i in range(len(self.points)) if i not in done and i not in running]

    def progress(self, study: Any) -> tuple[int, int, int]:
        """``(complete, running, total)`` grid points."""
        done, running = self._states(study)
        return len(done), len(running - done), len(self.points)

    def _get_unvisited_grid_ids(self, study: Any) -> list[int]:
        return self.unclaimed(study)

    def is_exhausted(self, study: Any) -> bool:
        """True when every grid point has a COMPLETE trial."""
        complete, _, total = self.progress(study)
        return complete == total
