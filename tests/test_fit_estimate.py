"""bench/fit_estimate.py recovers the constants of diffrep.experiments.catalog.run_seconds from run directories."""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fit_estimate  # noqa: E402

from diffrep.config import make_config  # noqa: E402
from diffrep.experiments.catalog import run_seconds  # noqa: E402


def write_run(path: Path, cfg, sessions: list[tuple[float, float | None]], last_step: int | None = None) -> None:
    """A run directory holding `cfg`, a checkpoint at last_step (default: its last step) and
    provenance.json with training sessions from and to the given times (seconds)."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    (path / "checkpoints" / f"step_{last_step or cfg.training.steps:08d}.safetensors").write_bytes(b"")
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    (path / "provenance.json").write_text(json.dumps(
        {"sessions": [{"started": iso(a), "ended": iso(b) if b else None} for a, b in sessions]}))


def test_the_fit_recovers_the_constants_the_runs_took(tmp_path, capsys):
    settings = [["model.widths=[8,16,32]"], [], ["model.widths=[32,64,128]"], ["data.image_size=16"],
                ["training.steps=2400"], ["training.checkpoint_every=100"], ["training.steps=600", "data.image_size=16"]]
    truth = (0.05, 3.0, 0.3)
    start = 1_000_000
    for i, overrides in enumerate(settings):
        cfg = make_config("default", overrides)
        took = round(2 * run_seconds(cfg, *truth))  # two runs at a time: each run's share is half its time
        if i % 2:  # stopped after a third of it, resumed a day later: the pause is not training time
            sessions = [(start, start + took // 3), (start + 86_400, start + 86_400 + took - took // 3)]
        else:
            sessions = [(start, start + took)]
        write_run(tmp_path / "sweep" / "runs" / f"run{i}", cfg, sessions)
    # left out of the fit: an unfinished run (killed before its last checkpoint), and a finished run
    # whose first session was SIGKILLed (no end time: how long it trained is unknown)
    write_run(tmp_path / "sweep" / "runs" / "killed", make_config("default", []), [(start, start + 99)], last_step=500)
    write_run(tmp_path / "sweep" / "runs" / "sigkilled", make_config("default", []),
              [(start, None), (start + 500, start + 900)])

    assert fit_estimate.main([str(tmp_path / "sweep"), "--concurrent", "2"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["runs"] == len(settings)
    fitted = out["fitted"]
    assert (fitted["step_s"], fitted["checkpoint_s"], fitted["fixed_cost"]) == pytest.approx(truth, rel=1e-2)
    assert out["mean_relative_error"]["fitted"] < 1e-2


def test_a_directory_that_is_not_a_sweep_exits_2(tmp_path, capsys):
    assert fit_estimate.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"fit_estimate: sweep_dirs: not a sweep directory (no runs/): {tmp_path}"


def test_a_sweep_without_a_finished_run_exits_2(tmp_path, capsys):
    write_run(tmp_path / "sweep" / "runs" / "killed", make_config("default", []), [(0, 99)], last_step=500)
    assert fit_estimate.main([str(tmp_path / "sweep")]) == 2
    assert capsys.readouterr().err.strip() == "fit_estimate: sweep_dirs: no finished run in them to fit to"
