"""`effnet search`: the candidate grid, the Optuna study shared by workers (SQLite and PostgreSQL), kill/restart
recovery, the report, and clear errors. Worker-logic tests use a cheap deterministic trainer (the storage and
grid logic are the point, not the training); the CLI tests at the end train real tiny models on Fashion-MNIST.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from effnet.cli import build_parser, main
from effnet.config.search import SearchConfig, default_storage
from effnet.scaling import grid
from effnet.search.grid import candidates
from effnet.search.run import run_search
from effnet.search.storage import open_storage

# the formula's grid on the old proxy (B0 width 0.25, depth 0.5, 32 px): 4 grid + 2 single + baseline = 7 points
SMALL = {"step": 0.5, "tol": 0.6, "heartbeat": 1, "seeds": 1, "cost": "formula", "depth": 0.5, "resolution": 32}

WORKER = r'''
import json, math, os, sys, time
from types import SimpleNamespace
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.search.run import run_search

hang_at = int(os.environ.get("FAKE_HANG_AT", "0"))
runs = 0

def trainer(cfg, spec, on_epoch=None):
    """A cheap stand-in for effnet.training.trainer.fit: exact cost, a smooth accuracy surface, a sleep."""
    global runs
    runs += 1
    time.sleep(600 if runs == hang_at else float(os.environ.get("FAKE_SLEEP", "0.2")))
    c = cost(spec)
    acc = 70 + 4 * math.log2(c.macs / 1e6) - 3 * abs(math.log(spec.depth / spec.width)) + 0.1 * cfg.seed
    point = os.path.basename(cfg.output).split("_", 1)[1]
    assert os.path.basename(os.path.dirname(cfg.output)) == json.loads(sys.argv[1]).get("study", "effnet-search")
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "point": point, "top1": acc}) + "\n")
    return SimpleNamespace(last_top1=acc, params=c.params, macs=c.macs, epochs=cfg.epochs)

run_search(SearchConfig(**json.loads(sys.argv[1])), trainer=trainer, progress=False)
'''


def _worker(tmp_path: Path, config: dict, **env: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    environ = {**os.environ, "FAKE_LOG": str(tmp_path / "trained.jsonl"), **env}
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(config)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _trials(url: str, study: str):
    import optuna

    storage = open_storage(url, heartbeat=None)
    return optuna.load_study(study_name=study, storage=storage).get_trials()


def _grid_trials(trials) -> list:
    """The trials that carry a grid point (not the untrained spare ones a worker may create in a race)."""
    return [t for t in trials if "grid_id" in t.user_attrs]


def _states(url: str, study: str) -> Counter:
    """Trial states of a study that may not exist yet (empty then)."""
    try:
        return Counter(t.state for t in _trials(url, study))
    except KeyError:
        return Counter()


def _trained(tmp_path: Path) -> list[dict]:
    path = tmp_path / "trained.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_each_candidate_complete_once(trials, n: int) -> list:
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    ids = Counter(t.user_attrs["grid_id"] for t in complete)
    assert sorted(ids) == list(range(n)) and set(ids.values()) == {1}, ids
    params = Counter((t.params["alpha"], t.params["beta"], t.params["gamma"], t.params["seed"]) for t in complete)
    assert set(params.values()) == {1}
    return complete


# ------------------------------------------------------------------------------------------- grid


def test_grid_is_exact():
    """step 0.05, target 2, tol 0.1: exactly the points an exact rational enumeration finds."""
    values = [Fraction(100 + 5 * i, 100) for i in range(21)]
    expected = sorted(
        (float(a), float(b), float(g))
        for a in values
        for b in values
        for g in values
        if abs(a * b * b * g * g - 2) <= Fraction(1, 10)
    )
    points = grid(target=2.0, tol=0.1, step=0.05)
    assert points == expected
    assert len(points) == 109
    assert (1.2, 1.1, 1.15) in points
    assert all(abs(a * b * b * g * g - 2) <= 0.1 + 1e-12 for a, b, g in points)


def test_candidates_add_single_dimension_points_baseline_and_seeds():
    items = candidates(target=2.0, tol=0.1, step=0.05, seeds=(0, 1))
    points = [c.point for c in items[::2]]
    assert items[0].point == (1.0, 1.0, 1.0) and items[0].kind == "baseline"
    assert [c.seed for c in items[:4]] == [0, 1, 0, 1]
    r2 = round(math.sqrt(2), 10)
    for point, kind in (((2.0, 1.0, 1.0), "depth"), ((1.0, r2, 1.0), "width"), ((1.0, 1.0, r2), "resolution")):
        assert point in points and next(c.kind for c in items if c.point == point) == kind
    assert (1.2, 1.1, 1.15) in points and next(c.kind for c in items if c.point == (1.2, 1.1, 1.15)) == "compound"
    assert len(points) == len(set(points)) == 109 + 2 + 1  # (2, 1, 1) is on the grid already
    assert len(candidates(step=SMALL["step"], tol=SMALL["tol"])) == 7


def test_points_that_round_to_one_network_are_trained_once():
    from effnet.architectures import get_spec, scale
    from effnet.search.grid import Candidate, distinct_networks

    base = scale(get_spec("efficientnet_b0"), width=0.25, depth=0.5, resolution=32)
    r2 = math.sqrt(2)
    items = [Candidate(1.0, 1.0, 1.4, "resolution", s) for s in (0, 1)]
    items += [Candidate(1.0, 1.0, r2, "resolution", s) for s in (0, 1)] + [Candidate(1.0, 1.0, 1.5, "resolution", 0)]
    kept, dropped = distinct_networks(items, base)  # 32 * 1.4 and 32 * sqrt(2) both round to 45 px
    assert [(c.gamma, c.seed) for c in kept] == [(1.4, 0), (1.4, 1), (1.5, 0)]
    assert [(d.gamma, d.seed, k.gamma) for d, k in dropped] == [(r2, 0, 1.4), (r2, 1, 1.4)]


def test_grid_without_point_in_tolerance_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no .alpha, beta, gamma. on the grid"):
        candidates(target=1.7, tol=0.01, step=0.5)
    flags = ["search", "--target", "1.7", "--step", "0.5", "--tol", "0.01", "--output", str(tmp_path)]
    assert main([*flags, "--cost", "formula"]) == 2
    err = capsys.readouterr().err
    assert "effnet search: error: no (alpha, beta, gamma) on the grid step=0.5" in err and "widen tol" in err
    assert main(flags) == 2  # at equal exact MACs (the default): the nearest point and what to change
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no (alpha, beta, gamma) on the grid step=0.5 in [1, 2] has exact MACs within --tol 0.01 of 1.7x" in err
    assert "(nearest: " in err and "use a finer --step, a larger --tol, or a larger proxy (--width" in err
    assert not (tmp_path / "study.journal").exists()  # nothing was created or touched


# ------------------------------------------------------------------------------------------- workers


@pytest.mark.slow
def test_two_workers_split_the_grid_on_the_default_journal(tmp_path):
    config = {**SMALL, "seeds": 2, "output": str(tmp_path)}
    procs = [_worker(tmp_path, config, FAKE_SLEEP="1.5") for _ in range(2)]  # slow enough for both to start
    outs = [_finish(p) for p in procs]
    trials = _trials(default_storage(str(tmp_path)), "effnet-search")
    complete = _assert_each_candidate_complete_once(trials, 14)
    # no failed or duplicate grid trial at all (a worker that asks when the last WAITING trial was just taken gets a
    # fresh trial without grid_id, which it marks FAIL untrained)
    assert len(_grid_trials(trials)) == 14
    assert len({t.user_attrs["worker"] for t in complete}) == 2, outs  # both workers took part
    trained = _trained(tmp_path)
    assert len(trained) == 14 and len({r["point"] for r in trained}) == 14
    summary = json.loads((tmp_path / "search_summary.json").read_text())
    rows = summary["rows"]
    assert len(rows) == 7 and all(r["seeds"] == 2 and r["top1_std"] is not None for r in rows)
    assert rows[0]["rank"] == 1 and rows == sorted(rows, key=lambda r: (-r["top1_mean"], r["macs"]))
    best = next(r for r in rows if r["kind"] != "baseline")
    assert summary["chosen"]["alpha"] == best["alpha"] and summary["chosen"]["top1_mean"] == best["top1_mean"]
    for name in ("search_results.md", "search_results.csv", "search_results.json", "accuracy_vs_macs.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "accuracy_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (tmp_path / "search_results.csv").read_text().splitlines()[0]
    assert header == (
        "rank,kind,alpha,beta,gamma,flops_factor,macs,macs_factor,equal_cost,params,resolution,epochs,pruned,"
        "top1_mean,top1_std,top1_ci95_low,top1_ci95_high,seeds,wall_time_s"
    )


_POP = """
import json, sys, time, optuna
from effnet.search.storage import open_storage
url, start, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
study = optuna.load_study(study_name="pop", storage=open_storage(url, heartbeat=None))
while time.time() < start:
    time.sleep(0.001)
json.dump([study.ask().number for _ in range(15)], open(out, "w"))
"""


def test_sqlite_hands_each_waiting_trial_to_one_worker(tmp_path):
    """Four processes take 60 enqueued trials at once: each trial goes to exactly one (before ``BEGIN IMMEDIATE``,
    5-7 trials were handed out twice in every such run)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'pop.db'}"
    study = optuna.create_study(study_name="pop", storage=open_storage(url, heartbeat=None))
    for i in range(60):
        study.enqueue_trial({"x": i})
    (tmp_path / "pop.py").write_text(_POP)
    start = time.time() + 4  # every process has loaded the study by then
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "pop.py"), url, str(start), str(tmp_path / f"{k}.json")])
        for k in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    taken = [n for k in range(4) for n in json.loads((tmp_path / f"{k}.json").read_text())]
    assert sorted(taken) == list(range(60)), Counter(taken).most_common(3)


@pytest.mark.slow
def test_killed_worker_trial_is_rerun_and_finished_trials_never(tmp_path):
    from optuna.trial import TrialState

    url = default_storage(str(tmp_path))
    config = {**SMALL, "output": str(tmp_path)}
    victim = _worker(tmp_path, config, FAKE_HANG_AT="3")  # its 3rd trial hangs until killed
    deadline = time.time() + 120
    while time.time() < deadline:
        states = _states(url, "effnet-search")
        if states[TrialState.COMPLETE] == 2 and states[TrialState.RUNNING] == 1:
            break
        time.sleep(0.2)
    else:
        victim.kill()
        pytest.fail(f"the worker never reached its third trial: {victim.communicate()[0]}")
    before = {
        t.number: (t.value, t.user_attrs["grid_id"])
        for t in _trials(url, "effnet-search")
        if t.state == TrialState.COMPLETE
    }
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    killed = next(t for t in _trials(url, "effnet-search") if t.state == TrialState.RUNNING)

    out = _finish(_worker(tmp_path, config))  # the restart waits for the stale heartbeat, then re-runs it
    trials = _trials(url, "effnet-search")
    complete = _assert_each_candidate_complete_once(trials, 7)
    assert {t.number: (t.value, t.user_attrs["grid_id"]) for t in complete if t.number in before} == before
    failed = [t for t in _grid_trials(trials) if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed.number]
    rerun = next(t for t in complete if t.user_attrs["grid_id"] == killed.user_attrs["grid_id"])
    assert rerun.number > killed.number
    trained = _trained(tmp_path)
    assert len(trained) == 7 and len({r["point"] for r in trained}) == 7, "a finished trial was trained again"
    assert "trial" in out


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster on loopback (Debian's server binaries), started as a non-root user."""
    pytest.importorskip("psycopg", reason="psycopg (the test extra) is not installed")
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    bindir = bins[-1].parent
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as a non-root user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError as exc:
            pytest.skip(f"running as root and no 'postgres' user to start the server as: {exc}")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="effnet-pg-"))
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run(
            prefix
            + [str(bindir / "initdb"), "-D", str(data), "-U", "effnet", "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            prefix
            + [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}; {getattr(exc, 'stderr', b'')!r} {log[-500:]}")
    try:
        yield f"postgresql+psycopg://effnet@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path, postgres_url):
    config = {**SMALL, "output": str(tmp_path), "storage": postgres_url, "study": "pg-two-workers"}
    procs = [_worker(tmp_path, config, FAKE_SLEEP="1.0") for _ in range(2)]
    outs = [_finish(p) for p in procs]
    trials = _trials(postgres_url, "pg-two-workers")
    complete = _assert_each_candidate_complete_once(trials, 7)
    assert len(_grid_trials(trials)) == 7
    assert len({t.user_attrs["worker"] for t in complete}) == 2, outs
    assert len(_trained(tmp_path)) == 7
    summary = json.loads((tmp_path / "search_summary.json").read_text())
    assert summary["storage"].startswith("postgresql+psycopg://effnet@127.0.0.1") and summary["chosen"] is not None


# ------------------------------------------------------------------------------------------- errors


def test_unreachable_storage_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql+psycopg://nobody:secret@127.0.0.1:{port}/nowhere"
    with pytest.raises(
        ValueError, match=f"cannot open --storage postgresql\\+psycopg://nobody:\\*\\*\\*@127.0.0.1:{port}"
    ):
        open_storage(url)
    assert main(["search", "--storage", url, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot open --storage" in err and "secret" not in err and "Traceback" not in err
    assert main(["search", "--storage", "not a url", "--output", str(tmp_path)]) == 2
    assert "is not a database URL" in capsys.readouterr().err


def test_bad_train_options_are_clear_errors(tmp_path, capsys):
    base = ["search", "--output", str(tmp_path), "--quiet"]
    for option, message in (
        ("epochs=3", "set by the search itself"),
        ("lr", "expects KEY=VALUE"),
        ("learning_rate=0.1", "unknown TrainConfig field(s): learning_rate"),
        ("opt=lbfgs", "--opt must be one of"),
    ):
        assert main([*base, "--train-option", option]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "study.journal").exists()


def _fake_trainer(config, spec, on_epoch=None):
    from types import SimpleNamespace

    from effnet.cost import cost

    c = cost(spec)
    return SimpleNamespace(last_top1=50 + math.log2(c.macs / 1e6) + config.seed, params=c.params, macs=c.macs)


def test_reused_study_name_with_different_grid_is_an_error(tmp_path):
    from optuna.trial import TrialState

    done = run_search(SearchConfig(**SMALL, output=str(tmp_path)), trainer=_fake_trainer, progress=False)
    assert len(done["trials"]) == 7
    before = [(t.number, t.state, t.value) for t in _trials(default_storage(str(tmp_path)), "effnet-search")]
    with pytest.raises(ValueError, match=r"different search \(grid.step: stored 0.5, given 0.25"):
        run_search(SearchConfig(**{**SMALL, "step": 0.25}, output=str(tmp_path)), trainer=_fake_trainer)
    epochs = SearchConfig().epochs
    with pytest.raises(ValueError, match=rf"budget.epochs: stored {epochs}, given {epochs + 1}"):
        run_search(SearchConfig(**SMALL, epochs=epochs + 1, output=str(tmp_path)), trainer=_fake_trainer)
    after = [(t.number, t.state, t.value) for t in _trials(default_storage(str(tmp_path)), "effnet-search")]
    assert after == before and all(state == TrialState.COMPLETE for _, state, _ in after)
    # the same command again finds the study complete and only rewrites the report
    again = run_search(SearchConfig(**SMALL, output=str(tmp_path)), trainer=_fake_trainer, progress=False)
    assert again["trials_run_by_this_worker"] == 0 and again["rows"] == done["rows"]


def test_trainer_error_marks_trial_failed_and_is_retried_later(tmp_path):
    from optuna.trial import TrialState

    calls = []

    def broken(config, spec, on_epoch=None):
        calls.append(spec.name)
        raise FileNotFoundError("--data /nowhere: no such directory")

    with pytest.raises(FileNotFoundError, match="/nowhere"):
        run_search(SearchConfig(**SMALL, output=str(tmp_path)), trainer=broken, progress=False)
    trials = _trials(default_storage(str(tmp_path)), "effnet-search")
    assert [t.state for t in trials if t.state != TrialState.WAITING] == [TrialState.FAIL]
    assert "no such directory" in trials[0].user_attrs["error"]
    assert sum(t.state == TrialState.WAITING for t in trials) == 7  # its point is queued again
    report = run_search(SearchConfig(**SMALL, output=str(tmp_path)), trainer=_fake_trainer, progress=False)
    assert len(report["trials"]) == 7 and len(calls) == 1


# ------------------------------------------------------------------------------------------- real training


def _fashion_mnist_or_skip():
    from effnet.training.named_datasets import find_fashion_mnist

    try:
        find_fashion_mnist()
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): {exc}")


TINY_CLI = [
    "--cost",
    "formula",
    "--depth",
    "0.5",
    "--step",
    "0.5",
    "--tol",
    "0.6",
    "--width",
    "0.25",
    "--resolution",
    "16",
    "--epochs",
    "1",
    "--train-limit",
    "64",
    "--val-limit",
    "64",
    "--batch-size",
    "32",
    "--threads",
    "1",
    "--heartbeat",
    "1",
    "--seeds",
    "1",
    "--quiet",
]


@pytest.mark.slow
def test_cli_search_trains_real_models_survives_sigkill_and_feeds_scale(tmp_path, capsys):
    """The real trainer on a tiny budget: SIGKILL one CLI worker mid-trial, restart, finish, then effnet scale."""
    from optuna.trial import TrialState

    _fashion_mnist_or_skip()
    out = tmp_path / "search"
    url = default_storage(str(out))
    cmd = [sys.executable, "-m", "effnet", "search", *TINY_CLI, "--output", str(out)]
    victim = subprocess.Popen([*cmd, "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        states = _states(url, "effnet-search")
        if states[TrialState.COMPLETE] >= 1 and states[TrialState.RUNNING] == 1:
            break
        time.sleep(0.1)
    assert victim.poll() is None, victim.communicate()[0]
    before = {t.number: t.value for t in _trials(url, "effnet-search") if t.state == TrialState.COMPLETE}
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)

    restart = subprocess.run([*cmd, "--jobs", "2"], capture_output=True, text=True, timeout=600)  # 2 workers
    assert restart.returncode == 0, restart.stdout + restart.stderr
    trials = _trials(url, "effnet-search")
    complete = _assert_each_candidate_complete_once(trials, 7)
    assert {t.number: t.value for t in complete if t.number in before} == before
    assert [t.state for t in _grid_trials(trials)].count(TrialState.FAIL) == 1
    assert all(0 <= t.value <= 100 and t.user_attrs["macs"] > 0 and t.user_attrs["epochs"] == 1 for t in complete)
    assert "chosen: alpha=" in restart.stdout and "accuracy_vs_macs.png" in restart.stdout
    assert "(2 job(s), " in restart.stdout  # the restart ran a second local worker (it may find no trial left)

    code = main(["scale", "--study", "effnet-search", "--storage", url, "--phi-max", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "search_summary.json").read_text())
    chosen = summary["chosen"]
    assert code == 0 and (data["alpha"], data["beta"], data["gamma"]) == (
        chosen["alpha"],
        chosen["beta"],
        chosen["gamma"],
    )
    assert data["family"][0]["resolution"] == 16 and data["source"].startswith("study effnet-search (7/7")
    baseline_trial = next(t for t in complete if t.user_attrs["kind"] == "baseline")
    assert baseline_trial.user_attrs["num_classes"] == 10 and baseline_trial.user_attrs["in_chans"] == 1
    # phi = 0 is the study's baseline as trained (10 classes, 1 channel), so its exact cost equals the trial's
    assert (data["family"][0]["params"], data["family"][0]["macs"]) == (
        baseline_trial.user_attrs["params"],
        baseline_trial.user_attrs["macs"],
    )
    base_macs = baseline_trial.user_attrs["macs"]  # macs_factor divides MACs of two networks as trained
    assert all(t.user_attrs["macs_factor"] == pytest.approx(t.user_attrs["macs"] / base_macs) for t in complete)


def test_no_private_optuna_api_in_src():
    """The distribution rests on Optuna's public API only (issue 14): no private attribute or method in src/."""
    src = Path(__file__).resolve().parents[1] / "src"
    banned = ("study._storage", "_study_id", "_trial_id", "_get_unvisited_grid_ids", "_pop_waiting")
    hits = [f"{p.relative_to(src)}: {b}" for p in src.rglob("*.py") for b in banned if b in p.read_text()]
    assert hits == []
    assert not (src / "effnet" / "search" / "sampler.py").exists()


# ------------------------------------------------------------------------------------------- statistics, halving


def test_verdict_at_chance_is_never_yes_and_one_seed_cannot_tell():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from effnet.search.stats import CANNOT, YES, interval95, verdict

    one = verdict({"samples": [13.9]}, {"samples": [12.0]}, 10.0)
    assert one["answer"] == CANNOT and "--seeds" in one["reason"]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(8, 14), min_size=2, max_size=5), st.lists(st.floats(8, 14), min_size=2, max_size=5))
    def chance_level(a, b):  # the example: every trial scored 8-14 % with 10 % chance
        answer = verdict({"samples": a}, {"samples": b}, 10.0)["answer"]
        assert answer != YES or interval95(a)[0] > 10.0  # "yes" only with the whole interval above chance

    chance_level()
    clear = verdict({"samples": [80.0, 80.5, 80.2]}, {"samples": [70.0, 70.4, 70.1]}, 10.0)
    assert clear["answer"] == YES and clear["p_value"] < 0.05
    assert verdict({"samples": [80.0, 81.0]}, {"samples": [80.4, 80.6]}, 10.0)["answer"].startswith("not disting")
    assert verdict({"samples": [70.0, 70.4]}, {"samples": [80.0, 80.4]}, 10.0)["answer"] == "no"
    near = verdict({"samples": [11.0, 12.5, 9.0]}, {"samples": [9.0, 9.1, 9.2]}, 10.0)
    assert near["answer"] != YES


def _epoch_trainer(config, spec, on_epoch=None):
    """A stand-in for fit with per-epoch validation: accuracy grows with log MACs and epochs."""
    from types import SimpleNamespace

    from effnet.cost import cost

    c = cost(spec)
    top1 = 0.0
    for epoch in range(1, config.epochs + 1):
        top1 = 40 + 3 * math.log2(c.macs / 1e6) + 5 * epoch + 0.1 * config.seed
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "val_top1": top1})
    return SimpleNamespace(last_top1=top1, params=c.params, macs=c.macs, epochs=config.epochs)


def test_halving_prunes_and_report_says_so(tmp_path):
    config = SearchConfig(
        **{**SMALL, "seeds": 2}, epochs=4, strategy="halving", eta=2, min_epochs=1, output=str(tmp_path)
    )
    report = run_search(config, trainer=_epoch_trainer, progress=False)
    assert report["pruned_trials"] > 0 and report["epochs_trained"] < report["epochs_full_grid"] == 14 * 4
    pruned = [t for t in report["trials"] if t["pruned"]]
    assert pruned and all(t["epochs"] < 4 for t in pruned)
    assert report["chosen"] is not None and not any(r["pruned"] for r in report["rows"] if r["rank"] == 1)
    saved = json.loads((tmp_path / "search_summary.json").read_text())
    assert saved["strategy"] == "halving" and saved["pruned_trials"] == report["pruned_trials"]
    # this small grid has no compound point: the verdict says it cannot tell rather than guess
    assert saved["verdict"]["answer"] == "cannot tell" and "no fully trained compound" in saved["verdict"]["reason"]
    row = saved["rows"][0]
    assert row["top1_ci95_low"] <= row["top1_mean"] <= row["top1_ci95_high"]


def _leaders(report, k=3):
    return [(r["pruned"], r["epochs"]) for r in report["rows"] if r["kind"] != "baseline"][:k]


def test_halving_never_stops_the_leaders(tmp_path):
    """Plain halving (keep 0) ranks trials stopped early among the top 3; keep 3 trains the top 3 fully."""
    runs = {
        keep: run_search(
            SearchConfig(
                **{**SMALL, "seeds": 2},
                epochs=4,
                strategy="halving",
                eta=2,
                keep=keep,
                output=str(tmp_path / str(keep)),
            ),
            trainer=_epoch_trainer,
            progress=False,
        )
        for keep in (0, 3)
    }
    assert any(pruned for pruned, _ in _leaders(runs[0]))
    assert _leaders(runs[3]) == [(0, 4.0)] * 3 and runs[3]["pruned_trials"] > 0
    assert runs[0]["epochs_trained"] < runs[3]["epochs_trained"] < runs[3]["epochs_full_grid"]
    assert main(["search", "--output", str(tmp_path / "bad"), "--quiet", "--keep", "-1"]) == 2


def test_halving_never_stops_a_trial_at_its_last_epoch(tmp_path):
    """With rungs at 1 and 3 of 3 epochs, a trial that trained all 3 is finished, never "stopped" (a stopped trial
    cannot be chosen, so a rung at the last epoch would hide fully trained points from the report)."""
    from types import SimpleNamespace

    from effnet.cost import cost

    calls = []

    def trainer(config, spec, on_epoch=None):  # one worker, queue order: every 2nd one leads at epoch 1, none at 3
        calls.append(spec)
        n = len(calls)
        on_epoch({"epoch": 1, "val_top1": 50.0 + n if n % 2 == 0 else 10.0 - n})
        for epoch in range(2, config.epochs + 1):
            on_epoch({"epoch": epoch, "val_top1": 90.0 - n})
        c = cost(spec)
        return SimpleNamespace(last_top1=90.0 - len(calls), params=c.params, macs=c.macs, epochs=config.epochs)

    config = SearchConfig(**{**SMALL, "seeds": 2}, epochs=3, strategy="halving", eta=3, keep=0, output=str(tmp_path))
    report = run_search(config, trainer=trainer, progress=False)
    pruned = [t for t in report["trials"] if t["pruned"]]
    assert pruned and all(t["epochs"] == 1 for t in pruned)
    full = [t for t in report["trials"] if t["epochs"] == 3]
    assert full and not any(t["pruned"] for t in full)


def test_pruned_trials_record_the_cost_of_the_network_trained(tmp_path):
    """A stopped trial's params and MACs are those of the network it trained (10 classes, 1 input channel, read
    from the weights it saved), not of the spec's 1000-class, 3-channel default: the same as a finished trial's."""
    from types import SimpleNamespace

    from effnet import create_model
    from effnet.cost import cost
    from effnet.models.factory import save_pretrained
    from effnet.search.grid import baseline_spec, trial_spec

    def trainer(config, spec, on_epoch=None):
        fitted = spec.replace(num_classes=10, in_chans=1)
        save_pretrained(create_model(fitted), Path(config.output) / "best.safetensors")
        c, top1 = cost(fitted), 40 + 3 * math.log2(cost(spec).macs / 1e6)
        for epoch in range(1, config.epochs + 1):
            on_epoch({"epoch": epoch, "val_top1": top1 + 5 * epoch})
        return SimpleNamespace(
            last_top1=top1 + 5 * config.epochs,
            params=c.params,
            macs=c.macs,
            epochs=config.epochs,
            spec=fitted.to_dict(),
        )

    config = SearchConfig(**SMALL, epochs=3, strategy="halving", eta=2, keep=0, output=str(tmp_path))
    report = run_search(config, trainer=trainer, progress=False)
    trials = report["trials"]
    assert any(t["pruned"] for t in trials) and not all(t["pruned"] for t in trials)
    for t in trials:
        spec = trial_spec(baseline_spec(config), t["alpha"], t["beta"], t["gamma"])
        exact = cost(spec.replace(num_classes=10, in_chans=1))
        assert (t["params"], t["macs"]) == (exact.params, exact.macs), t


def test_halving_is_the_default_wherever_a_trial_can_be_stopped(tmp_path):
    from effnet.cli.search import config_from_args
    from effnet.config.curves import CurvesConfig

    assert SearchConfig().strategy == "halving" and SearchConfig(epochs=1).strategy == "grid"
    assert SearchConfig(epochs=4, min_epochs=4).strategy == "grid"
    assert config_from_args(build_parser().parse_args(["search", "--epochs", "1"])).strategy == "grid"
    assert config_from_args(build_parser().parse_args(["search"])).strategy == "halving"
    halving = SearchConfig(strategy="halving", epochs=4)
    assert CurvesConfig(training=halving).training.strategy == "grid"  # a curve never stops a point early
    with pytest.raises(ValueError, match="--min-epochs \\(1\\) must be below --epochs \\(1\\)"):
        SearchConfig(strategy="halving", epochs=1)

    def no_on_epoch(config, spec):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="takes no on_epoch: add it or use strategy 'grid'"):
        run_search(SearchConfig(**SMALL, output=str(tmp_path)), trainer=no_on_epoch, progress=False)
    assert not (tmp_path / "study.journal").exists()

    def grid_only(config, spec):  # the contract before halving: fine for strategy grid
        return _fake_trainer(config, spec)

    grid = run_search(SearchConfig(**SMALL, strategy="grid", output=str(tmp_path)), trainer=grid_only, progress=False)
    assert grid["strategy"] == "grid" and len(grid["trials"]) == 7


def test_grid_and_budget_bounds_are_clear_errors(tmp_path, capsys):
    for flags, message in (
        (["--step", "0.001"], "--step must be a number in [0.01, 1]"),
        (["--strategy", "halving", "--min-epochs", "3"], "--min-epochs (3) must be below"),
        (["--eta", "1"], "--eta must be an integer >= 2"),
        (["--train-option", "lr=abc"], "lr"),
    ):
        assert main(["search", "--output", str(tmp_path), "--quiet", *flags]) == 2, flags
        assert message in capsys.readouterr().err
    assert not (tmp_path / "study.journal").exists()
    assert main(["scale", "--phi-max", "1000"]) == 2
    assert "--phi-max must be an integer in [0, 16]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["scale", "--max-params=-5M"])
    assert exc.value.code == 2
    assert "expected a positive number with an optional K, M, G/B or T suffix" in capsys.readouterr().err


def test_storage_urls_and_damaged_database_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="backend 'garbage' is not supported"):
        open_storage("garbage://x")
    damaged = tmp_path / "study.db"
    damaged.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(ValueError, match="not a readable Optuna database"):
        open_storage(f"sqlite:///{damaged}")
    journal = tmp_path / "study.journal"
    journal.write_text("this is not an Optuna journal\n")
    (tmp_path / "folder.journal").mkdir()
    with pytest.raises(ValueError, match="not a readable Optuna journal"):
        open_storage(str(journal))
    with pytest.raises(ValueError, match=f"is an SQLite database; pass it as sqlite:///{damaged.resolve()}"):
        damaged.write_bytes(b"SQLite format 3\x00" + bytes(100))
        open_storage(str(damaged))
    with pytest.raises(ValueError, match="is a directory"):
        open_storage(str(tmp_path / "folder.journal"))
