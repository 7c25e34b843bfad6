"""Provenance: what trained a run, where and when, in RUN_DIR/provenance.json.

Every training session of a run (its first start, and each resume that has steps left to train)
appends one record to {"sessions": [...]}; `RunDir.provenance()` reads the file back. A session:

    started, ended           UTC times, ISO 8601; ended is null while the session runs, and stays
                             null when it was killed
    resumed_from_step        the checkpoint the session resumed from; null for the first session
    ended_at_step, outcome   the step reached, and finished | interrupted (Ctrl-C or SIGTERM, a
                             checkpoint written) | diverged | failed (any other error); null until it ends
    diffrep, python, torch, numpy   versions
    git                      {"commit", "dirty"} of the checkout diffrep runs from (dirty: a tracked
                             file differs from the commit); null when diffrep is not run from a git
                             checkout or git cannot tell
    device, torch_threads    where the training steps ran ("cpu", or "cuda:0 (NVIDIA H100 ...)") and
                             torch's intra-op threads
    cpu, platform            the host's CPU model and operating system

The environment is recorded per session because a resume may run on another machine or with other
versions. Each change rewrites the file with `atomic_write`, so a kill leaves the previous version
or the new one. The file's times differ between two runs of one config, so comparisons of run
directories leave it out (`RunDir.PROVENANCE`); nothing diffrep computes reads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .rundir import RunDir, atomic_write

# src/diffrep/provenance.py -> the checkout's root, when diffrep runs from one (an editable install)
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def now() -> str:
    """The current UTC time, ISO 8601 to the second: 2026-12-05T13:39:21+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state(root: Path = SOURCE_ROOT) -> dict | None:
    """{"commit", "dirty"} of the git checkout at `root`, or None: no git, not a checkout, or a
    checkout that only encloses diffrep (an installed copy in a virtual environment inside some
    other repository is not that repository's commit). GIT_OPTIONAL_LOCKS=0: `git status` leaves the
    index alone, so that it never holds a lock that a `git commit` in the checkout would meet."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The host CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The device's name: cpu, or a GPU's index and model, such as cuda:0 (NVIDIA H100 80GB HBM3)."""
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def environment(device: torch.device) -> dict:
    """The versions, checkout, device and host a session runs with."""
    return {"diffrep": importlib.metadata.version("diffrep"), "git": git_state(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "device": device_name(device),
            "torch_threads": torch.get_num_threads(), "cpu": cpu_model(), "platform": platform.platform()}


def start_session(run: RunDir, record: dict, started: str, device: torch.device, resumed_from_step: int | None) -> dict:
    """Append a session that started at `started` to `record` (what `run.provenance()` read), write
    it, and return the new record (for `end_session`)."""
    session = {"started": started, "ended": None, "resumed_from_step": resumed_from_step, "ended_at_step": None,
               "outcome": None, **environment(device)}
    record = {"sessions": [*record.get("sessions", []), session]}
    _write(run, record)
    return record


def end_session(run: RunDir, record: dict, step: int, outcome: str) -> None:
    """Record the end of the last session of `record` (what `start_session` returned): now, the step
    reached and the outcome."""
    record["sessions"][-1].update(ended=now(), ended_at_step=step, outcome=outcome)
    _write(run, record)


def _write(run: RunDir, record: dict) -> None:
    atomic_write(run.provenance_path, (json.dumps(record, indent=1) + "\n").encode())
