"""Shared fixtures: private latency profiles for every test, the write-fault injector (``tests/faults.py``) and a real,
small tmpfs where mounting is allowed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import faults


@pytest.fixture(autouse=True)
def _private_profiles(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point effnet's default profile folder at an empty one: ``--runtime default`` then keeps its fixed crossover,
    whatever ``effnet profile`` measured on this machine."""
    monkeypatch.setenv("EFFNET_PROFILES", str(tmp_path_factory.mktemp("profiles")))


class Tmpfs:
    """A tmpfs of ``size`` mounted at ``path`` (``read_only``: mounted read-only, so every write is EROFS)."""

    def __init__(self, path: Path, size: str, read_only: bool = False) -> None:
        self.path, self.size, self.read_only = path, size, read_only

    def mount(self) -> None:
        """Mount it, or skip the test with the reason where mounting is not allowed."""
        self.path.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size}" + (",ro" if self.read_only else "")
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def write_faults():
    """``faults.inject``: ``with write_faults(root, errno.ENOSPC, nth) as f:`` fails the nth write under root."""
    return faults.inject


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 3 MiB tmpfs, mounted for the test (skipped, with the reason, where mounting is not allowed)."""
    fs = Tmpfs(tmp_path / "tmpfs", "3M")
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()


@pytest.fixture
def read_only_tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """An empty tmpfs mounted read-only for the test (skipped where mounting is not allowed)."""
    fs = Tmpfs(tmp_path / "read_only", "1M", read_only=True)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()
