"""Generation scoring: the evaluation set, the pipeline under oracle denoisers, scoring in training, the CLI."""

import json

import numpy as np
import pytest
import torch

from diffrep.cli import main
from diffrep.config import make_config
from diffrep.data import BumpDataset, in_region, render
from diffrep.diffusion import NoiseSchedule
from diffrep.rundir import RunDir
from diffrep.evaluation.scoring import denoising_loss, evaluation_set, load_scores, nearest_index, score_model
from diffrep.run import train
from diffrep.training import load_model


def test_evaluation_set_is_a_grid_of_training_conditions():
    cfg = make_config("default", {"data.dx": 1.0, "data.dy": 1.0})
    ev = evaluation_set(cfg)
    assert ev.names == ["train"]
    # 8 x 8 cell centres 2, 6, ..., 30 are lattice points themselves (dx = 1).
    expected = np.stack(np.meshgrid(np.arange(2, 32, 4), np.arange(2, 32, 4)), -1).reshape(-1, 2)
    np.testing.assert_array_equal(ev.conditions, expected)


def test_evaluation_set_has_every_heldout_region_and_the_unseen_lattice():
    holdout = [{"kind": "square", "x": 16, "y": 16, "width": 4}, {"kind": "band", "axis": "x", "x": 4, "width": 20}]
    cfg = make_config("default", {"data.dx": 1.0, "data.dy": 1.0, "data.holdout": holdout, "data.keep_fraction": 0.5})
    ev = evaluation_set(cfg)
    assert ev.names == ["train", "heldout_0", "heldout_1", "unseen"]
    dataset = BumpDataset(cfg.data)
    square = ev.conditions[ev.group == 1]
    assert len(square) == 25  # the whole 5 x 5 square, fewer than heldout_max = 64
    assert in_region(square, cfg.data.holdout[0]).all()
    band = ev.conditions[ev.group == 2]
    assert len(band) == 64 and in_region(band, cfg.data.holdout[1]).all()  # 11 x 33 = 363, spread to 64
    train_set = {tuple(c) for c in dataset.train_conditions}
    assert all(tuple(c) in train_set for c in ev.conditions[ev.group == 0])
    assert not any(tuple(c) in train_set for c in ev.conditions[ev.group == 3])


class ConditionalOracle(torch.nn.Module):
    """The exact noise predictor for a dataset holding one image per label: `draw(labels)`."""

    def __init__(self, schedule, draw):
        super().__init__()
        self.schedule, self.draw = schedule, draw
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels):
        ab = self.schedule.alpha_bar(t.cpu(), x)
        return (x - ab.sqrt() * self.draw(labels)) / (1 - ab).sqrt()


@pytest.mark.parametrize(
    "draw, outcome",
    [
        (lambda labels: render(labels), "accurate"),
        (lambda labels: render(labels + torch.tensor([2.0, 0.0])), "wrong"),
        (lambda labels: torch.maximum(render(labels), render(labels.flip(1))), "several"),
        (lambda labels: -torch.ones(len(labels), 1, 32, 32), "none"),
    ],
    ids=["exact", "shifted_2px", "two_bumps", "blank"],
)
def test_scoring_pipeline_under_oracle_denoisers(draw, outcome):
    cfg = make_config("default", {"scoring.grid": 4})
    # Diagonal conditions would put the mirrored bump on top of the first one: use a grid off the diagonal.
    model = ConditionalOracle(NoiseSchedule(cfg.diffusion), draw)
    summary, per_sample, _ = score_model(model, cfg)
    stats = summary["groups"]["train"]
    off_diagonal = per_sample["conditions"][:, 0] != per_sample["conditions"][:, 1]
    if outcome == "several":
        assert (per_sample["outcome"][off_diagonal] == 1).all()
    else:
        assert stats[f"frac_{outcome}"] == 1.0
    if outcome == "accurate":
        assert stats["median_position_error"] < 0.1
    if outcome == "wrong":
        np.testing.assert_allclose(per_sample["error"][:, 0], 2.0, atol=0.1)
        assert stats["y_accuracy"] == 1.0 and stats["x_accuracy"] == 0.0


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    cfg = make_config("tiny")
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("s") / "run", cfg), quiet=True)


def test_training_scores_every_checkpoint_into_metrics_and_files(scored_run):
    steps = scored_run.checkpoint_steps()
    score_lines = [r for r in scored_run.metrics() if "score.sampler" in r]
    assert [r["step"] for r in score_lines] == steps
    assert all(r["score.sampler"] == "ddim5" for r in score_lines)
    records = load_scores(scored_run, "ddim5")
    assert [r["step"] for r in records] == steps
    fractions = [records[-1]["groups"]["train"][f"frac_{k}"] for k in ("none", "several", "wrong", "accurate")]
    assert sum(fractions) == pytest.approx(1.0)
    with np.load(scored_run.path / "scores" / f"step_{steps[-1]:08d}_ddim5.npz", allow_pickle=False) as npz:
        assert npz["conditions"].shape == (9, 2) and npz["outcome"].shape == (9,)
    assert (scored_run.path / "scores" / f"step_{steps[-1]:08d}_ddim5.png").stat().st_size > 0


def test_score_command_writes_results_and_a_curve(scored_run, capsys):
    assert main(["score", str(scored_run.path), "--checkpoints", "0,40", "--steps", "3", "--tolerance", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "curve_ddim3.png" in out
    record = json.loads((scored_run.path / "scores" / "step_00000040_ddim3.json").read_text())
    assert record["tolerance"] == 1.0 and record["sampler"] == "ddim3"
    assert (scored_run.path / "scores" / "curve_ddim3.png").exists()


def test_the_default_sample_draws_what_scoring_counts(scored_run, monkeypatch, capsys):
    """`diffrep sample` at the evaluation conditions, with no sampler option, draws exactly the images
    that scoring scored (the run's sampler, steps, eta, seed and weights), and names its file and
    title after them; other settings are named in both."""
    import diffrep.report.samples as samples

    cfg = scored_run.config()
    step = scored_run.checkpoint_steps()[-1]
    _, _, scored = score_model(load_model(scored_run, step), cfg)
    drawn = {}
    monkeypatch.setattr(samples, "save_sample_grid", lambda images, conditions, path, title, *a: drawn.update(
        images=images, path=path, title=title))
    at = [f"{x:g},{y:g}" for x, y in evaluation_set(cfg).conditions]
    assert main(["sample", str(scored_run.path), *[f"--at={p}" for p in at]]) == 0
    assert torch.equal(drawn["images"], scored)
    assert drawn["path"].name == f"step_{step:08d}_ddim5_seed0.png" and "DDIM 5 steps, eta 1" in drawn["title"]
    assert main(["sample", str(scored_run.path), "--eta", "0", "--steps", "3", "--weights", "raw"]) == 0
    assert drawn["path"].name == f"step_{step:08d}_ddim3eta0_raw_seed0.png" and "DDIM 3 steps, eta 0" in drawn["title"]


@pytest.mark.parametrize(
    "args, names",
    [
        (["score", "/nonexistent/run"], "RUN_DIR"),
        (["score", "{run}", "--checkpoints", "7"], "--checkpoint"),
        (["score", "{run}", "--checkpoints", "zero"], "--checkpoint"),
        (["score", "{run}", "--tolerance", "0"], "scoring.tolerance"),
        (["score", "{run}", "--tolerance", "-1"], "scoring.tolerance"),
        (["score", "{run}", "--steps", "0"], "scoring.sampler_steps"),
    ],
)
def test_score_bad_input_is_one_line_and_exit_2(scored_run, capsys, args, names):
    before = sorted(p.name for p in (scored_run.path / "scores").iterdir())
    code = main([a.format(run=scored_run.path) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and names in err and "Traceback" not in err
    assert sorted(p.name for p in (scored_run.path / "scores").iterdir()) == before


def test_frame_group_is_a_grid_of_2d_lattice_points_in_the_frame_trained_on_or_not():
    cfg = make_config("default", {"data.kind": "stripes", "data.latent_size": 44.0, "data.x_max": 44.0,
                                  "data.y_max": 44.0, "scoring.grid": 4, "scoring.frame_grid": True})
    ev = evaluation_set(cfg)
    assert ev.names[-1] == "frame"
    frame = ev.conditions[ev.group == len(ev.names) - 1]
    # cell centres 6 + 4, 12, 20, 28 snapped to the 0.5 lattice: the 16 pairs of 10, 18, 26, 34
    np.testing.assert_array_equal(np.unique(frame[:, 0]), [10.0, 18.0, 26.0, 34.0])
    assert len(frame) == 16
    assert not any(tuple(c) in {tuple(t) for t in BumpDataset(cfg.data).conditions} for c in frame)  # compositions
    assert "frame" not in evaluation_set(make_config("default")).names  # off by default


@pytest.mark.parametrize("draw, zero", [(lambda labels: render(labels), True),
                                        (lambda labels: render(labels + torch.tensor([2.0, 0.0])), False)],
                         ids=["exact", "shifted_2px"])
def test_denoising_loss_is_zero_for_the_exact_denoiser_only(draw, zero):
    cfg = make_config("default", {"scoring.grid": 4})
    model = ConditionalOracle(NoiseSchedule(cfg.diffusion), draw)
    conditions = evaluation_set(cfg).conditions
    loss = denoising_loss(model, cfg, conditions)
    assert loss.shape == (len(conditions),)
    assert (loss < 1e-9).all() if zero else (loss > 1e-4).all()  # shifted 2 px: ~7e-4 (a bump is a few of 1,024 pixels)
    summary, _, _ = score_model(model, cfg)
    assert summary["groups"]["train"]["denoise_loss"] == pytest.approx(float(loss.mean()), rel=1e-6)


def test_nearest_index_is_the_argmin_with_the_lowest_index_among_ties():
    rng = np.random.default_rng(0)
    for _ in range(100):
        points = np.unique(np.round(rng.uniform(0, 10, (rng.integers(1, 200), 2)) * 2) / 2, axis=0)
        rng.shuffle(points)  # ties must go to the lowest index, not to the k-d tree's order
        targets = np.round(rng.uniform(-1, 11, (40, 2)) * 4) / 4  # many exactly equidistant targets
        expected = np.argmin(((targets[:, None] - points[None]) ** 2).sum(-1), axis=1)
        assert np.array_equal(nearest_index(points, targets), expected)


def test_the_evaluation_set_of_a_huge_lattice_needs_no_distance_table():
    # 1,600 x 1,600 = 2.56 M training conditions and a 64 x 64 grid: a full distance table would be 168 GB.
    cfg = make_config("default", {"data.dx": 0.02, "data.dy": 0.02, "scoring.grid": 64})
    ev = evaluation_set(cfg)
    assert ev.names == ["train"] and len(ev.conditions) == 64 * 64
    assert np.allclose(ev.conditions[:2], [[0.24, 0.24], [0.74, 0.24]])  # cell centres 0.25, 0.75 snapped to 0.02 steps
