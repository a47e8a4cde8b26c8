"""``effnet profile``: measure this machine's CPU engine and save its latency model (a profile JSON).

Every flag is a field of :class:`effnet.config.profile.ProfileConfig`; the measurement is
:func:`effnet.serving.profile.profile_device`, the profile :class:`effnet.latency.profile.Profile`.
"""

from __future__ import annotations

import argparse
import json
import sys

from effnet.cli.flags import Flags, add_flags, build
from effnet.config.profile import ProfileConfig
from effnet.io import check_output
from effnet.latency.profile import Profile
from effnet.machine import busy_cores, usable_cpus

HELP = (
    "Measure this machine's CPU engine (blocks, small networks, the fastest engine per batch) and save a latency "
    "profile for effnet info --profile, the search and --runtime default."
)

FLAGS = (Flags(ProfileConfig),)
"""One flag per :class:`ProfileConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`ProfileConfig` field."""
    add_flags(parser, FLAGS)


def _summary(profile: Profile, path: str) -> dict[str, object]:
    fp = profile.fingerprint
    return {
        "profile": path,
        "engine": fp.engine,
        "runtime": fp.runtime,
        "precision": fp.precision,
        "batch": fp.batch,
        "threads": fp.threads,
        "cpu": fp.cpu_model,
        "fastest": {str(b): e for b, e in profile.fastest(fp.precision).items()},
        "quality": dict(profile.quality),
    }


def _load() -> str | None:
    """A warning when other work keeps this machine's CPUs busy (its timings, and so the model, would be noisy)."""
    load, cpus = busy_cores(), usable_cpus()
    if load <= 0.5 * cpus:
        return None
    return f"other work keeps {load:.1f} of {cpus} CPUs busy: timings will be noisy; profile on a quiet machine"


def run(args: argparse.Namespace) -> int:
    """Profile, save, and print where the profile went and how well its model fits what it measured."""
    from tqdm.auto import tqdm  # lazy: only a measuring run shows a bar

    from effnet.latency.profile import save_profile  # torch-free, beside the measurement below
    from effnet.serving.profile import profile_device, profile_steps  # lazy: imports torch

    config: ProfileConfig = build(FLAGS[0], args)
    check_output(config.output)
    busy = _load()
    if busy:
        print(f"effnet profile: note: {busy}", file=sys.stderr)
    with tqdm(total=profile_steps(config), desc="profiling", unit="run", file=sys.stderr) as bar:

        def step(what: object) -> None:
            bar.set_postfix_str(str(getattr(what, "name", what))[:40], refresh=False)
            bar.update(1)

        profile, _ = profile_device(config, step)
    path = str(save_profile(profile, config.output))
    summary = _summary(profile, path)
    if config.json:
        print(json.dumps(summary, indent=2))
        return 0
    quality = dict(profile.quality)
    print(
        f"profile: {path}\n"
        f"engine {profile.fingerprint.engine} ({profile.fingerprint.runtime}), {profile.fingerprint.precision}, "
        f"batch {profile.fingerprint.batch}, {profile.fingerprint.threads} threads, {profile.fingerprint.cpu_model}"
    )
    for label in ("blocks", "networks"):
        if label in quality:
            print(
                f"{label}: {quality[label]:.0f} measured; cross-validated {quality[label + '_within_10pct']:.0%} "
                f"within ±10 %, median error {quality[label + '_median_abs_error']:.1%}"
            )
    for row in profile.engines:
        times = ", ".join(f"{engine} {ms:.2f} ms" for engine, ms in row.ms)
        print(f"batch {row.batch} {row.precision}: {times} -> {row.fastest}")
    return 0
