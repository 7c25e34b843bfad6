"""Interventions on hook points (UNet.intervene) and activation patching (evaluation/patching.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffrep.cli import main
from diffrep.config import make_config
from diffrep.diffusion import sample
from diffrep.evaluation.patching import (condition_pairs, displacement_fractions, patched_sample, record_outputs,
                                         PAIR_MIN_DISTANCE)
from diffrep.evaluation.scoring import scoring_sampler
from diffrep.model import build_model
from diffrep.rundir import RunDir
from diffrep.run import train

CFG = make_config("tiny")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


def inputs(n: int = 4):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, CFG.data.image_size, CFG.data.image_size, generator=g)
    return x, torch.full((n,), 50), torch.rand(n, 2, generator=g) * CFG.data.latent_size


@torch.no_grad()
def test_a_patch_that_writes_back_what_it_read_changes_nothing_bit_for_bit(model):
    x, t, labels = inputs()
    plain = model(x, t, labels)
    every = {h: (lambda a: a.clone()) for h in model.HOOKS}
    with model.intervene(every):
        assert torch.equal(model(x, t, labels), plain)
    with model.intervene({h: (lambda a: None) for h in model.HOOKS}):  # None: keep the output
        assert torch.equal(model(x, t, labels), plain)
    conditions = np.array([[3.0, 4.0], [12.0, 9.0]])
    images = sample(model, scoring_sampler(CFG), conditions, CFG.data.image_size, seed=3)
    with model.intervene(every):  # a whole sampling run
        assert torch.equal(sample(model, scoring_sampler(CFG), conditions, CFG.data.image_size, seed=3), images)
    assert torch.equal(model(x, t, labels), plain)  # the hooks are gone after the block


@torch.no_grad()
def test_a_zero_patch_at_layer4_changes_the_output(model):
    x, t, labels = inputs()
    with model.intervene({"layer4": torch.zeros_like}):
        patched = model(x, t, labels)
    assert not torch.allclose(patched, model(x, t, labels))
    with pytest.raises(ValueError, match="shape"):
        with model.intervene({"layer4": lambda a: a[:, :1]}):
            model(x, t, labels)


@torch.no_grad()
def test_patching_the_last_layer_at_every_step_replays_the_source_run(model):
    """Patching the head (the predicted noise) with the source run's makes the target run the source
    run, bit for bit: the patch is applied at every sampling step, in order."""
    sources, targets = condition_pairs(CFG, 4)
    assert (np.linalg.norm(sources - targets, axis=1) >= PAIR_MIN_DISTANCE).all()
    source_images, outputs = record_outputs(model, CFG, sources, ["head", "layer4"])
    steps = len(scoring_sampler(CFG).timesteps)
    assert len(outputs["head"]) == len(outputs["layer4"]) == steps
    assert torch.equal(patched_sample(model, CFG, targets, "head", outputs["head"]), source_images)
    target_images = sample(model, scoring_sampler(CFG), targets, CFG.data.image_size, seed=CFG.scoring.seed)
    assert not torch.equal(target_images, source_images)


def test_displacement_fraction():
    c1, c2 = np.array([[10.0, 0.0], [0.0, 8.0]]), np.array([[0.0, 0.0], [0.0, 0.0]])
    assert np.allclose(displacement_fractions(c2, c1, c2), 0) and np.allclose(displacement_fractions(c1, c1, c2), 1)
    half = displacement_fractions(np.array([[5.0, 3.0], [np.nan, np.nan]]), c1, c2)
    assert half[0] == pytest.approx(0.5) and np.isnan(half[1])  # off-axis drift does not count; no bump: NaN


def test_the_patch_command_writes_every_checkpoint_and_layer(tmp_path, capsys):
    cfg = make_config("tiny", {"training.steps": 10, "scoring.during_training": False, "probe.during_training": False})
    run = train(cfg, RunDir.create(tmp_path / "run", cfg), quiet=True)
    assert main(["patch", str(run.path), "--checkpoints", "0,10", "--layers", "layer4,up1", "--pairs", "3"]) == 0
    out = capsys.readouterr().out
    record = json.loads(run.patching_path.read_text())
    assert list(record["checkpoints"]) == ["0", "10"] and len(record["sources"]) == 3
    for result in record["checkpoints"].values():
        assert set(result["layers"]) == {"layer4", "up1"} and result["target"]["n"] == 3
    assert out.count("\n") >= 4
    assert main(["patch", str(run.path), "--checkpoints", "3", "--layers", "layer4,up1", "--pairs", "3"]) == 0
    assert list(json.loads(run.patching_path.read_text())["checkpoints"]) == ["0", "3", "10"]  # added to the file
    for bad, needle in [(["--layers", "layer9"], "--layers"), (["--pairs", "0"], "--pairs"),
                        (["--checkpoints", "7"], "checkpoint")]:
        assert main(["patch", str(run.path), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err
