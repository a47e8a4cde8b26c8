"""How ``effnet search`` and ``effnet curves`` run their study on this machine (torch-free): local worker
processes and the progress bar, separate from what the study computes (:mod:`effnet.config.search`)."""

from __future__ import annotations

from dataclasses import dataclass

from effnet.config.fields import setting
from effnet.errors import InvalidValue

__all__ = ["WorkerOptions", "check_jobs"]


@dataclass(frozen=True)
class WorkerOptions:
    """How this command runs its study here (``effnet search`` and ``effnet curves``): ``jobs`` local worker
    processes on the same study (None: min(2, CPU cores)) and whether to show a progress bar."""

    jobs: int | None = setting(
        None,
        "worker processes to run here on the same study (default: min(2, CPU cores); more machines: run the same "
        "command there too)",
        "worker",
    )
    quiet: bool = setting(False, "no progress bar", "worker")
    overwrite: bool = setting(
        False, "replace the report of another study in --output (a study re-run always rewrites its own)", "worker"
    )


def check_jobs(jobs: object) -> int:
    """``jobs`` if it is an integer >= 1, else a one-line :class:`~effnet.errors.InvalidValue` naming the value."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidValue(f"--jobs must be an integer >= 1, got {jobs!r}")
    return jobs
