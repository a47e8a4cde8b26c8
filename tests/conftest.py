"""Shared test set-up: no test reads or writes the user's latency profiles (``EFFNET_PROFILES``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_profiles(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point effnet's default profile folder at an empty one: ``--runtime default`` then keeps its fixed crossover,
    whatever ``effnet profile`` measured on this machine."""
    monkeypatch.setenv("EFFNET_PROFILES", str(tmp_path_factory.mktemp("profiles")))
