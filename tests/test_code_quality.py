"""ruff and mypy over src/ with zero findings (their settings are in pyproject.toml).

Run as tests so the README's one test command (and CI) checks them too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_in_src() -> None:
    done = _run("ruff", "check", "--no-cache", "src")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_src() -> None:
    done = _run("mypy", "--no-incremental")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
