"""Training objectives end to end (diffusion.objective = epsilon | v | flow): a tiny run of each trains,
is scored with its own sampler and resumes exactly; settings that do not go together are one line."""

from __future__ import annotations

import pytest

from diffrep.cli import main
from test_training import assert_resumes_exactly, tiny_run

FLOW = {"diffusion.objective": "flow", "scoring.sampler": "euler"}


@pytest.mark.parametrize("overrides, sampler", [
    ({"diffusion.objective": "v"}, "ddim5"),
    (FLOW, "euler5"),
    ({**FLOW, "model.arch": "dit", "model.patch_size": 2, "model.dit_width": 16, "model.dit_depth": 2,
      "model.dit_heads": 2}, "euler5"),
], ids=["v", "flow", "flow-dit"])
def test_a_run_of_each_objective_trains_scores_and_resumes_exactly(tmp_path, overrides, sampler):
    whole = tiny_run(tmp_path / "whole", **overrides)
    metrics = whole.metrics()
    losses = [r["loss"] for r in metrics if "loss" in r]
    assert losses[-1] < losses[0]
    assert {r["score.sampler"] for r in metrics if "score.sampler" in r} == {sampler}
    final = [r for r in metrics if "final.sampler" in r]
    assert final and final[-1]["final.sampler"] == ("euler100" if sampler.startswith("euler") else "ddpm100")
    assert_resumes_exactly(whole, tmp_path)
    if sampler.startswith("euler"):  # a flow run also scores with Heun
        assert main(["score", str(whole.path), "--checkpoints", "latest", "--sampler", "heun", "--steps", "3"]) == 0
        assert any(whole.path.joinpath("scores").glob("step_*_heun3.json"))


@pytest.mark.parametrize("settings, needle", [
    (["diffusion.objective=score"], "diffusion.objective"),
    (["diffusion.objective=flow"], "scoring.sampler: diffusion.objective flow samples with euler"),
    (["diffusion.objective=flow", "scoring.sampler=euler", "training.loss_weighting=min_snr"], "training.loss_weighting"),
    (["scoring.sampler=euler"], "scoring.sampler: diffusion.objective epsilon samples with ddim, ddpm"),
])
def test_settings_that_do_not_go_together_are_one_line(tmp_path, capsys, settings, needle):
    args = ["train", "tiny", "--run-dir", str(tmp_path / "run")] + [a for s in settings for a in ("--set", s)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and not (tmp_path / "run").exists()
