"""Process hygiene: a search worker never outlives its parent; a run directory has one writer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effnet.search.storage import open_storage

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _start_search(out: Path, *extra: str) -> subprocess.Popen:
    """A long ``effnet search --jobs 2`` in its own process group (a worker process beside the parent)."""
    argv = [
        sys.executable,
        "-m",
        "effnet",
        "search",
        "--output",
        str(out),
        "--jobs",
        "2",
        "--threads",
        "1",
        "--epochs",
        "50",
        "--train-limit",
        "2000",
        "--val-limit",
        "200",
        "--resolution",
        "32",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--quiet",
        *extra,
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or not FASHION.is_dir(), reason="needs /proc and the data")
def test_search_worker_dies_within_10_s_of_a_sigkilled_parent(tmp_path):
    parent = _start_search(tmp_path / "s")
    try:
        assert _wait_for(lambda: _children(parent.pid), 60), "the search started no worker process"
        workers = _children(parent.pid)
        time.sleep(3)  # the worker is importing torch / training
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 10), f"workers {workers} outlived the parent"
    finally:  # whatever happened, leave nothing running (the workers share the parent's process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or not FASHION.is_dir(), reason="needs /proc and the data")
def test_sigterm_to_a_search_stops_its_workers_and_leaves_no_running_trial(tmp_path):
    import optuna

    out = tmp_path / "s"
    parent = _start_search(out, "--seeds", "1")
    try:
        assert _wait_for(lambda: _children(parent.pid), 60), "the search started no worker process"
        workers = _children(parent.pid)
        study_db = out / "study.journal"
        assert _wait_for(study_db.exists, 60)
        time.sleep(5)  # trials are running
        os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(30) != 0
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 10), f"workers {workers} outlived SIGTERM"
        storage = open_storage(str(study_db), heartbeat=None)
        states = [t.state for t in optuna.load_study(study_name="effnet-search", storage=storage).get_trials()]
        assert optuna.trial.TrialState.RUNNING not in states, states
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
