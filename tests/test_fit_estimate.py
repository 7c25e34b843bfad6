"""bench/fit_estimate.py recovers the constants of diffrep.experiments.catalog.run_seconds from run directories."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fit_estimate  # noqa: E402

from diffrep.config import make_config  # noqa: E402
from diffrep.experiments.catalog import run_seconds  # noqa: E402


def write_run(path: Path, cfg, last_step: int | None = None) -> Path:
    """A run directory holding `cfg` and a checkpoint at last_step (default: its last step)."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    last = path / "checkpoints" / f"step_{last_step or cfg.training.steps:08d}.safetensors"
    last.write_bytes(b"")
    return last


def test_the_fit_recovers_the_constants_the_runs_took(tmp_path, capsys):
    settings = [["model.widths=[8,16,32]"], [], ["model.widths=[32,64,128]"], ["data.image_size=16"],
                ["training.steps=2400"], ["training.checkpoint_every=100"], ["training.steps=600", "data.image_size=16"]]
    truth = (0.05, 3.0, 0.3)
    for i, overrides in enumerate(settings):
        cfg = make_config("default", overrides)
        last = write_run(tmp_path / "sweep" / "runs" / f"run{i}", cfg)
        start = 1_000_000.0
        os.utime(last.parents[1] / "config.json", (start, start))
        end = start + 2 * run_seconds(cfg, *truth)  # two runs at a time: each run's share is half its span
        os.utime(last, (end, end))
    # an unfinished run (killed before its last checkpoint) is left out of the fit
    write_run(tmp_path / "sweep" / "runs" / "killed", make_config("default", []), last_step=500)

    assert fit_estimate.main([str(tmp_path / "sweep"), "--concurrent", "2"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["runs"] == len(settings)
    fitted = out["fitted"]
    assert (fitted["step_s"], fitted["checkpoint_s"], fitted["fixed_cost"]) == pytest.approx(truth, rel=1e-3)
    assert out["mean_relative_error"]["fitted"] < 1e-4


def test_a_directory_that_is_not_a_sweep_exits_2(tmp_path, capsys):
    assert fit_estimate.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"fit_estimate: sweep_dirs: not a sweep directory (no runs/): {tmp_path}"


def test_a_sweep_without_a_finished_run_exits_2(tmp_path, capsys):
    write_run(tmp_path / "sweep" / "runs" / "killed", make_config("default", []), last_step=500)
    assert fit_estimate.main([str(tmp_path / "sweep")]) == 2
    assert capsys.readouterr().err.strip() == "fit_estimate: sweep_dirs: no finished run in them to fit to"
