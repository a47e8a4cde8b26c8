"""`effnet scale` measures only where it matters (issue 21 item 4): wall time and choice, planned vs every member.

    python benchmarks/scale_plan.py                      # the issue's example: B0, paper alpha/beta/gamma, 40 ms
    python benchmarks/scale_plan.py --study effnet-search --storage runs/search/study.journal --max-latency-ms 30
    python benchmarks/scale_plan.py --resolution 64 --width 0.25 --phi-max 3 --max-latency-ms 20   # a tiny check

Each case runs ``effnet scale ... --device cpu --batch 1`` as a user would (a fresh ``python -m effnet`` process,
its wall time measured around it, torch import included) twice: as planned (costed first, measured from φ = 0 up
to the first miss and one above it) and with ``--measure-all``. Reported per run: wall time, chosen φ, members
measured, rounds, threads and load, the spread warning if any. The target: the planned run finishes within 60 s on
2 quiet cores and chooses the φ that measuring every member chooses. Writes ``scale_plan.{json,md}`` to
``--out-dir`` (default ``runs/benchmarks``). Run it on a quiet machine: on a busy one the threads default to the
free cores and the result carries a warning instead of a silently wrong answer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_OUT, loadavg, machine_info, markdown_table, write_outputs


def _run(flags: list[str], measure_all: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "effnet", "scale", "--json", "--device", "cpu", "--batch", "1", *flags]
    if measure_all:
        argv.append("--measure-all")
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    family = data.get("family", [])
    return {
        "mode": "every member" if measure_all else "planned",
        "wall_s": round(wall, 1),
        "exit": proc.returncode,
        "chosen_phi": data.get("chosen_phi"),
        "measured": data.get("measured_members"),
        "members": len(family),
        "rounds": max((m["rounds"] or 0 for m in family), default=None),
        "threads": data.get("threads"),
        "load": data.get("load"),
        "latency_ms": [m["latency_ms"] for m in family],
        "warning": data.get("warning"),
        "close_call": data.get("close_call"),
        "error": data.get("error") or (proc.stderr.strip().splitlines()[-1:] or [None])[0] if proc.returncode else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the case planned and with --measure-all, and write the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-latency-ms", type=float, default=40.0)
    p.add_argument("--study", default=None, help="take alpha, beta, gamma and the baseline from this search study")
    p.add_argument("--storage", default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--phi-max", type=int, default=None)
    p.add_argument("--runtime", default=None)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    flags = ["--max-latency-ms", f"{args.max_latency_ms:g}"]
    for name in ("study", "storage", "width", "resolution", "phi_max", "runtime"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    before = loadavg()
    runs = [_run(flags, measure_all=False), _run(flags, measure_all=True)]
    same = runs[0]["chosen_phi"] == runs[1]["chosen_phi"]
    payload = {
        "machine": machine_info(),
        "load_before": before,
        "load_after": loadavg(),
        "command": "effnet scale --device cpu --batch 1 " + " ".join(flags),
        "runs": runs,
        "same_choice": same,
        "planned_within_60_s": runs[0]["wall_s"] <= 60,
    }
    columns = [
        "mode",
        "wall_s",
        "exit",
        "chosen_phi",
        "measured",
        "members",
        "rounds",
        "threads",
        "load",
        "warning",
        "close_call",
    ]
    table = markdown_table(runs, columns) + f"\nsame choice: {same}; command: {payload['command']}\n"
    js, md = write_outputs(args.out_dir, "scale_plan", payload, table)
    print(table, end="")
    print(f"wrote {md} and {js}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
