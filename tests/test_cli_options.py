"""Options of the command line that choose where a run comes from and where checkpoints run:
`train --config FILE` and `--device` of score and probe (their bad input is in test_cli_errors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffrep.cli import main
from diffrep.config import load_config, make_config
from diffrep.run import train
from diffrep.rundir import RunDir

QUICK = {"training.steps": 3, "scoring.during_training": False, "probe.during_training": False, "training.lr": 2e-3}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> RunDir:
    cfg = make_config("tiny", QUICK)
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("source") / "run", cfg), quiet=True)


@pytest.mark.parametrize("given", ["run directory", "config.json"])
def test_a_run_started_from_another_runs_config_has_that_config_and_the_set(given, source_run, tmp_path, capsys):
    config = source_run.path if given == "run directory" else source_run.config_path
    assert main(["train", "--config", str(config), "--set", "training.seed=1", "--run-dir", str(tmp_path / "new"),
                 "--quiet"]) == 0
    new = RunDir(tmp_path / "new").config()
    assert new == source_run.config().with_overrides({"training.seed": 1})
    assert new.training.lr == 2e-3 and new.preset == "tiny"  # a setting of the source run, not of its preset


def test_a_partial_file_changes_only_its_keys_from_the_preset_it_names(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('preset = "tiny"\n\n[training]\nlr = 3e-3\nsteps = 20\n\n'
                    '[[data.holdout]]\nkind = "cross"\nwidth = 4.0\n')
    assert load_config(toml) == make_config("tiny", {"training.lr": 3e-3, "training.steps": 20,
                                                     "data.holdout": [{"kind": "cross", "width": 4.0}]})
    partial = tmp_path / "mine.json"  # no preset: the default one
    partial.write_text(json.dumps({"model": {"widths": [8, 8, 8]}}))
    assert load_config(partial, ["training.lr=1e-4"]) == make_config("default", {"model.widths": [8, 8, 8],
                                                                                 "training.lr": 1e-4})


def files_of(run: Path, step: int) -> dict[str, bytes]:
    """A checkpoint's score and probe files."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob(f"*/step_{step:08d}*")) if p.is_file()}


def test_device_cpu_scores_and_probes_to_the_bytes_that_training_wrote(tmp_path, capsys):
    """On the CPU a checkpoint scored or probed again gives the files of the run's own evaluation, with
    --device cpu and with the default (the run's training.device, cpu here); so does a grid of samples."""
    run = tmp_path / "run"
    assert main(["train", "tiny", "--set", "training.steps=3", "--set", 'training.device="cpu"', "--run-dir", str(run),
                 "--quiet"]) == 0
    written = files_of(run, 3)
    assert {"scores/step_00000003_ddim5.npz", "probes/step_00000003.npz"} <= written.keys()
    for device in ([], ["--device", "cpu"]):
        for command in ("score", "probe"):
            assert main([command, str(run), "--checkpoints", "latest", *device]) == 0, capsys.readouterr().err
        assert files_of(run, 3) == written
    grids = []
    for device in ([], ["--device", "cpu"]):
        out = tmp_path / f"samples{len(grids)}.png"
        assert main(["sample", str(run), "--out", str(out), *device]) == 0
        grids.append(out.read_bytes())
    assert grids[0] == grids[1]
