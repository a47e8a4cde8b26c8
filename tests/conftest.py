"""Shared fixtures: the write-fault injector (``tests/faults.py``) and a real, small tmpfs where mounting is allowed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import faults


class Tmpfs:
    """A mounted tmpfs of ``size`` at ``path``; :meth:`read_only` remounts it read-only."""

    def __init__(self, path: Path, size: str) -> None:
        self.path, self.size = path, size

    def _mount(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)

    def read_only(self) -> None:
        """Remount read-only (what a full or write-protected volume looks like to a writer: EROFS)."""
        done = self._mount("-o", "remount,ro", str(self.path))
        assert done.returncode == 0, done.stderr


@pytest.fixture
def write_faults():
    """``faults.inject``: ``with write_faults(root, errno.ENOSPC, nth) as f:`` fails the nth write under root."""
    return faults.inject


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 3 MiB tmpfs, mounted for the test (skipped, with the reason, where mounting is not allowed)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    fs = Tmpfs(mount_point, "3M")
    try:
        done = fs._mount("-t", "tmpfs", "-o", f"size={fs.size}", "tmpfs", str(mount_point))
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield fs
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30, check=False)
