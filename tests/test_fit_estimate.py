"""bench/fit_estimate.py recovers the constants of diffrep.experiments.run_seconds from run directories."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fit_estimate  # noqa: E402

from diffrep.config import make_config  # noqa: E402
from diffrep.experiments import run_seconds  # noqa: E402


def test_the_fit_recovers_the_constants_the_runs_took(tmp_path, capsys):
    settings = [["model.widths=[8,16,32]"], [], ["model.widths=[32,64,128]"], ["data.image_size=16"],
                ["training.steps=2400"], ["training.checkpoint_every=100"], ["training.steps=600", "data.image_size=16"]]
    truth = (0.05, 3.0, 0.3)
    for i, overrides in enumerate(settings):
        cfg = make_config("default", overrides)
        run = tmp_path / "sweep" / "runs" / f"run{i}"
        (run / "scores").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(cfg.to_dict()))
        (run / "scores" / "last.json").write_text("{}")
        start = 1_000_000.0
        os.utime(run / "config.json", (start, start))
        end = start + 2 * run_seconds(cfg, *truth)  # two runs at a time: each run's share is half its span
        os.utime(run / "scores" / "last.json", (end, end))

    assert fit_estimate.main([str(tmp_path / "sweep"), "--concurrent", "2"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["runs"] == len(settings)
    fitted = out["fitted"]
    assert (fitted["step_s"], fitted["checkpoint_s"], fitted["fixed_cost"]) == pytest.approx(truth, rel=1e-3)
    assert out["mean_relative_error"]["fitted"] < 1e-4


def test_a_directory_that_is_not_a_sweep_exits_2(tmp_path, capsys):
    assert fit_estimate.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"fit_estimate: sweep_dirs: not a sweep directory (no runs/): {tmp_path}"
