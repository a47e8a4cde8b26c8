"""Names made from settings (torch-free): a short, stable name for how some settings differ from their defaults.

``effnet search`` names its default folder after the settings that differ from the main job's
(:func:`effnet.config.search.settings_suffix`), so each search has its own folder and re-running a command finds it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_NAME", "difference_name"]

MAX_NAME = 48
"""Longest name :func:`difference_name` returns; a longer one is cut and ended by a hash of the whole."""


def _part(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return name if value else f"no-{name}"
    text = f"{value:g}" if isinstance(value, float) else "unset" if value is None else str(value)
    return f"{name}-{re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')}"


def difference_name(
    given: Mapping[str, Any], defaults: Mapping[str, Any], renamed: Mapping[str, str] | None = None
) -> str:
    """One part per key whose value in ``given`` differs from ``defaults`` (a key missing on one side counts as
    unset), in ``given``'s order then ``defaults``', joined by ``-``: ``seeds-1``, ``strategy-grid``, ``lr-0.02``,
    ``no-baseline-trial`` (a false bool, its key renamed by ``renamed``). Underscores in keys become dashes; any
    other character than letters, digits and ``.`` in a value becomes ``_``. ``""`` when nothing differs."""
    names = dict(renamed or {})
    keys = list(given) + [k for k in defaults if k not in given]
    parts = [
        _part(names.get(k, k.replace("_", "-")), given.get(k))
        for k in keys
        if k not in defaults or k not in given or given[k] != defaults[k]
    ]
    name = "-".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9].rstrip('-_.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name
