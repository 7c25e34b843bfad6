"""provenance.json: every training session of a run, with its versions, checkout, device, host and times."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import signal
import subprocess
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from diffrep import provenance
from diffrep.config import make_config
from diffrep.data import BumpDataset
from diffrep.run import train
from diffrep.rundir import RunDir
from diffrep.training import TrainingDiverged, TrainingInterrupted

QUICK = {"training.steps": 10, "scoring.during_training": False, "probe.during_training": False}  # checkpoints 0, 1, 3, 10
SESSION = {"started", "ended", "resumed_from_step", "ended_at_step", "outcome"}
ENVIRONMENT = {"diffrep", "git", "python", "torch", "numpy", "device", "torch_threads", "cpu", "platform"}


def quick_run(path) -> RunDir:
    cfg = make_config("tiny", QUICK)
    return train(cfg, RunDir.create(path, cfg), quiet=True)


def time_of(text: str) -> datetime:
    return datetime.fromisoformat(text)


def resume(run: RunDir) -> RunDir:
    return train(run.config(), run, resume=True, quiet=True)


def test_a_run_records_its_session_with_versions_checkout_device_and_host(tmp_path):
    before = datetime.now(timezone.utc).replace(microsecond=0)  # the file's times are to the second
    run = quick_run(tmp_path / "run")
    after = datetime.now(timezone.utc)
    (session,) = run.provenance()["sessions"]
    assert session.keys() == SESSION | ENVIRONMENT
    assert before <= time_of(session["started"]) <= time_of(session["ended"]) <= after
    assert (session["resumed_from_step"], session["ended_at_step"], session["outcome"]) == (None, 10, "finished")
    assert session["diffrep"] == importlib.metadata.version("diffrep")
    assert (session["python"], session["torch"], session["numpy"]) == (platform.python_version(), torch.__version__,
                                                                       np.__version__)
    assert session["device"] == "cpu" and session["torch_threads"] == torch.get_num_threads()
    assert session["cpu"] and session["cpu"] == provenance.cpu_model() and session["platform"] == platform.platform()
    git = session["git"]
    assert git is None or (re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool))
    assert git == provenance.git_state()


def test_a_resume_appends_a_session_and_a_finished_run_adds_none(tmp_path):
    run = quick_run(tmp_path / "run")
    (first,) = run.provenance()["sessions"]
    run.checkpoint_path(10).unlink()  # as if killed before its last checkpoint
    resume(run)
    sessions = run.provenance()["sessions"]
    assert len(sessions) == 2 and sessions[0] == first
    assert (sessions[1]["resumed_from_step"], sessions[1]["ended_at_step"], sessions[1]["outcome"]) == (3, 10, "finished")
    assert time_of(first["ended"]) <= time_of(sessions[1]["started"]) <= time_of(sessions[1]["ended"])
    resume(run)  # finished: nothing to train, nothing recorded
    assert run.provenance()["sessions"] == sessions


def test_a_run_from_before_provenance_reads_as_empty_and_its_resume_starts_the_record(tmp_path):
    run = quick_run(tmp_path / "run")
    run.provenance_path.unlink()
    assert run.provenance() == {}
    run.checkpoint_path(10).unlink()
    resume(run)
    (session,) = run.provenance()["sessions"]
    assert (session["resumed_from_step"], session["outcome"]) == (3, "finished")


def render_then(action, at_call: int):
    """BumpDataset.render (called once per training step) that does `action` from its `at_call`-th call on."""
    real_render, calls = BumpDataset.render, []

    def render(self, conditions):
        calls.append(1)
        images = real_render(self, conditions)
        return action(images) if len(calls) >= at_call else images

    return render


def diverge(images):
    return images * float("nan")


def press_ctrl_c(images):
    signal.raise_signal(signal.SIGINT)  # training only raises a flag: the step finishes, a checkpoint is written
    return images


@pytest.mark.parametrize("action, error, outcome, step", [(diverge, TrainingDiverged, "diverged", 4),
                                                          (press_ctrl_c, TrainingInterrupted, "interrupted", 5)])
def test_a_session_that_stops_early_records_how_and_where(action, error, outcome, step, tmp_path, monkeypatch):
    monkeypatch.setattr(BumpDataset, "render", render_then(action, at_call=5))
    # Ctrl-C as at a terminal: a shell that starts the tests in the background (`make test &`) starts
    # them with SIGINT ignored, and train() leaves an ignored stop signal ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(error):
            quick_run(tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, previous)
    (session,) = RunDir(tmp_path / "run").provenance()["sessions"]
    assert (session["outcome"], session["ended_at_step"]) == (outcome, step) and session["ended"] is not None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_names_the_commit_of_a_checkout_and_nothing_else(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (repo / "a.txt").write_text("1\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert provenance.git_state(repo) == {"commit": head, "dirty": False}
    (repo / "notes.txt").write_text("untracked\n")  # an untracked file leaves the checkout clean
    assert provenance.git_state(repo) == {"commit": head, "dirty": False}
    (repo / "a.txt").write_text("2\n")
    assert provenance.git_state(repo) == {"commit": head, "dirty": True}
    assert provenance.git_state(repo / "src") is None  # inside a checkout, not its root: an installed copy
    assert provenance.git_state(tmp_path) is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert provenance.git_state(repo) is None
