"""The conditional UNet: shapes, hook points, conditioning, label dropout, encoders."""

import pytest
import torch

from diffrep.config import ConfigError, make_config
from diffrep.config import resolve_hook
from diffrep.model import AxisShift, StopForward, UNet, build_model


def tiny_model(**overrides):
    torch.manual_seed(0)
    return build_model(make_config("tiny", overrides)).eval()


def inputs(batch=4, size=16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, size, size, generator=g)
    t = torch.tensor([0, 10, 50, 99])[:batch]
    labels = torch.tensor([[2.0, 3.0], [8.0, 8.0], [14.0, 1.0], [5.5, 12.5]])[:batch]
    return x, t, labels


def test_output_has_the_image_shape():
    x, t, labels = inputs()
    assert tiny_model()(x, t, labels).shape == x.shape


def test_every_hook_point_is_captured_with_its_resolution():
    model = tiny_model()  # widths 8, 16, 16 on 16 x 16 images
    x, t, labels = inputs()
    with model.capture(UNet.HOOKS) as acts:
        model(x, t, labels)
    shapes = {k: tuple(v.shape[1:]) for k, v in acts.items()}
    assert shapes == {
        "stem": (8, 16, 16), "down1": (8, 16, 16), "down2": (16, 8, 8), "down3": (16, 4, 4),
        "mid": (16, 4, 4), "up1": (16, 4, 4), "up2": (8, 8, 8), "up3": (8, 16, 16), "head": (1, 16, 16),
    }


def test_layer4_is_the_late_encoder_block():
    model = tiny_model()
    x, t, labels = inputs()
    with model.capture(["layer4", "down3"]) as acts:
        model(x, t, labels)
    assert torch.equal(acts["layer4"], acts["down3"])
    assert resolve_hook("bottleneck") == "mid"
    with pytest.raises(ConfigError, match="unknown hook point 'layer9'"):
        resolve_hook("layer9")


def test_stop_early_records_the_same_outputs_and_skips_the_rest():
    model = tiny_model()
    x, t, labels = inputs()
    with model.capture(["down2", "layer4", "down3"]) as full:
        model(x, t, labels)
    with model.capture(["mid"]) as later, model.capture(["down3", "layer4", "down2"], stop_early=True) as early:
        with pytest.raises(StopForward):
            model(x, t, labels)
    assert set(early) == {"down2", "down3", "layer4"}  # aliases of one module both recorded
    assert all(torch.equal(early[k], full[k]) for k in early)
    assert later == {}  # the bottleneck after layer4 never ran


def test_hooks_are_removed_after_capture():
    model = tiny_model()
    x, t, labels = inputs()
    with model.capture(["mid"]):
        pass
    assert all(not m._forward_hooks for m in model.modules())


def test_output_depends_on_x_on_y_and_on_t():
    model = tiny_model()
    x, t, labels = inputs()
    base = model(x, t, labels)
    assert not torch.allclose(base, model(x, t, labels + torch.tensor([1.0, 0.0])))
    assert not torch.allclose(base, model(x, t, labels + torch.tensor([0.0, 1.0])))
    assert not torch.allclose(base, model(x, t + 1, labels))


def test_dropped_labels_make_the_output_independent_of_the_labels():
    model = tiny_model()
    x, t, labels = inputs()
    drop = torch.tensor([True, False, True, False])
    a = model(x, t, labels, drop)
    b = model(x, t, labels + 3.0, drop)
    assert torch.allclose(a[drop], b[drop])
    assert not torch.allclose(a[~drop], b[~drop])


def test_trainable_mlp_label_encoder():
    model = tiny_model(**{"model.label_encoding": "mlp"})
    assert model.x_embed.encode is None
    x, t, labels = inputs()
    out = model(x, t, labels)
    out.sum().backward()
    assert model.x_embed.mlp[0].weight.grad.abs().sum() > 0


def test_attention_follows_the_configured_resolutions():
    model = tiny_model(**{"model.attention_resolutions": [16]})
    with_attention = [name for name in UNet.HOOKS if getattr(getattr(model, name), "attention", None) is not None]
    assert with_attention == ["down1", "mid", "up3"]  # 16 x 16 maps, plus the bottleneck always


def test_paper_preset_has_paper_widths():
    cfg = make_config("paper")
    model = build_model(cfg)
    assert cfg.model.widths == [64, 128, 256]
    assert model.down3.conv2.out_channels == 256


def test_without_skips_the_decoder_never_reads_the_encoder_features():
    x, t, labels = inputs()
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    for skips in (True, False):
        model = tiny_model(**{"model.skips": skips})
        assert model.up1.conv1.in_channels == (32 if skips else 16)  # 2 w2 with the skip, w2 without
        with model.capture(["mid"]) as acts:
            out = model(x, t, labels)
        # Another input whose bottleneck output is replaced by x's: only the skips can tell them apart.
        handle = model.mid.register_forward_hook(lambda _m, _i, _o: acts["mid"])
        try:
            swapped = model(other, t, labels)
        finally:
            handle.remove()
        assert torch.equal(swapped, out) == (not skips)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_axes_conditioning_starts_as_film_and_moves_columns_with_x_and_rows_with_y(arch):
    film = tiny_model(**{"model.arch": arch})
    axes = tiny_model(**{"model.arch": arch, "model.conditioning": "axes"})
    with torch.no_grad():  # away from the DiT's zero gates, so that every block acts
        for p in film.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    missing = axes.load_state_dict(film.state_dict(), strict=False).missing_keys
    assert missing and all(".axes." in key for key in missing)
    x, t, labels = inputs()
    assert torch.equal(axes(x, t, labels), film(x, t, labels))  # zero at initialization
    shifts = [m for m in axes.modules() if isinstance(m, AxisShift)]
    assert len(shifts) == (7 if arch == "unet" else make_config("tiny").model.dit_depth)
    shift = shifts[0]
    torch.manual_seed(3)
    for layer in (shift.columns, shift.rows):
        torch.nn.init.normal_(layer.weight)
    assert not torch.equal(axes(x, t, labels), film(x, t, labels))
    cond = axes.conditioning(t, labels, None)
    moved_x = axes.conditioning(t, labels + torch.tensor([1.0, 0.0]), None)
    moved_y = axes.conditioning(t, labels + torch.tensor([0.0, 1.0]), None)
    dx, dy = shift(moved_x) - shift(cond), shift(moved_y) - shift(cond)
    assert dx.abs().amax() > 0 and dy.abs().amax() > 0
    assert torch.allclose(dx, dx[:, :, :1, :].expand_as(dx), atol=1e-5)  # x changes the shift along the columns only
    assert torch.allclose(dy, dy[:, :, :, :1].expand_as(dy), atol=1e-5)  # y along the rows only


def test_an_unknown_conditioning_is_rejected():
    with pytest.raises(ConfigError, match="model.conditioning"):
        make_config("tiny", {"model.conditioning": "cross"})
