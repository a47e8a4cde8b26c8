"""The search's default storage is Optuna's journal file: what it holds, how a dead worker's trial is recovered, and
optuna-dashboard reading an effnet study over HTTP (a server started on 127.0.0.1 by the test)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from effnet.config.search import SearchConfig, default_storage
from effnet.cost import cost
from effnet.search.run import run_search
from effnet.search.storage import OWNER, claim, is_journal, open_storage, recover_dead_trials

SMALL = {"step": 0.5, "tol": 0.6, "heartbeat": 1, "seeds": 1}


def _trainer(config, spec, on_epoch=None):
    c = cost(spec)
    return SimpleNamespace(last_top1=50.0 + spec.depth + spec.width, params=c.params, macs=c.macs, epochs=config.epochs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search")
    run_search(SearchConfig(**SMALL, output=str(out)), trainer=_trainer, progress=False)
    return out


def test_default_storage_is_an_optuna_journal_with_the_points_attributes(finished):
    url = default_storage(str(finished))
    assert is_journal(url) and url.endswith("study.journal") and Path(url).is_file()
    assert not Path(url).read_bytes().startswith(b"SQLite")
    study = optuna.load_study(study_name="effnet-search", storage=open_storage(url, heartbeat=None))
    assert study.metric_names == ["top1"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 7
    for t in complete:
        assert {"params", "macs", "epochs", "alpha", "beta", "gamma", "kind"} <= set(t.user_attrs)
        assert t.user_attrs[OWNER]["trial"] == t.number


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_workers_trial_is_failed_and_requeued_once(tmp_path):
    storage = open_storage(str(tmp_path / "s.journal"), heartbeat=None)
    study = optuna.create_study(study_name="s", storage=storage)
    for i in range(3):
        study.enqueue_trial({"x": float(i)}, user_attrs={"grid_id": i})
    dead, alive, unclaimed = (study.ask() for _ in range(3))
    dead.suggest_float("x", 0, 2)
    claim(alive)
    claim(dead)
    dead.set_user_attr(OWNER, {**dead.user_attrs[OWNER], "pid": _dead_pid()})
    assert recover_dead_trials(study, grace_s=3600) == [dead.number]  # the unclaimed one is still in its grace
    assert recover_dead_trials(study, grace_s=3600) == []  # and never twice
    states = {t.number: t.state for t in study.trials}
    assert (states[dead.number], states[alive.number], states[unclaimed.number]) == (
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.RUNNING,
    )
    copy = study.trials[-1]
    assert copy.state == TrialState.WAITING and copy.params == {"x": 0.0} and copy.user_attrs["grid_id"] == 0
    assert recover_dead_trials(study, grace_s=0) == [unclaimed.number]  # unclaimed past its grace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_optuna_dashboard_opens_an_effnet_study(finished):
    pytest.importorskip("optuna_dashboard", reason="needs optuna-dashboard (the test extra)")
    port = _free_port()
    command = "from optuna_dashboard._cli import main; main()"
    args = [sys.executable, "-c", command, default_storage(str(finished)), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([*args, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/studies")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()[0]
                time.sleep(0.3)
        study = next(s for s in studies["study_summaries"] if s["study_name"] == "effnet-search")
        detail = _get(f"{base}/studies/{study['study_id']}")
        complete = [t for t in detail["trials"] if t["state"] == "Complete"]
        assert len(complete) == 7
        attrs = {a["key"]: a["value"] for a in complete[0]["user_attrs"]}
        assert {"params", "macs", "epochs"} <= set(attrs)
        assert detail["objective_names"] == ["top1"]  # the dashboard's name for the objective
        assert {"params", "macs", "epochs"} <= {a["key"] for a in detail["union_user_attrs"]}  # its trial columns
    finally:
        server.terminate()
        server.wait(timeout=30)
