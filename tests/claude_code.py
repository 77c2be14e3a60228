"""The real Claude Code CLI, installed from npm once per test session and run in print mode.

``install()`` puts ``@anthropic-ai/claude-code@VERSION`` (the package carries its
native binary) under ``tests/.claude-code/<VERSION>/`` (git-ignored) unless it is
already there, and returns the ``claude`` executable; a failed install raises, so
the tests that need the CLI fail rather than skip.  ``run()`` drives one prompt
through a base URL the way a user does::

    ANTHROPIC_BASE_URL=<gateway> ANTHROPIC_AUTH_TOKEN=<key> claude -p "..." --model M --output-format json

with a throw-away HOME and the variables that keep the CLI off the network
(no telemetry, no auto-update, no non-essential traffic).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = "2.1.328"
PACKAGE = "@anthropic-ai/claude-code"
CACHE = Path(__file__).parent / ".claude-code"
OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


class ClaudeCodeUnavailable(RuntimeError):
    pass


def _executable(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "claude"


def _works(exe: Path) -> bool:
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and VERSION in out.stdout


def install() -> Path:
    """The ``claude`` executable of the pinned version, installed if missing (under a file lock)."""
    prefix = CACHE / VERSION
    exe = _executable(prefix)
    if _works(exe):
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise ClaudeCodeUnavailable("npm is not installed: the Claude Code CLI tests need Node.js and npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(exe):
            return exe
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
             "--loglevel", "error", f"{PACKAGE}@{VERSION}"],
            capture_output=True, text=True, timeout=900, check=False,
        )
        if done.returncode != 0 or not _works(exe):
            raise ClaudeCodeUnavailable(f"installing {PACKAGE}@{VERSION} failed (exit {done.returncode}):\n"
                                        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return exe


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        """The ``--output-format json`` result object (the last JSON line of stdout)."""
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON result from claude (exit {self.returncode}):\n{self.stdout}\n{self.stderr}")

    def explain(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


def run(exe: Path, base_url: str, key: str, prompt: str, model: str | None, cwd: Path, home: Path,
        args: tuple[str, ...] = (), env: dict[str, str] | None = None, timeout: float = 180) -> Result:
    home.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": key,
        **OFFLINE_ENV,
        **(env or {}),
    }
    model_args = ["--model", model] if model else []  # without: ANTHROPIC_MODEL or the CLI's default
    done = subprocess.run(
        [str(exe), "-p", prompt, *model_args, "--output-format", "json", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)
