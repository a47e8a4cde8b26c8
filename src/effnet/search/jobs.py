"""``--jobs N`` of ``effnet search`` and ``effnet curves``: N local worker processes on one Optuna study.

This process is one worker; once it has opened the study and checked its definition, it starts ``N − 1`` helpers
(``python -c``, the config as JSON on stdin: ``{"tool": "search" | "curves", "config": {...}, "options": {...}}``),
each of which rebuilds the :class:`SearchConfig` or :class:`CurvesConfig` and runs :func:`run_search` or
:func:`run_curves` without a progress bar, its lines prefixed ``[worker PID]``. Every worker gets ``threads`` torch
threads, by default ``usable_cpus() // jobs``. The helpers die with their parent
(:func:`effnet.search.processes.die_with_parent`, armed before a helper imports anything heavy); SIGTERM acts like
Ctrl-C. When this worker's trials are done it waits for its helpers *before* it writes its report, so the report
files (all written atomically, see :mod:`effnet.io`) are this process's, written last, and its summary records
``jobs`` and ``threads_per_job``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from effnet.config.curves import CurvesConfig
from effnet.config.search import SearchConfig
from effnet.config.workers import check_jobs
from effnet.errors import EffnetError, InvalidValue
from effnet.machine import bound_count, usable_cpus
from effnet.search.curves import run_curves
from effnet.search.grid import BAND_NOTE, SAME_NETWORK_NOTE, baseline_spec, cost_model, search_profile, study_candidates
from effnet.search.processes import interrupt_on_sigterm
from effnet.search.run import run_search

__all__ = ["TOOLS", "config_from_payload", "run_jobs"]

TOOLS = ("search", "curves")
"""The tools that run as several local workers."""

_PARENT_ENV = "EFFNET_SEARCH_PARENT_PID"
_CHILD = (  # the helper dies with its parent from the start, before it imports this module (torch, optuna)
    "import os; from effnet.search.processes import die_with_parent; "
    f"die_with_parent(int(os.environ[{_PARENT_ENV!r}])); "
    "from effnet.search.jobs import _child_main; _child_main()"
)
_WAIT_S = 120

Config = SearchConfig | CurvesConfig


def _check_tool(tool: str) -> None:
    if tool not in TOOLS:
        raise InvalidValue(f"tool must be one of {', '.join(TOOLS)}, got {tool!r}")


def _training(config: Config) -> SearchConfig:
    return config.training if isinstance(config, CurvesConfig) else config


def _with_threads(config: Config, threads: int | None) -> Config:
    if isinstance(config, CurvesConfig):
        return dataclasses.replace(config, training=dataclasses.replace(config.training, threads=threads))
    return dataclasses.replace(config, threads=threads)


def config_from_payload(tool: str, data: Mapping[str, Any]) -> Config:
    """The config of ``tool`` from its JSON form (``dataclasses.asdict``): the nested ``training`` dict of a
    curves config becomes a :class:`SearchConfig`; lists become tuples again (the configs' own ``__post_init__``)."""
    _check_tool(tool)
    if tool == "search":
        return SearchConfig(**data)
    fields = dict(data)
    training = SearchConfig(**fields.pop("training"))
    return CurvesConfig(training=training, **{**fields, "methods": tuple(fields.get("methods", ()))})


def _trials(tool: str, config: Config) -> int:
    """How many trials the study of ``tool`` holds (an upper bound: points that are one network count once each),
    on the study's own cost (``--cost``); a grid that cannot be made is the same one-line error the run gives."""
    train = _training(config)
    if isinstance(config, CurvesConfig):  # the baseline, then one point per method and phi (curve_points)
        return (1 + config.phi_max * len(config.methods)) * train.seeds
    return len(study_candidates(train, cost_model(baseline_spec(train), train.cost, search_profile(train))))


def _runner(tool: str) -> Callable[..., dict[str, Any]]:
    return run_search if tool == "search" else run_curves


def _child_main() -> None:
    """Body of a helper worker process: the JSON payload on stdin, then ``run_search`` or ``run_curves``.

    The worker dies with its parent (armed by ``_CHILD``); SIGTERM or SIGINT fail its running trial at once (the
    trial's line says so) and it exits with status 130, without a traceback; a user error is one line, status 2.
    """
    text = sys.stdin.read()
    if not text.strip():  # the parent refused the study before any work: nothing to do, nothing to say
        return
    payload = json.loads(text)
    tool = payload["tool"]
    config = config_from_payload(tool, payload["config"])

    def echo(text: str) -> None:
        if not text.startswith((SAME_NETWORK_NOTE, BAND_NOTE)):  # the parent process says those once
            print(f"[worker {os.getpid()}] {text}", flush=True)

    try:
        with interrupt_on_sigterm():
            _runner(tool)(config, progress=False, echo=echo, **payload.get("options", {}))
    except KeyboardInterrupt:  # a trial it was training said so itself (effnet.search.worker)
        print(f"[worker {os.getpid()}] stopped by a signal", flush=True)
        sys.exit(130)
    except (EffnetError, ValueError) as exc:  # a user error, one line as the command's own
        print(f"[worker {os.getpid()}] error: {exc}", flush=True)
        sys.exit(2)


def _start(env: Mapping[str, str]) -> subprocess.Popen[str]:
    """A helper process that imports what it needs (torch, optuna) at once, then waits for its payload."""
    return subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, text=True, env=dict(env))


def _send(child: subprocess.Popen[str], payload: str) -> None:
    """Hand ``child`` its work (``payload``) or, with ``""``, nothing: it then exits at once, quietly."""
    if child.stdin is None or child.stdin.closed:
        return
    with contextlib.suppress(BrokenPipeError):  # a helper that died already (its parent's checks say why)
        child.stdin.write(payload)
    with contextlib.suppress(BrokenPipeError):
        child.stdin.close()


def _wait(children: list[subprocess.Popen[str]], timeout: float = _WAIT_S) -> None:
    for child in children:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_jobs(tool: str, config: Config, jobs: int = 1, *, progress: bool = True, source: str = "") -> dict[str, Any]:
    """``run_search`` (``tool="search"``) or ``run_curves`` (``"curves"``) with ``jobs`` local worker processes on
    the same study, this process being one of them. Returns this process's report (``jobs``, ``threads_per_job``
    added). ``source`` (curves only: where the coefficients came from) goes to every worker's ``run_curves``.

    Each worker gets the config's ``threads`` torch threads, by default ``usable_cpus() // jobs`` (with one job:
    torch's default): on a small CPU several single-threaded trainings use the cores better than one
    multi-threaded one. ``jobs`` above the usable cores or the study's trials, and ``threads`` above the cores,
    are lowered to them with one :class:`~effnet.errors.Lowered` warning (:func:`effnet.machine.bound_count`).
    :class:`~effnet.errors.InvalidValue` for a bad ``jobs`` or ``tool`` before anything starts. The helpers start
    at once (their imports overlap this process's set-up) and get their work once the study is open and checked,
    so a study this process finishes in a few seconds may be trained by it alone.
    """
    check_jobs(jobs)
    _check_tool(tool)
    options = {"source": source} if tool == "curves" else {}
    cpus, trials = usable_cpus(), _trials(tool, config)
    jobs = bound_count("--jobs", jobs, min(cpus, trials), f"{cpus} usable CPU cores, {trials} trials")
    threads = _training(config).threads or (max(1, cpus // jobs) if jobs > 1 else None)
    if threads:
        threads = bound_count("--threads", threads, cpus, f"{cpus} usable CPU cores")
    config = _with_threads(config, threads)
    info = {"jobs": jobs, "threads_per_job": threads}
    helper = {**options, "measure_latency": False} if tool == "curves" else options  # the parent measures, alone
    payload = json.dumps({"tool": tool, "config": dataclasses.asdict(config), "options": helper})
    env = {**os.environ, _PARENT_ENV: str(os.getpid())}
    # The helpers start now, so that their imports overlap this process's set-up, but get their work only once the
    # study is open and its definition checked: a refused study runs no helper (each exits, quietly).
    children = [_start(env) for _ in range(jobs - 1)]

    def before_report() -> dict[str, Any]:
        _wait(children)  # the helpers' reports (atomic) are written before this one
        return info

    def on_ready() -> None:
        for child in children:
            _send(child, payload)

    try:
        with interrupt_on_sigterm():  # SIGTERM like Ctrl-C: this worker's trial FAILs, the helpers are stopped
            report = _runner(tool)(config, progress=progress, before_report=before_report, on_ready=on_ready, **options)
    except BaseException:
        for child in children:  # stop our own helpers: each fails its trial at once and exits
            if child.poll() is None:
                child.terminate()
        raise
    finally:
        for child in children:  # no-op for those that got their work; the others end without any
            _send(child, "")
        _wait(children)
    return {**report, **info}
