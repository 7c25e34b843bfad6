"""Sweeps: grid expansion and parsing, the local and Ray backends, skip / resume / failure, aggregation.

The runs are tiny (10 steps, no scoring or probing, a few seconds each); one run with scoring
on feeds the aggregation test.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffrep.config import ConfigError, make_config
from diffrep.rundir import RunDir
from diffrep.run import train
from diffrep.sweep.grid import expand_grid, parse_grid, parse_seeds
from diffrep.sweep.runner import load_sweep, prepare_sweep_dir, run_sweep
from diffrep.sweep.tables import aggregate, by_setting, config_from_row, curve, final_value, time_to, varying_keys, write_table

STEPS = 10
QUICK = {"training.steps": STEPS, "probe.during_training": False, "scoring.during_training": False}
GRID = {"training.lr": [1e-3, 2e-3]}


def base():
    return make_config("tiny", QUICK)


def snapshot(run_dir: Path) -> dict:
    """Every file of a run with its mtime and size: what a skipped run must leave as it was."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / f"step_{STEPS:08d}.safetensors").is_file()


# -- grid ---------------------------------------------------------------------------


def test_expand_grid_counts_and_names():
    points = expand_grid(base(), {"training.lr": [1e-3, 3e-4], "data.dx": [0.5, 2, 4.0]}, [0, 1])
    assert len(points) == 2 * 3 * 2
    names = [name for name, _ in points]
    assert len(set(names)) == len(names)
    assert names[0] == "data.dx=0.5,training.lr=0.001,seed=0"  # keys sorted, seed last
    assert "data.dx=2,training.lr=0.0003,seed=1" in names
    cfg = dict(points)["data.dx=4.0,training.lr=0.001,seed=1"]
    assert (cfg.data.dx, cfg.training.lr, cfg.training.seed) == (4.0, 1e-3, 1)
    assert cfg.training.steps == STEPS  # the base config is kept
    # No grid: one run per seed.
    assert [name for name, _ in expand_grid(base(), {}, [3, 4])] == ["seed=3", "seed=4"]


def test_run_names_are_filesystem_safe_short_and_unique():
    holdouts = [[{"kind": "square", "x": x, "y": 8, "width": w}] for x in (4, 8, 12) for w in (2, 4, 6, 8)]
    grid = {"data.holdout": holdouts, "model.widths": [[8, 16, 16], [4, 8, 8]], "scoring.sampler": ["ddim", "ddpm"]}
    names = [name for name, _ in expand_grid(base(), grid, [0])]
    assert len(set(names)) == len(names) == 12 * 2 * 2
    for name in names:
        assert len(name) <= 100
        assert all(ch.isalnum() or ch in "._+-=," for ch in name), name
        assert not name.startswith(".")
    assert "model.widths=8_16_16,scoring.sampler=ddim,seed=0" in [n.split(",", 1)[1] for n in names]


def test_names_that_sanitizing_makes_equal_get_a_hash(monkeypatch):
    import diffrep.sweep.grid

    monkeypatch.setattr(diffrep.sweep.grid, "_format", lambda value: "same")
    names = [name for name, _ in expand_grid(base(), GRID, [0, 1])]
    assert len(set(names)) == 4
    assert names[0].startswith("training.lr=same,seed=0-") and names[2].startswith("training.lr=same,seed=0-")


@pytest.mark.parametrize("grid, seeds, needle", [
    ({"training.lrr": [1e-3]}, [0], "training.lrr: unknown setting"),
    ({"training.lr": [1e-3, -1]}, [0], "training.lr: must be > 0"),
    ({"data.sigma": ["wide"]}, [0], "data.sigma: expected a number"),
    ({"training.lr": []}, [0], "--grid: training.lr"),
    ({"training.lr": 1e-3}, [0], "--grid: training.lr"),
    ({"training.lr": [1e-3, 1e-3]}, [0], "--grid: training.lr lists a value twice"),
    ({"data.dx": [1, 1.0]}, [0], "--grid:"),  # the same config twice
    ({"training.seed": [1, 2]}, [0], "--grid: training.seed is set by --seeds"),
    ({"training.lr": [1e-3]}, [0, 1, 0], "--seeds:"),
    ({"training.lr": [1e-3]}, [], "--seeds:"),
    ({"training.lr": [1e-3]}, [1.5], "--seeds:"),
])
def test_expand_grid_rejects_bad_points_with_one_line(grid, seeds, needle):
    with pytest.raises(ConfigError) as e:
        expand_grid(base(), grid, seeds)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_parse_grid_values_are_json_else_strings():
    grid = parse_grid(["training.lr=1e-3,3e-4", "scoring.sampler=ddim,ddpm", "model.widths=[8,16,16], [4, 8, 8]",
                       'data.holdout=[{"kind": "band", "x": 8, "width": 2}],[]', "data.periodic=true,false"])
    assert grid == {
        "training.lr": [1e-3, 3e-4],
        "scoring.sampler": ["ddim", "ddpm"],
        "model.widths": [[8, 16, 16], [4, 8, 8]],
        "data.holdout": [[{"kind": "band", "x": 8, "width": 2}], []],
        "data.periodic": [True, False],
    }
    assert len(expand_grid(base(), grid, [0])) == 2 * 2 * 2 * 2 * 2


@pytest.mark.parametrize("items", [["training.lr"], ["=1,2"], ["training.lr="], ["training.lr=1,,2"],
                                   ["model.widths=[8,16"], ["training.lr=1", "training.lr=2"]])
def test_parse_grid_rejects_malformed_items(items):
    with pytest.raises(ConfigError, match="^--grid: ") as e:
        parse_grid(items)
    assert "\n" not in str(e.value)


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ConfigError, match="^--seeds: "):
        parse_seeds("a,b")


# -- local backend ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 2 x 1 grid x 1 seed, run once by the local backend."""
    sweep_dir = tmp_path_factory.mktemp("local") / "sweep"
    start = time.perf_counter()
    results = run_sweep(sweep_dir, base(), GRID, [0], workers=2, quiet=True)
    return sweep_dir, results, time.perf_counter() - start


def test_local_sweep_finishes_every_run(local_sweep):
    sweep_dir, results, _ = local_sweep
    names = [name for name, _ in expand_grid(base(), GRID, [0])]
    assert [r["name"] for r in results] == names
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert all(r["error"] is None and r["seconds"] > 0 for r in results)
    for name, cfg in expand_grid(base(), GRID, [0]):
        run = RunDir.open(sweep_dir / "runs" / name)
        assert run.config() == cfg
        assert run.checkpoint_steps()[-1] == STEPS
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["grid"] == GRID and manifest["seeds"] == [0] and manifest["runs"] == names
    assert load_sweep(sweep_dir) == (base(), GRID, [0])


def test_rerun_skips_finished_runs_and_rewrites_nothing(local_sweep, capsys):
    sweep_dir, _, _ = local_sweep
    runs = sorted((sweep_dir / "runs").iterdir())
    before = {run: snapshot(run) for run in runs}
    start = time.perf_counter()
    # The same grid with its values in another order is the same sweep.
    results = run_sweep(sweep_dir, base(), {"training.lr": [2e-3, 1e-3]}, [0], workers=2)
    assert time.perf_counter() - start < 5  # no worker process was started
    assert [r["status"] for r in results] == ["skipped", "skipped"]
    assert {run: snapshot(run) for run in runs} == before
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("skipped" in line for line in out)


@pytest.mark.parametrize("grid, seeds, other", [
    ({"training.lr": [1e-3, 3e-3]}, [0], {}),
    (GRID, [0, 1], {}),
    (GRID, [0], {"training.batch_size": 4}),
])
def test_another_sweep_on_the_same_dir_is_refused(local_sweep, grid, seeds, other):
    sweep_dir, _, _ = local_sweep
    before = snapshot(sweep_dir)
    with pytest.raises(ConfigError) as e:
        run_sweep(sweep_dir, base().with_overrides(other), grid, seeds, quiet=True)
    assert str(e.value).startswith(f"{sweep_dir}: ") and "\n" not in str(e.value)
    assert snapshot(sweep_dir) == before


def test_sweep_dir_that_is_a_run_or_holds_other_files_is_refused(local_sweep, tmp_path):
    sweep_dir, _, _ = local_sweep
    run_dir = next((sweep_dir / "runs").iterdir())
    with pytest.raises(ConfigError, match="is a run directory"):
        run_sweep(run_dir, base(), GRID, [0], quiet=True)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder"):
        run_sweep(tmp_path, base(), GRID, [0], quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    sweep_dir = tmp_path / "sweep"
    points = expand_grid(base(), GRID, [0])
    prepare_sweep_dir(sweep_dir, base(), GRID, [0], [name for name, _ in points])
    broken = sweep_dir / "runs" / points[0][0]
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    results = run_sweep(sweep_dir, base(), GRID, [0], workers=2, quiet=True)
    assert [r["status"] for r in results] == ["failed", "finished"]
    error = results[0]["error"]
    assert error.startswith("ConfigError: ") and "config.json" in error and "\n" not in error
    assert (broken / "config.json").read_text() == "{not json"  # left for the user to inspect
    assert is_finished(sweep_dir / "runs" / points[1][0])


def test_a_run_that_fails_while_training_is_reported_and_the_other_finishes(tmp_path):
    grid = {"training.lr+training.grad_clip": [[1e12, 0.0], [1e-3, 1.0]]}  # the first diverges at its second step
    results = run_sweep(tmp_path / "sweep", base(), grid, [0], workers=2, quiet=True)
    assert [r["status"] for r in results] == ["failed", "finished"]
    assert results[0]["error"].startswith("TrainingDiverged: loss is nan at step 2")
    failed = RunDir(results[0]["run"])
    assert failed.checkpoint_steps() == [0, 1]  # what it trained is kept, for the user to inspect


# -- killed midway, then resumed ---------------------------------------------------


KILL_SCRIPT = """
import sys
from diffrep.config import make_config
from diffrep.sweep.runner import run_sweep
run_sweep(sys.argv[1], make_config("tiny", {quick!r}), {{"training.lr": [1e-3, 2e-3, 3e-3]}}, [0], workers=1, quiet=True)
"""


def processes_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to watch the worker processes")
def test_sweep_killed_midway_resumes_without_redoing_finished_runs(tmp_path):
    sweep_dir, log = tmp_path / "sweep", tmp_path / "stderr.txt"
    steps = 150  # long enough (a few seconds a run) that the kill lands between runs even on a busy machine
    quick = {**QUICK, "training.steps": steps}

    def is_finished(run_dir: Path) -> bool:
        return (run_dir / "checkpoints" / f"step_{steps:08d}.safetensors").is_file()

    with open(log, "wb") as stderr:  # a file, not a pipe nobody drains
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(quick=quick), str(sweep_dir)],
                                start_new_session=True, stderr=stderr)
    try:
        deadline = time.monotonic() + 180
        while not (sweep_dir / "runs").is_dir() or not any(map(is_finished, (sweep_dir / "runs").iterdir())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process only: its worker must not train on as an orphan
        proc.wait()
        deadline = time.monotonic() + 20
        while processes_in_group(proc.pid):
            assert time.monotonic() < deadline, f"orphaned workers still running: {processes_in_group(proc.pid)}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_in_group(proc.pid):
            os.kill(pid, signal.SIGKILL)

    runs = sweep_dir / "runs"
    finished = {run.name: snapshot(run) for run in runs.iterdir() if is_finished(run)}
    assert 1 <= len(finished) < 3, "the kill should land midway"
    results = run_sweep(sweep_dir, make_config("tiny", quick), {"training.lr": [1e-3, 2e-3, 3e-3]}, [0], quiet=True)
    statuses = {r["name"]: r["status"] for r in results}
    assert all(statuses[name] == "skipped" for name in finished)
    assert all(status == "finished" for name, status in statuses.items() if name not in finished), results
    assert all(is_finished(run) for run in runs.iterdir()) and len(list(runs.iterdir())) == 3
    assert {name: snapshot(runs / name) for name in finished} == finished


@contextlib.contextmanager
def two_runs_in_flight(sweep_dir: Path, log: Path, quick: dict, **popen):
    """`diffrep sweep` of two tiny runs in a process group of its own (stderr to `log`), yielded once
    its runs have written 4 checkpoints between them; on the way out, it and its workers are killed
    if still there."""
    argv = [sys.executable, "-m", "diffrep", "sweep", "tiny", "--sweep-dir", str(sweep_dir), "--workers", "2", "--quiet",
            "--grid", "training.lr=1e-3,2e-3", *[a for k, v in quick.items() for a in ("--set", f"{k}={json.dumps(v)}")]]
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(argv, start_new_session=True, stderr=stderr, **popen)
    try:
        deadline = time.monotonic() + 180
        while len(list(sweep_dir.glob("runs/*/checkpoints/step_*.safetensors"))) < 4:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the runs did not start in time"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in processes_in_group(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to watch the worker processes")
def test_sigterm_to_a_sweep_checkpoints_its_runs_and_the_rerun_finishes_them(tmp_path):
    """A scheduler's SIGTERM to the sweep process: it is passed on to the runs in flight, which write
    a checkpoint and stop; the sweep exits with 143 and one line; the same sweep again finishes them,
    resuming, to the weights of runs never interrupted."""
    sweep_dir, log = tmp_path / "sweep", tmp_path / "stderr.txt"
    quick = {**QUICK, "training.steps": 150}
    with two_runs_in_flight(sweep_dir, log, quick) as proc:
        os.kill(proc.pid, signal.SIGTERM)  # the sweep process only; it passes the signal on
        assert proc.wait(timeout=120) == 143, log.read_text()
    assert log.read_text().strip().splitlines()[-1].startswith("diffrep: sweep stopped by SIGTERM")
    runs = [RunDir(p) for p in sorted((sweep_dir / "runs").iterdir())]
    stopped = [run for run in runs if run.checkpoint_steps()[-1] < 150]
    assert stopped and all(run.has_resume_state(run.checkpoint_steps()[-1]) for run in stopped)
    results = run_sweep(sweep_dir, make_config("tiny", quick), {"training.lr": [1e-3, 2e-3]}, [0], quiet=True)
    assert [r["status"] for r in results] == ["finished", "finished"], results
    for run in runs:
        whole = train(run.config(), RunDir.create(tmp_path / "whole" / run.path.name, run.config()), quiet=True)
        ours, theirs = run.load_checkpoint(150)[0], whole.load_checkpoint(150)[0]
        assert all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith(("model.", "ema.")))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to watch the worker processes")
@pytest.mark.parametrize("ignored", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_sweep_started_ignoring_a_stop_signal_finishes_every_run_when_its_group_gets_it(tmp_path, ignored):
    """A shell script's `diffrep sweep ... &` starts the sweep with Ctrl-C ignored (and a launcher may
    ignore SIGTERM). That signal to its whole process group, workers included, then stops nothing:
    every run trains to its end in one session, none is left interrupted while the sweep goes on."""
    sweep_dir, log = tmp_path / "sweep", tmp_path / "stderr.txt"
    quick = {**QUICK, "training.steps": 150}
    with two_runs_in_flight(sweep_dir, log, quick, preexec_fn=lambda: signal.signal(ignored, signal.SIG_IGN)) as proc:
        os.killpg(proc.pid, ignored)  # the sweep process and its workers, as a terminal's Ctrl-C
        assert proc.wait(timeout=180) == 0, log.read_text()
    runs = [RunDir(p) for p in sorted((sweep_dir / "runs").iterdir())]
    assert len(runs) == 2 and all(run.checkpoint_steps()[-1] == 150 for run in runs)
    assert [[session["outcome"] for session in run.provenance()["sessions"]] for run in runs] == [["finished"]] * 2


# -- ray backend --------------------------------------------------------------------


def test_ray_backend_runs_the_grid(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'diffrep[ray]')")
    assert not ray.is_initialized()
    results = run_sweep(tmp_path / "sweep", base(), GRID, [0], backend="ray", workers=2, quiet=True)
    assert [r["status"] for r in results] == ["finished", "finished"], results
    assert all(is_finished(tmp_path / "sweep" / "runs" / r["name"]) for r in results)
    assert not ray.is_initialized()  # the local instance it started is shut down
    # Finished runs are skipped without starting Ray at all.
    again = run_sweep(tmp_path / "sweep", base(), GRID, [0], backend="ray", quiet=True)
    assert [r["status"] for r in again] == ["skipped", "skipped"]


def test_bad_backend_options_are_refused(tmp_path):
    for kwargs, flag in [({"backend": "slurm"}, "--backend"), ({"workers": 0}, "--workers"),
                         ({"cpus_per_run": 0}, "--cpus-per-run"), ({"address": "auto"}, "--address")]:
        with pytest.raises(ConfigError, match=f"^{flag}: "):
            run_sweep(tmp_path / "sweep", base(), GRID, [0], quiet=True, **kwargs)
    assert not (tmp_path / "sweep").exists()


# -- aggregation --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    cfg = make_config("tiny", {"training.steps": STEPS, "probe.during_training": False})
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("scored") / "scored", cfg), quiet=True)


def test_aggregate_has_one_row_per_run_and_checkpoint(local_sweep, scored_run, tmp_path):
    sweep_dir, _, _ = local_sweep
    rows = aggregate([str(sweep_dir), str(scored_run.path), str(sweep_dir)])  # a folder twice: its runs once
    runs = sorted((sweep_dir / "runs").iterdir()) + [scored_run.path]
    expected = sorted((str(run), step) for run in runs for step in RunDir(run).checkpoint_steps())
    assert sorted((r["run"], r["step"]) for r in rows) == expected
    scored = [r for r in rows if r["run"] == str(scored_run.path)]
    assert all(0 <= r["score.train.accuracy"] <= 1 and r["score.sampler"] == "ddim5" for r in scored)
    assert all("score.train.accuracy" not in r for r in rows if r["run"] != str(scored_run.path))
    last = [r for r in rows if r["step"] == STEPS]
    assert all("loss" in r for r in last)  # the training line of the last step is merged in
    assert all(r["training.steps"] == STEPS and r["model.widths"] == "[8, 16, 16]" for r in rows)
    assert {"training.lr", "scoring.during_training"} <= set(varying_keys(rows))
    assert "training.steps" not in varying_keys(rows)

    path = write_table(rows, tmp_path / "table.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        back = list(reader)
    assert len(back) == len(rows)
    assert reader.fieldnames[:3] == ["run", "name", "step"]
    assert set(reader.fieldnames) == {k for r in rows for k in r}
    assert [(r["run"], int(r["step"])) for r in back] == [(r["run"], r["step"]) for r in rows]
    first_scored = next(i for i, r in enumerate(rows) if "score.train.accuracy" in r)
    assert float(back[first_scored]["score.train.accuracy"]) == rows[first_scored]["score.train.accuracy"]


def test_aggregate_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        aggregate([str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="no run directories"):
        aggregate([str(tmp_path)])


def test_time_to_and_by_setting():
    def row(run, step, lr, seed, **metrics):
        return {"run": run, "name": run, "step": step, "training.lr": lr, "training.seed": seed, **metrics}

    rows = [
        row("a", 0, 1e-3, 0, **{"score.train.accuracy": 0.0, "phase.layer4": "A"}),
        row("a", 10, 1e-3, 0, **{"score.train.accuracy": 0.95, "phase.layer4": "C"}),
        row("a", 5, 1e-3, 0, **{"score.train.accuracy": 0.9, "phase.layer4": "B"}),
        row("b", 0, 1e-3, 1, **{"score.train.accuracy": 0.1, "phase.layer4": "A"}),
        row("b", 10, 1e-3, 1, **{"score.train.accuracy": 0.5, "phase.layer4": "B"}),
        row("c", 0, 2e-3, 0),  # not scored
    ]
    assert time_to(rows, "score.train.accuracy", 0.9) == {"a": 5, "b": None, "c": None}
    assert time_to(rows, "phase.layer4", "C") == {"a": 10, "b": None, "c": None}
    groups = by_setting(rows, time_to(rows, "score.train.accuracy", 0.9))
    assert groups == [{"setting": {"training.lr": 1e-3}, "runs": ["a", "b"], "seeds": [0, 1], "values": [5, None]},
                      {"setting": {"training.lr": 2e-3}, "runs": ["c"], "seeds": [0], "values": [None]}]
    # Runs in seed order whatever their names and row order (a linked grid key names runs by a hash;
    # table.csv gives the seed as text).
    renamed = [{**r, "run": {"a": "z-hash", "b": "a-hash"}.get(r["run"], r["run"]), "training.seed": str(r["training.seed"])}
               for r in reversed(rows)]
    groups = by_setting(renamed, time_to(renamed, "score.train.accuracy", 0.9))
    assert groups[1] == {"setting": {"training.lr": 1e-3}, "runs": ["z-hash", "a-hash"], "seeds": [0, 1], "values": [5, None]}


def test_sweep_and_aggregate_commands_end_to_end(tmp_path, capsys):
    import csv

    from diffrep.cli import main

    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "tiny", "--grid", "training.lr=0.001,0.002", "--sweep-dir", str(sweep_dir),
            "--set", "training.steps=5", "--workers", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training.lr=0.001: steps to 90% accuracy" in out and (sweep_dir / "report.html").exists()
    with open(sweep_dir / "table.csv") as f:
        rows = list(csv.DictReader(f))
    # tiny at 5 steps: checkpoints 0, 1, 2, 5 (log-spaced 1, 2, 5) per run
    assert sorted((r["training.lr"], int(r["step"])) for r in rows) == [
        (lr, s) for lr in ("0.001", "0.002") for s in (0, 1, 2, 5)]
    assert main(["aggregate", str(sweep_dir), "--out", str(tmp_path / "t.csv")]) == 0
    with open(tmp_path / "t.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    assert main(["sweep", "tiny", "--grid", "training.lr", "--sweep-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--grid" in err
    assert not (tmp_path / "bad").exists()

    # `diffrep report`: a sweep's page, one run's page with its explorer, several runs overlaid
    (sweep_dir / "report.html").unlink()
    assert main(["report", str(sweep_dir)]) == 0
    assert "training.lr=0.001: steps to 90% accuracy" in capsys.readouterr().out
    assert (sweep_dir / "report.html").exists()
    run_dirs = sorted(p.parent for p in sweep_dir.glob("runs/*/config.json"))
    assert main(["report", str(run_dirs[0])]) == 0
    assert 'id="explorer-data"' in (run_dirs[0] / "report.html").read_text()
    capsys.readouterr()
    assert main(["report", *map(str, run_dirs)]) == 0
    out = capsys.readouterr().out
    page = (sweep_dir / "runs" / "report.html").read_text()  # the folder that holds both runs
    for run in run_dirs:
        assert f"{run.name} (training.lr=" in page and f"{run.name} (training.lr=" in out
    for bad, needle in [([str(run_dirs[0]), "--out", str(tmp_path / "x.html")], "--out"),
                        ([str(tmp_path / "nowhere")], "nowhere"),
                        ([*map(str, run_dirs), "--out", str(tmp_path / "x.txt")], "--out")]:
        assert main(["report", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is a descendant of `ancestor` (from /proc)."""
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
    return False


RAY_DEADLINE_S = 900  # generous for a loaded machine: a lost retry must fail the test rather than hang it


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "preempted"])
def test_ray_retries_a_lost_worker_and_the_run_resumes_to_an_uninterrupted_run(stop, tmp_path):
    """A Ray worker killed (SIGKILL), or preempted (SIGTERM: it checkpoints, then exits), mid-run: Ray
    retries the run, which resumes from its checkpoint (the files written before the loss are not
    written again) and ends with the weights of the same run uninterrupted."""
    import threading
    import time

    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'diffrep[ray]')")
    cfg = base().with_overrides({"training.steps": 300, "training.checkpoint_every": 25})
    run_dir = tmp_path / "sweep" / "runs"
    stopped, early = [], {}
    sweep_done = threading.Event()

    def stop_our_worker_once_it_has_checkpointed():
        while not sweep_done.is_set() and not stopped:
            runs = [RunDir(p) for p in run_dir.glob("*")]
            # Once step 0's checkpoint has been stripped of its resume state, nothing rewrites it but a restart.
            if runs and len(runs[0].checkpoint_steps()) >= 3 and not runs[0].has_resume_state(0):
                early["step_0"] = runs[0].checkpoint_path(0).stat().st_ino
                for proc in Path("/proc").iterdir():
                    try:  # only a worker of the Ray instance this test started
                        if (proc.name.isdigit() and b"ray::_ray_run_one" in (proc / "cmdline").read_bytes()
                                and _descends_from(int(proc.name), os.getpid())):
                            os.kill(int(proc.name), stop)
                            stopped.append(int(proc.name))
                    except OSError:
                        continue
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_our_worker_once_it_has_checkpointed, daemon=True)
    stopper.start()
    outcome = {}
    sweep = threading.Thread(target=lambda: outcome.update(results=run_sweep(
        tmp_path / "sweep", cfg, {"training.lr": [0.001]}, [0], backend="ray", workers=1, quiet=True)), daemon=True)
    sweep.start()
    sweep.join(timeout=RAY_DEADLINE_S)
    sweep_done.set()
    stopper.join(timeout=10)
    if sweep.is_alive():
        ray.shutdown()
        pytest.fail(f"the Ray sweep did not finish in {RAY_DEADLINE_S} s (a retry that never came?)")
    assert "results" in outcome, "the Ray sweep raised (its traceback is above)"
    results = outcome["results"]
    assert stopped, "no Ray worker of this test was found running the run"
    assert [r["status"] for r in results] == ["finished"], results  # retried, resumed, finished
    assert not ray.is_initialized()
    (run,) = [RunDir(p) for p in run_dir.iterdir()]
    assert run.checkpoint_path(0).stat().st_ino == early["step_0"]  # resumed, not started again
    whole = train(run.config(), RunDir.create(tmp_path / "whole", run.config()), quiet=True)
    last = run.checkpoint_steps()[-1]
    ours, theirs = run.load_checkpoint(last)[0], whole.load_checkpoint(last)[0]
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith(("model.", "ema."))), "not the same weights"


# -- linked keys and row helpers ------------------------------------------------------


def test_linked_keys_set_several_settings_per_point():
    grid = parse_grid(["data.dx+data.dy=[0.5,0.5],[0.1,1.0]", "training.lr=1e-3,2e-3"])
    assert grid == {"data.dx+data.dy": [[0.5, 0.5], [0.1, 1.0]], "training.lr": [1e-3, 2e-3]}
    points = expand_grid(base(), grid, [0])
    assert len(points) == 4  # 2 linked points x 2 learning rates, not 2 x 2 x 2
    assert [(cfg.data.dx, cfg.data.dy) for _, cfg in points] == [(0.5, 0.5), (0.5, 0.5), (0.1, 1.0), (0.1, 1.0)]
    assert points[0][0] == "data.dx+data.dy=0.5_0.5,training.lr=0.001,seed=0"


@pytest.mark.parametrize("grid, message", [
    ({"data.dx+data.dy": [[0.5, 0.5], [0.5]]}, r"^--grid: data\.dx\+data\.dy links 2 settings; each value must be a list of 2"),
    ({"data.dx+data.dy": [0.5]}, r"^--grid: data\.dx\+data\.dy links 2 settings"),
    ({"data.dx+data.dy": [[1, 1]], "data.dx": [2.0]}, r"^--grid: data\.dx is set by more than one grid key"),
    ({"data.dx+training.seed": [[1, 1]]}, r"^--grid: training\.seed is set by --seeds"),
    ({"data.dx+data.nope": [[1, 1]]}, r"^data\.nope: unknown setting"),
])
def test_bad_linked_keys_are_refused(grid, message):
    with pytest.raises(ConfigError, match=message):
        expand_grid(base(), grid, [0])


def test_config_from_row_final_value_and_curve(scored_run):
    rows = aggregate([str(scored_run.path)])
    assert all(config_from_row(row) == scored_run.config() for row in rows)
    run = str(scored_run.path)
    steps = scored_run.checkpoint_steps()
    last = [r for r in rows if r["step"] == steps[-1]][0]
    assert final_value(rows, "score.train.accuracy") == {run: last["score.train.accuracy"]}
    assert final_value(rows, "no.such.metric") == {run: None}
    assert [s for s, _ in curve(rows, run, "score.train.accuracy")] == steps
    assert curve(rows, run, "no.such.metric") == []
