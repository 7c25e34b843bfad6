"""Faults: SIGKILL at exact points of every command that writes, Ctrl-C, a full disk, a second
process, and determinism across fresh processes.

A kill point is "the n-th file a command commits" (tests/kill_driver.py): the command is
SIGKILLed just before that file's os.replace (the file is written under its temporary name, not
committed: a torn write) or just after it. The points are drawn with seeded random numbers among
all the writes of the command (scores, probes, phases, pictures, the report, the table), and a
kill cannot miss its moment whatever the machine's speed: the driver reports the signal that
ended the command, and a test whose command ended any other way fails. Then:

  - right after the kill, every file is either as it was before the command or exactly as an
    uninterrupted run writes it (nothing torn, nothing good overwritten);
  - running the same command again gives exactly the files of an uninterrupted run, and no
    temporary file is left in the run directory.

Training kill points (also a kill in the middle of a metrics.jsonl line) must resume to the same
weights, metrics and files as an uninterrupted run; tests/test_training.py adds kills at random
moments from outside.
"""

from __future__ import annotations

import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffrep.cli import main
from diffrep.config import make_config
from diffrep.rundir import RunDir
from diffrep.sweep.grid import expand_grid
from diffrep.sweep.runner import prepare_sweep_dir
from diffrep.run import train
from test_training import TIMING_KEYS, assert_same_run

# Two checkpoints (0 and 10): every kind of file a command writes for a checkpoint is still written, at
# half the kill points of the tiny preset's four; training's own kill points keep its four (TRAIN_ARGV).
QUICK = {"training.steps": 10, "training.checkpoint_log_points": 0, "scoring.during_training": False,
         "probe.during_training": False}
TRAIN_ARGV = ["train", "tiny", "--quiet", "--set", "training.steps=10"]  # scored and probed: every kind of line

# command -> (the directory it works on, argv given that directory's copy)
COMMANDS = {
    "score": ("quick_run", lambda d: ["score", d]),
    "probe": ("quick_run", lambda d: ["probe", d]),
    "report": ("analysed_run", lambda d: ["demo", "--run-dir", d, "--quiet"]),
    "sweep-report": ("finished_sweep", lambda d: ["sweep", "--resume", d, "--quiet"]),
    "aggregate": ("finished_sweep", lambda d: ["aggregate", d / "runs", "--out", d / "all.csv"]),
    "compare-report": ("finished_sweep", lambda d: ["report", d / "runs", "--out", d / "compare.html"]),
}
TORN_METRICS_LINES = 2
KILLS = ("kill_before_write", "kill_after_write")


def files(root: Path) -> dict[str, object]:
    """Every file under root by relative path, with its content. Two files aside: the lock file (it is
    never written) and a run's provenance.json (the times of its sessions differ from run to run, and a
    resume adds one: tests/test_provenance.py checks it)."""
    return {str(p.relative_to(root)): content(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("lock", RunDir.PROVENANCE)}


def content(path: Path):
    """A file's bytes; for a checkpoint, its parsed header and its tensor bytes: safetensors writes the
    header's metadata keys in an order that changes from one process to the next (a Rust hash map)."""
    data = path.read_bytes()
    if path.suffix != ".safetensors":
        return data
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def is_temporary(name: str) -> bool:
    return Path(name).name.startswith(".") and ".tmp" in Path(name).name


def pick(seed: str, low: int, high: int) -> int:
    return random.Random(seed).randint(low, high)


def fresh_copy(source: Path, workdir: Path, command: str) -> Path:
    """A copy of `source` at the one path where `command` always runs: its files name their
    directory (the table's run column, the report's title), so that runs compare byte for byte."""
    path = workdir / f"under-test-{command}"
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(source, path)
    return path


# -- the kill driver, and the directories the commands work on ---------------------------


@pytest.fixture(scope="module")
def driver():
    """run(argv, cwd, **kill) -> {"signal", "code", "writes"}: a diffrep command in a child of
    tests/kill_driver.py, with its kill point armed."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("kill_driver.py"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(argv, cwd: Path, **kill) -> dict:
        log = cwd / "command.log"
        proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "cwd": str(cwd), "log": str(log), **kill}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready, "the command did not end in 300 s"
        line = proc.stdout.readline()
        assert line, f"the kill driver died (exit code {proc.poll()})"
        result = json.loads(line)
        result["log"] = log.read_text()
        return result

    yield run
    proc.stdin.close()
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def quick_run(workdir) -> Path:
    """A tiny run, trained without scoring or probing: checkpoints 0 and 10."""
    cfg = make_config("tiny", QUICK)
    return train(cfg, RunDir.create(workdir / "quick", cfg), quiet=True).path


@pytest.fixture(scope="module")
def analysed_run(workdir, quick_run) -> Path:
    """The same run, scored and probed: what the report reads."""
    path = workdir / "analysed"
    shutil.copytree(quick_run, path)
    assert main(["score", str(path)]) == 0 and main(["probe", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def finished_sweep(workdir) -> Path:
    """A sweep of two finished tiny runs (trained here, so that no worker process is needed)."""
    base = make_config("tiny", {"training.steps": 5, "probe.during_training": False})
    grid = {"training.lr": [1e-3, 2e-3]}
    points = expand_grid(base, grid, [0])
    sweep = prepare_sweep_dir(workdir / "sweep", base, grid, [0], [name for name, _ in points])
    for name, cfg in points:
        train(cfg, RunDir.create(sweep / "runs" / name, cfg), quiet=True)
    return sweep


@pytest.fixture(scope="module")
def references(request, workdir, driver):
    """command -> (files before it, files after an uninterrupted run, its number of writes), made
    once per command, by the driver (another process than the reruns: the files must not depend
    on which process wrote them)."""
    made = {}

    def get(command):
        if command not in made:
            source, argv = COMMANDS[command]
            path = fresh_copy(request.getfixturevalue(source), workdir, command)
            before = files(path)
            result = driver(argv(path), workdir)
            assert result["code"] == 0, result["log"]
            made[command] = (before, files(path), result["writes"])
        return made[command]

    return get


# -- kill points of score, probe, the report, the sweep report, aggregate ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigkill_at_every_write_then_the_same_command_gives_the_files_of_an_uninterrupted_run(
        command, request, references, driver, workdir, tmp_path, capsys):
    """Killed just before and just after each of the command's writes, every one of them."""
    source, argv = COMMANDS[command]
    before, after, writes = references(command)
    assert writes >= 1
    for n in range(1, writes + 1):
        for where in KILLS:
            point = f"{where} {n} of {writes}"
            path = fresh_copy(request.getfixturevalue(source), workdir, command)
            killed = driver(argv(path), tmp_path, **{where: n})
            assert killed["signal"] == signal.SIGKILL, f"not killed at {point}: {killed}"

            now = files(path)
            torn = [name for name in now if is_temporary(name)]
            assert bool(torn) == (where == "kill_before_write"), (point, torn)  # the n-th file uncommitted, or not
            for name, data in now.items():
                if not is_temporary(name):
                    assert data in (before.get(name), after[name]), f"{point}: {name} is neither as before nor after"

            capsys.readouterr()
            assert main([str(a) for a in argv(path)]) == 0, (point, capsys.readouterr().err)
            again = files(path)
            if command in ("score", "probe", "report"):  # a run's lock: the rerun clears what the kill left
                assert again == after, point
            else:  # a sweep folder or --out folder has no lock: a hidden temporary file may stay there, never read
                assert {k: v for k, v in again.items() if not is_temporary(k)} == after, point


# -- kill points of training: resume to the same run ------------------------------------------


@pytest.fixture(scope="module")
def training_reference(workdir, driver):
    """An uninterrupted tiny run (10 steps, scored and probed), its number of writes and metrics lines."""
    path = workdir / "train-reference"
    result = driver(TRAIN_ARGV + ["--run-dir", path], workdir)
    assert result["code"] == 0, result["log"]
    return RunDir(path), result["writes"], len(RunDir(path).metrics())


def assert_resumes_to(reference: RunDir, path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["train", "--resume", str(path), "--quiet"]) == 0, capsys.readouterr().err
    run = RunDir(path)
    assert_same_run(reference, run)  # weights bit for bit, metrics, no duplicated line
    lines = run.metrics_path.read_text().split("\n")
    assert lines[-1] == "" and all(json.loads(line) for line in lines[:-1])  # no torn line
    ours, theirs = files(path), files(reference.path)
    ours.pop("metrics.jsonl"), theirs.pop("metrics.jsonl")  # compared above, without timing keys
    assert ours == theirs  # every checkpoint, score and probe file, byte for byte; nothing temporary
    sessions = run.provenance()["sessions"]  # whole whatever the kill interrupted; none lost
    assert sessions and all(session["started"] for session in sessions)


@pytest.mark.slow
def test_sigkill_at_every_write_during_training_then_the_run_ends_exact(training_reference, driver, tmp_path, capsys):
    """Killed just before and just after each write of `diffrep train`, the first (config.json)
    included: `train --resume` (or, where no config.json was committed yet, the same command again)
    ends with exactly the weights, metrics and files of an uninterrupted run."""
    reference, writes, _ = training_reference
    assert writes >= 20
    argv = [*TRAIN_ARGV, "--run-dir", str(tmp_path / "run")]
    for n in range(1, writes + 1):
        for where in KILLS:
            shutil.rmtree(tmp_path / "run", ignore_errors=True)
            killed = driver(argv, tmp_path, **{where: n})
            assert killed["signal"] == signal.SIGKILL, f"training was not killed at {where} {n} of {writes}: {killed}"
            if not (tmp_path / "run" / "config.json").exists():  # killed inside the run's creation
                capsys.readouterr()
                assert main(argv) == 0, (where, n, capsys.readouterr().err)
            assert_resumes_to(reference, tmp_path / "run", capsys)


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
@pytest.mark.parametrize("point", range(2))
def test_ctrl_c_or_sigterm_during_training_writes_a_checkpoint_and_the_resume_is_exact(
        point, signal_name, code, training_reference, driver, tmp_path, capsys):
    """Ctrl-C, or a scheduler's SIGTERM (it kills the job a grace period later), in the middle of a
    checkpoint's writes: the checkpoint is finished, the resume command printed, the exit code 128 +
    the signal, and the resume exact."""
    reference, writes, _ = training_reference
    n = pick(f"sigterm-{point}", 2, writes // 2)  # well before the last checkpoint: the run is not finished
    stopped = driver(TRAIN_ARGV + ["--run-dir", tmp_path / "run"], tmp_path, kill_before_write=n, signal=signal_name)
    assert stopped["code"] == code, stopped
    assert f"{signal_name} at step" in stopped["log"] and f"diffrep train --resume {tmp_path / 'run'}" in stopped["log"]
    run = RunDir(tmp_path / "run")
    assert run.has_resume_state(run.checkpoint_steps()[-1]) and run.checkpoint_steps()[-1] < 10
    assert_resumes_to(reference, tmp_path / "run", capsys)


@pytest.mark.parametrize("point", range(TORN_METRICS_LINES))
def test_sigkill_in_the_middle_of_a_metrics_line_then_resume_is_exact(point, training_reference, driver, tmp_path,
                                                                      capsys):
    reference, _, lines = training_reference
    n = pick(f"metrics-{point}", 1, lines)
    killed = driver(TRAIN_ARGV + ["--run-dir", tmp_path / "run"], tmp_path, kill_in_metrics_line=n)
    assert killed["signal"] == signal.SIGKILL
    assert not (tmp_path / "run" / "metrics.jsonl").read_text().endswith("\n")  # the kill tore the line
    assert_resumes_to(reference, tmp_path / "run", capsys)


# -- Ctrl-C outside training --------------------------------------------------------------------


@pytest.mark.parametrize("signal_name, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_ctrl_c_or_sigterm_says_what_to_do_and_the_rerun_finishes(command, signal_name, code, word, request, references,
                                                                  driver, workdir, tmp_path, capsys):
    """Ctrl-C (or a scheduler's SIGTERM) in the middle of a command's writes: one line saying to run it
    again, the conventional exit code, and the rerun gives the files of an uninterrupted run."""
    source, argv = COMMANDS[command]
    _, after, writes = references(command)
    path = fresh_copy(request.getfixturevalue(source), workdir, command)
    interrupted = driver(argv(path), tmp_path, kill_before_write=max(1, writes // 2), signal=signal_name)
    assert interrupted["code"] == code, interrupted
    last = interrupted["log"].strip().splitlines()[-1]
    assert "Traceback" not in interrupted["log"] and last.startswith(f"diffrep: {word}")
    assert "run the command again" in last
    capsys.readouterr()
    assert main([str(a) for a in argv(path)]) == 0
    again = files(path)
    assert {k: v for k, v in again.items() if not is_temporary(k)} == after


# -- a full disk ----------------------------------------------------------------------------------


class FullDiskFile:
    """A file whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", self._f.name)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_the_disk(monkeypatch, moment: str, matches) -> None:
    """From now on, writes of files whose path `matches` fail with ENOSPC at `moment`: "create" (the
    open), "write" or "fsync"."""
    from diffrep import rundir

    real_open, real_fsync = open, os.fsync

    def failing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if moment in ("create", "write") and ("w" in mode or "a" in mode) and matches(str(file)):
            if moment == "create":
                f.close()
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
            return FullDiskFile(f)
        return f

    def failing_fsync(fd):
        if moment == "fsync" and matches(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(rundir, "open", failing_open, raising=False)
    monkeypatch.setattr(rundir.os, "fsync", failing_fsync)


@pytest.mark.parametrize("moment", ["create", "write", "fsync"])
@pytest.mark.parametrize("command, failing", [
    ("score", "step_00000010_ddim5.npz"),  # the second file of the last checkpoint's scores
    ("probe", "phases.json"),
    ("report", "report.html"),
    ("sweep-report", "summary.json"),
])
def test_a_full_disk_is_one_line_and_overwrites_nothing(command, failing, moment, request, references, workdir,
                                                        monkeypatch, capsys):
    source, argv = COMMANDS[command]
    _, after, _ = references(command)
    path = fresh_copy(request.getfixturevalue(source), workdir, command)
    assert main([str(a) for a in argv(path)]) == 0  # every file is there, as an uninterrupted run wrote it
    fill_the_disk(monkeypatch, moment, lambda name: f".{failing}.tmp" in name)
    capsys.readouterr()
    assert main([str(a) for a in argv(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "No space left on device" in err.splitlines()[-1]
    assert files(path) == after  # the good files are intact, and no partial file was left


@pytest.mark.parametrize("moment", ["create", "write", "fsync"])
def test_a_full_disk_on_the_metrics_append_stops_training_cleanly_and_the_resume_is_exact(
        moment, training_reference, monkeypatch, tmp_path, capsys):
    reference, _, lines = training_reference
    run_dir = tmp_path / "run"
    appends = []

    def sixth_append(name):  # the probe line of step 3's checkpoint, after those of steps 0 and 1
        appends.append(name) if name.endswith("metrics.jsonl") else None
        return name.endswith("metrics.jsonl") and len(appends) >= 6

    fill_the_disk(monkeypatch, moment, sixth_append)
    capsys.readouterr()
    assert main([*[str(a) for a in TRAIN_ARGV], "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    monkeypatch.undo()
    assert RunDir(run_dir).metrics_path.read_text().endswith("\n")  # no torn line
    assert_resumes_to(reference, run_dir, capsys)


# -- two processes on one run -------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["train", "--resume", "{run}"], ["score", "{run}"], ["probe", "{run}"], ["demo", "--run-dir", "{run}"]],
    ids=["train", "score", "probe", "demo"])
def test_a_second_process_writing_into_a_run_is_refused(argv, analysed_run, tmp_path, capsys):
    path = tmp_path / "run"
    shutil.copytree(analysed_run, path)
    before = files(path)
    capsys.readouterr()
    with RunDir(path).lock():  # the first process
        assert main([a.replace("{run}", str(path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "is in use by another diffrep process" in err.splitlines()[-1] and "Traceback" not in err
    assert files(path) == before


PAUSE_SCRIPT = """
import os, signal, sys
os.environ["OMP_NUM_THREADS"] = "1"
from diffrep.cli import main
n, real = int(sys.argv[1]), os.replace
count = [0]
def replace(src, dst, **kw):
    count[0] += 1
    if count[0] == n:
        os.kill(os.getpid(), signal.SIGSTOP)  # paused in the middle of its writes, holding the run's lock
    real(src, dst, **kw)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def is_stopped(pid: int) -> bool:
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("second", [["probe", "{run}"], ["score", "{run}"], ["train", "--resume", "{run}"],
                                    ["demo", "--run-dir", "{run}"]], ids=["probe", "score", "train", "demo"])
def test_a_second_process_is_refused_while_the_first_is_in_the_middle_of_its_writes(second, references, quick_run,
                                                                                    workdir, tmp_path, capsys):
    _, after, writes = references("score")
    path = fresh_copy(quick_run, workdir, "score")
    first = subprocess.Popen([sys.executable, "-c", PAUSE_SCRIPT, str(writes // 2), "score", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not is_stopped(first.pid):
            assert first.poll() is None and time.monotonic() < deadline, "the first process never paused"
            time.sleep(0.05)
        during = files(path)
        capsys.readouterr()
        assert main([a.replace("{run}", str(path)) for a in second]) == 2
        err = capsys.readouterr().err
        assert "is in use by another diffrep process" in err.splitlines()[-1] and "Traceback" not in err
        assert files(path) == during  # the refused process touched nothing
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert files(path) == after  # and the first finished as if alone


# -- determinism ----------------------------------------------------------------------------------


def test_same_config_and_seed_in_fresh_processes_give_identical_files(tmp_path):
    """Two runs of one config in two new interpreters, side by side: every checkpoint, score and
    probe file is identical byte for byte, and the metrics apart from their timing."""
    procs = [subprocess.Popen([sys.executable, "-m", "diffrep", *TRAIN_ARGV, "--run-dir", str(tmp_path / name)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "ab"]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    metrics = [[{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                for line in run.pop("metrics.jsonl").decode().splitlines()] for run in (a, b)]
    assert metrics[0] == metrics[1]
    assert {"loss", "score.train.accuracy", "probe.layer4.knn_overlap"} <= {key for line in metrics[0] for key in line}
    assert a.keys() == b.keys() and any(name.endswith(".safetensors") for name in a)
    assert a == b
