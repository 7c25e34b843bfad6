"""The DiT backbone (model.arch = dit): shapes, hook points and their aliases, adaLN-Zero at
initialization, exact interventions, and a run that trains, is probed and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from diffrep.cli import main
from diffrep.config import ConfigError, hook_points, layer_aliases, make_config
from diffrep.diffusion import sample
from diffrep.evaluation.scoring import scoring_sampler
from diffrep.model import DiT, StopForward, build_model, sincos_positions
from test_training import assert_resumes_exactly, tiny_run

TINY_DIT = {"model.arch": "dit", "model.patch_size": 2, "model.dit_width": 16, "model.dit_depth": 3, "model.dit_heads": 2}


def inputs(cfg, n: int = 3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, cfg.data.image_size, cfg.data.image_size, generator=g)
    return x, torch.full((n,), 50), torch.rand(n, 2, generator=g) * cfg.data.latent_size


@torch.no_grad()
def test_the_dit_predicts_an_image_sized_noise_and_names_every_block():
    cfg = make_config("tiny", TINY_DIT)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, DiT) and model.HOOKS == ("embed", "block1", "written1", "block2", "written2", "block3",
                                                      "written3", "final")
    assert hook_points(cfg.model) == model.HOOKS
    assert layer_aliases(cfg.model) == {"layer4": "written1", "bottleneck": "written2"}
    x, t, labels = inputs(cfg)
    assert torch.equal(model(x, t, labels), torch.zeros_like(x))  # adaLN-Zero: the output layer starts at zero
    for p in model.final.parameters():  # any output layer: the prediction has the image's shape
        torch.nn.init.normal_(p)
    out = model(x, t, labels)
    assert out.shape == x.shape and out.abs().sum() > 0
    tokens = (cfg.data.image_size // 2) ** 2
    with model.capture(["embed", "layer4", "bottleneck", "final"]) as acts:
        model(x, t, labels)
    assert acts["embed"].shape == acts["layer4"].shape == acts["bottleneck"].shape == (3, tokens, 16)
    assert acts["final"].shape == (3, tokens, 4)  # 2 x 2 pixels per token
    with pytest.raises(ConfigError, match="block1"):
        with model.capture(["down3"]):
            pass


@torch.no_grad()
def test_an_identity_patch_is_exact_and_a_zero_patch_at_layer4_is_not_in_the_dit():
    cfg = make_config("tiny", TINY_DIT)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for block in (model.block1, model.block2, model.block3):  # non-zero gates, so that the blocks act
        torch.nn.init.normal_(block.modulation.weight, std=0.1)
    torch.nn.init.normal_(model.final.out.weight)
    x, t, labels = inputs(cfg)
    plain = model(x, t, labels)
    with model.intervene({h: (lambda a: a.clone()) for h in model.HOOKS}):
        assert torch.equal(model(x, t, labels), plain)
        images = sample(model, scoring_sampler(cfg), labels.numpy(), cfg.data.image_size, seed=2)
    assert torch.equal(sample(model, scoring_sampler(cfg), labels.numpy(), cfg.data.image_size, seed=2), images)
    with model.intervene({"layer4": torch.zeros_like}):
        assert not torch.allclose(model(x, t, labels), plain)


@torch.no_grad()
def test_written_is_what_the_blocks_added_to_the_patch_tokens_and_can_be_patched():
    cfg = make_config("tiny", TINY_DIT)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x, t, labels = inputs(cfg)
    with model.capture(["written2"]) as acts:
        model(x, t, labels)
    assert torch.equal(acts["written2"], torch.zeros_like(acts["written2"]))  # adaLN-Zero: the blocks add nothing yet
    for block in (model.block1, model.block2, model.block3):
        torch.nn.init.normal_(block.modulation.weight, std=0.1)
    torch.nn.init.normal_(model.final.out.weight)
    plain = model(x, t, labels)
    with model.capture(["embed", "block1", "block2", "written2", "layer4"], stop_early=True) as acts:
        with pytest.raises(StopForward):  # the forward pass stops after block2, which written2 reads
            model(x, t, labels)
    assert torch.equal(acts["written2"], acts["block2"] - acts["embed"]) and acts["written2"].abs().sum() > 0
    assert torch.equal(acts["layer4"], acts["block1"] - acts["embed"])  # layer4: written1 at depth 3
    recorded = acts["written2"].clone()  # a patch that writes back what it read (a copy) changes nothing
    with model.intervene({"written2": lambda _: recorded.clone()}):
        assert torch.equal(model(x, t, labels), plain)
    with model.intervene({"written2": torch.zeros_like}), model.capture(["embed", "block2"]) as acts:
        assert not torch.allclose(model(x, t, labels), plain)
    torch.testing.assert_close(acts["block2"], acts["embed"])  # block2's output is the patch tokens alone


def test_the_position_embedding_is_fixed_and_tells_every_patch_apart():
    cfg = make_config("tiny", TINY_DIT)
    model = build_model(cfg)
    assert not any("position" in name for name, _ in model.named_parameters())  # fixed, not trained
    assert "embed.position" not in model.state_dict()  # rebuilt from the config, not checkpointed
    side = cfg.data.image_size // cfg.model.patch_size
    positions = sincos_positions(side, 16)[0]
    assert torch.equal(model.embed.position[0], positions) and positions.shape == (side * side, 16)
    # a patch's embedding is nearer its own than any other patch's: the embedding names every patch
    similarity = positions @ positions.T
    assert torch.equal(similarity.argmax(dim=1), torch.arange(side * side))
    # the first quarter reads the column, the third the row (tokens go in rows of patches)
    column, row = positions[:, 0].reshape(side, side), positions[:, 8].reshape(side, side)
    assert torch.equal(column, column[:1].expand(side, side)) and torch.equal(row, row[:, :1].expand(side, side))
    assert column[0].unique().numel() == side and row[:, 0].unique().numel() == side
    learned = build_model(make_config("tiny", {**TINY_DIT, "model.dit_position": "learned"}))
    assert learned.embed.position.requires_grad and "embed.position" in learned.state_dict()


def test_a_dit_run_is_probed_and_resumes_exactly(tmp_path):
    whole = tiny_run(tmp_path / "whole", **TINY_DIT)
    records = [r for r in whole.metrics() if "probe.layer4.condition_share" in r]
    assert records and "phase.layer4" in records[-1]  # probed at written1, the DiT's layer4
    losses = [r["loss"] for r in whole.metrics() if "loss" in r]
    assert losses[-1] < losses[0]
    assert_resumes_exactly(whole, tmp_path)


@pytest.mark.parametrize("setting, needle", [
    ("model.arch=vit", "model.arch"), ("model.patch_size=3", "model.patch_size"),
    ("model.dit_width=30", "model.dit_width"), ("probe.layers=[\"down3\"]", "probe.layers"),
    ("model.dit_position=rope", "model.dit_position"),
])
def test_bad_dit_settings_are_one_line(tmp_path, capsys, setting, needle):
    args = ["train", "tiny", "--run-dir", str(tmp_path / "run"), "--set", "model.arch=dit", "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and not (tmp_path / "run").exists()
