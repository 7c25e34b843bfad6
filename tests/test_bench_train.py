"""bench/bench_train.py's measurement: rounds, runs side by side, and a failing run that must not hang."""

import math
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_train  # noqa: E402

from diffrep.config import make_config  # noqa: E402


def test_rounds_of_side_by_side_runs_sum_the_runs_and_take_medians():
    cfg = make_config("tiny", [])
    m = bench_train.measure(cfg, torch.device("cpu"), steps=2, warmup=1, matmul_size=64, matmul_repeats=1,
                            runs=2, rounds=3)
    assert (m["runs"], m["rounds"], m["threads_per_run"]) == (2, 3, max(1, torch.get_num_threads() // 2))
    assert len(m["fraction_by_round"]) == 3
    assert m["fraction_of_matmul"] == pytest.approx(statistics.median(m["fraction_by_round"]), abs=1e-4)
    assert m["step_s_min"] <= m["step_s"] <= m["step_s_max"]
    # two runs each at least as fast as the slowest step: their summed rate is above one run's
    assert m["train_gflops"] > m["flops_per_step"] / m["step_s_max"] / 1e9
    assert m["images_per_s"] > m["batch_size"] / m["step_s_max"]
    assert all(math.isfinite(f) and f > 0 for f in m["fraction_by_round"])


def test_a_run_that_fails_side_by_side_is_reported_not_waited_for():
    class Unbuildable:
        def to_dict(self):
            return {"nonsense": 1}

    with pytest.raises(RuntimeError, match="side-by-side run failed: ConfigError: nonsense"):
        with bench_train.side_by_side_runs(Unbuildable(), runs=2, threads=1, warmup=1, steps=2) as block:
            block()


@pytest.mark.parametrize("flag, low", [("--runs", 1), ("--rounds", 1), ("--warmup", 0)])
def test_bad_counts_exit_2_with_one_line(flag, low, capsys):
    assert bench_train.main([f"{flag}={low - 1}"]) == 2
    assert capsys.readouterr().err == f"bench_train: {flag}: must be an integer >= {low} (got {low - 1})\n"


def test_the_full_scale_cost_counts_each_part_of_a_run(capsys, tmp_path):
    import bench_full_cost

    cfg = make_config("tiny", {"scoring.final_ddpm": True, "probe.draws": 2})
    step, forward = bench_full_cost.network_flops(cfg)
    assert step > 2 * cfg.training.batch_size * forward > 0  # a batch's backward costs more than its forward
    # the same count as bench_train's training step, attention (the tiny UNet has some) included
    trainer = bench_train.Trainer(cfg, bench_train.RunDir(tmp_path), torch.device("cpu"))
    assert step == bench_train.count_step_flops(trainer)[0]
    parts = bench_full_cost.run_flops(cfg, {})
    checkpoints = len(bench_full_cost.checkpoint_schedule(cfg.training.steps, cfg.training.checkpoint_log_points,
                                                      cfg.training.checkpoint_every))
    conditions = len(bench_full_cost.evaluation_set(cfg).conditions)
    assert parts["training"] == cfg.training.steps * step
    assert parts["probing"] == checkpoints * cfg.probe.grid**2 * 2 * forward
    # every checkpoint with the curves' sampler, the last again with DDPM over all T steps
    assert parts["scoring"] == conditions * forward * (checkpoints * cfg.scoring.sampler_steps + cfg.diffusion.timesteps)
    assert bench_full_cost.main(["--scale", "tiny", "--experiments", "phases,torus"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["phases", "torus", "all"]
    assert bench_full_cost.main(["--scale", "tiny", "--experiments", "nope"]) == 2
