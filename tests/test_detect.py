"""Tests of diffrep.detect on exact renders (diffrep.data.render) and hand-made images.

Conventions (src/diffrep/data.py): images store 2 I - 1, background -1, a bump's peak +1;
pixel (row i, column j) has centre (o + j + 0.5, o + i + 0.5) with o = (L - N) / 2.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffrep.config import ConfigError
from diffrep.data import render
from diffrep.evaluation.detect import ACCURATE, NONE, OUTCOMES, SEVERAL, WRONG, detect, summarize

N = 32
SIGMAS = (0.5, 0.7, 1.0, 1.5, 2.0)


def images(centres, sigma=1.0, kind="bumps", **kw) -> torch.Tensor:
    """Exact [B, 1, N, N] renders of the (x, y) centres."""
    centres = torch.tensor(centres, dtype=torch.float64)
    return render(centres, kind=kind, sigma_x=sigma, sigma_y=sigma, **kw)


def threshold_for(sigma: float) -> float:
    """A threshold at which a bump of this sigma lights >= 2 pixels wherever it sits.

    At the default (half the peak) a bump narrower than ~0.85 centred on a pixel lights only
    that pixel, a speck (see test_narrow_bump_on_a_pixel_centre_is_a_speck_at_the_default).
    """
    return 0.0 if sigma >= 0.85 else -0.5 if sigma >= 0.7 else -0.8


def pairs(values) -> np.ndarray:
    """All (x, y) pairs of the values."""
    return np.array(list(itertools.product(values, values)))


# Steps of 5/6 px visit six sub-pixel phases; the centroid is worst 1 to 1.5 px from an edge
NEAR_EDGE = np.array([1.1, 1.2, 1.3, 1.4])
FRAME_VALUES = np.concatenate([np.linspace(1.0, N - 1.0, 37), NEAR_EDGE, N - NEAR_EDGE])


# ----------------------------------------------------------------------------
# Exact renders are accurate


@pytest.mark.parametrize("kind", ["bumps", "sos"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_exact_renders_are_accurate_down_to_1px_from_the_edge(kind, sigma):
    centres = pairs(FRAME_VALUES)
    det = detect(images(centres, sigma, kind), centres, kind=kind, threshold=threshold_for(sigma))
    assert (det.outcome == ACCURATE).all()
    assert (det.n_components == (1 if kind == "bumps" else 2)).all()
    error = np.abs(det.error)
    # A bump cut off by the frame edge: measured worst case 0.157 px (sigma 2, 1 px inside)
    assert error.max() < 0.2
    # Away from the edges (>= 3 sigma) the centroid is exact up to pixel sampling
    away = (centres >= 3 * sigma) & (centres <= N - 3 * sigma)
    assert error[away].max() < 0.05


@pytest.mark.parametrize("sigma", SIGMAS)
def test_exact_stripes_are_accurate_on_the_visible_axis(sigma):
    latent, offset = 44.0, 6.0  # the follow-up's hidden 44 x 44 latent space around the frame
    visible = offset + FRAME_VALUES
    hidden = np.array([0.0, 2.0, offset - 2, offset + N + 2, latent])  # >= 2 px outside
    one_axis = np.array(list(itertools.product(visible, hidden)))
    centres = np.concatenate([one_axis, one_axis[:, ::-1]])  # vertical stripes, then horizontal
    det = detect(
        images(centres, sigma, "stripes", image_size=N, latent_size=latent),
        centres,
        kind="stripes",
        image_size=N,
        latent_size=latent,
        threshold=threshold_for(sigma),
    )
    assert (det.outcome == ACCURATE).all()
    assert (det.n_components == 1).all()
    on_visible = np.concatenate([np.zeros(len(one_axis), int), np.ones(len(one_axis), int)])
    rows = np.arange(len(centres))
    assert np.isnan(det.centroid[rows, 1 - on_visible]).all()
    assert np.isnan(det.error[rows, 1 - on_visible]).all()
    error = np.abs(det.error[rows, on_visible])
    assert error.max() < 0.2
    position = centres[rows, on_visible] - offset
    assert error[(position >= 3 * sigma) & (position <= N - 3 * sigma)].max() < 0.05


@pytest.mark.parametrize("kind", ["bumps", "sos"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_periodic_exact_renders_are_accurate_everywhere(kind, sigma):
    # On the torus there is no edge: centres on and across the borders are as good as any
    centres = pairs([0.0, 0.2, 0.5, 0.9, 15.3, 31.1, 31.5, 31.8, 32.0])
    det = detect(
        images(centres, sigma, kind, periodic=True),
        centres,
        kind=kind,
        periodic=True,
        threshold=threshold_for(sigma),
    )
    assert (det.outcome == ACCURATE).all()
    assert np.abs(det.error).max() < 0.05
    assert ((det.centroid >= 0) & (det.centroid < N)).all()


def test_periodic_bump_across_the_border_is_one_component():
    centre = np.array([[0.2, 16.0]])
    image = images(centre, periodic=True)
    det = detect(image, centre, periodic=True)
    assert det.outcome[0] == ACCURATE
    assert det.n_components[0] == 1
    np.testing.assert_allclose(det.centroid[0], [0.2, 16.0], atol=0.05)
    # Without the wrap, the two halves on the left and right edges are two bumps
    assert detect(image, centre).outcome[0] == SEVERAL


def test_periodic_error_is_wrapped():
    # A bump drawn at x = 31.5 for a requested x = 0.5: 1 px away across the border, not 31
    det = detect(images([[31.5, 16.0]], periodic=True), [[0.5, 16.0]], periodic=True)
    assert det.outcome[0] == WRONG
    np.testing.assert_allclose(det.error[0], [-1.0, 0.0], atol=0.05)


def test_periodic_window_smaller_than_the_circle_keeps_its_edges():
    # L > N: the frame is a window onto the circle; its edges are not joined
    centres = np.array([[5.0, 20.0], [34.0, 6.0]])  # frame [4, 36]: 1 px and 2 px inside
    det = detect(
        images(centres, image_size=N, latent_size=40.0, periodic=True),
        centres,
        image_size=N,
        latent_size=40.0,
        periodic=True,
    )
    assert (det.outcome == ACCURATE).all()
    assert np.abs(det.error).max() < 0.2


@settings(max_examples=50, deadline=None)
@given(
    x=st.floats(2.0, 30.0),
    y=st.floats(2.0, 30.0),
    sigma=st.floats(0.7, 2.0),
    kind=st.sampled_from(["bumps", "sos"]),
)
def test_random_exact_render_is_accurate(x, y, sigma, kind):
    centre = [[x, y]]
    det = detect(images(centre, sigma, kind), centre, kind=kind, threshold=threshold_for(sigma))
    assert OUTCOMES[det.outcome[0]] == "accurate"
    assert np.abs(det.error).max() < 0.1


@settings(max_examples=50, deadline=None)
@given(x=st.floats(0.0, 32.0), y=st.floats(0.0, 32.0), sigma=st.floats(0.85, 2.0))
def test_random_periodic_bump_is_accurate_at_the_default_threshold(x, y, sigma):
    centre = [[x, y]]
    det = detect(images(centre, sigma, periodic=True), centre, periodic=True)
    assert det.outcome[0] == ACCURATE
    assert np.abs(det.error).max() < 0.05


# ----------------------------------------------------------------------------
# Several, wrong, none


@pytest.mark.parametrize("kind", ["bumps", "sos"])
def test_two_separated_bumps_or_stripes_are_several(kind):
    first, second = images([[8.0, 10.0], [24.0, 22.0]], kind=kind)
    both = torch.maximum(first, second)[None]  # sos: two vertical and two horizontal stripes
    det = detect(both, [[8.0, 10.0]], kind=kind)
    assert det.outcome[0] == SEVERAL
    assert det.n_components[0] == (2 if kind == "bumps" else 4)
    assert np.isnan(det.centroid).all() and np.isnan(det.error).all()


def test_two_bumps_summed_are_several():
    first, second = images([[8.0, 10.0], [24.0, 22.0]])
    summed = (first + 1) + (second + 1) - 1  # intensities add
    assert detect(summed[None], [[8.0, 10.0]]).outcome[0] == SEVERAL


@pytest.mark.parametrize("kind", ["bumps", "sos"])
def test_bump_2px_off_is_wrong_with_error_2(kind):
    drawn, requested = [[18.0, 13.3]], [[16.0, 13.3]]
    det = detect(images(drawn, kind=kind), requested, kind=kind)
    assert det.outcome[0] == WRONG
    np.testing.assert_allclose(det.error[0], [2.0, 0.0], atol=0.05)
    # A looser tolerance accepts it
    looser = detect(images(drawn, kind=kind), requested, kind=kind, tolerance=2.5)
    assert looser.outcome[0] == ACCURATE


def test_stripe_where_none_should_be_visible_is_several():
    latent = 44.0  # frame [6, 38]

    def outcome(drawn, condition):
        return OUTCOMES[detect(drawn, condition, kind="stripes", latent_size=latent).outcome[0]]

    condition = [[20.0, 2.0]]  # a vertical stripe; the horizontal one is hidden
    assert outcome(images(condition, kind="stripes", latent_size=latent), condition) == "accurate"
    # The model drew the horizontal stripe inside the frame too
    assert outcome(images([[20.0, 20.0]], kind="sos", latent_size=latent), condition) == "several"
    # A wide stripe (sigma 2) half a pixel outside the frame lights its first two rows: an
    # extra stripe too (at 1 px outside only one row is lit, a speck)
    peeking = [[20.0, 5.5]]
    drawn = images(peeking, sigma=2.0, kind="stripes", latent_size=latent)
    assert outcome(drawn, peeking) == "several"


def test_stripes_missing_the_visible_stripe_is_none():
    condition = [[20.0, 2.0]]  # frame [6, 38]: only the vertical stripe at x = 20 is visible
    blank = -torch.ones(1, 1, N, N)
    det = detect(blank, condition, kind="stripes", latent_size=44.0)
    assert det.outcome[0] == NONE


@pytest.mark.parametrize("kind", ["bumps", "sos", "stripes"])
def test_blank_noise_and_hot_pixel_are_none(kind):
    blank = -np.ones((1, 1, N, N))
    noise = np.clip(-1 + 0.2 * np.random.default_rng(0).standard_normal((1, 1, N, N)), -1, 1)
    hot_pixel = blank.copy()
    hot_pixel[0, 0, 12, 20] = 1.0
    conditions = [[16.0, 16.0]]
    for image in (blank, noise, hot_pixel):
        det = detect(image, conditions, kind=kind)
        assert det.outcome[0] == NONE
        assert det.n_components[0] == 0
        assert np.isnan(det.centroid).all()


def test_narrow_bump_on_a_pixel_centre_is_a_speck_at_the_default_threshold():
    # sigma 0.7 on a pixel centre: its neighbours reach I = 0.36 < 0.5, so one pixel is lit
    centre = [[16.5, 16.5]]
    image = images(centre, sigma=0.7)
    assert detect(image, centre).outcome[0] == NONE
    assert detect(image, centre, min_size=1).outcome[0] == ACCURATE
    assert detect(image, centre, threshold=-0.5).outcome[0] == ACCURATE


# ----------------------------------------------------------------------------
# Input checks and the summary


@pytest.mark.parametrize("tolerance", [0.0, -0.5])
def test_tolerance_must_be_positive(tolerance):
    with pytest.raises(ConfigError, match="tolerance: must be > 0"):
        detect(images([[16.0, 16.0]]), [[16.0, 16.0]], tolerance=tolerance)


def test_bad_kind_and_shapes_are_config_errors():
    image = images([[16.0, 16.0]])
    with pytest.raises(ConfigError, match="kind"):
        detect(image, [[16.0, 16.0]], kind="blobs")
    with pytest.raises(ConfigError, match="images"):
        detect(image, [[16.0, 16.0]], image_size=16)
    with pytest.raises(ConfigError, match="conditions"):
        detect(image, [[16.0, 16.0], [1.0, 1.0]])


def test_summarize_counts_outcomes_and_errors():
    requested = np.array([[16.0, 16.0], [10.0, 10.0], [20.0, 20.0], [8.0, 24.0]])
    drawn = images([[16.0, 16.0], [12.0, 10.0], [20.0, 20.0], [8.0, 24.0]])
    drawn[2] = -1.0  # blank: none
    drawn[3] = torch.maximum(drawn[3], images([[24.0, 8.0]])[0])  # two bumps: several
    det = detect(drawn, requested)
    assert [OUTCOMES[o] for o in det.outcome] == ["accurate", "wrong", "none", "several"]
    summary = summarize(det)
    assert summary["n"] == 4
    assert summary["accuracy"] == 0.25
    assert summary["x_accuracy"] == 0.25  # the wrong one is 2 px off in x ...
    assert summary["y_accuracy"] == 0.5  # ... but right in y
    for name in OUTCOMES:
        assert summary[f"frac_{name}"] == 0.25
    assert summary["mean_position_error"] == pytest.approx(1.0, abs=0.05)  # (0 + 2) / 2
    assert summary["median_position_error"] == pytest.approx(1.0, abs=0.05)


def test_summarize_without_located_images_has_nan_errors():
    summary = summarize(detect(-np.ones((2, 1, N, N)), [[16.0, 16.0]] * 2))
    assert summary["frac_none"] == 1.0
    assert np.isnan(summary["mean_position_error"]) and np.isnan(summary["median_position_error"])


# ----------------------------------------------------------------------------
# glyphs and bumps + stripes


def test_every_digit_glyph_rendered_exactly_is_one_accurate_glyph():
    from diffrep.data import glyph_extent

    rng = np.random.default_rng(0)
    for glyph in range(10):  # the first ten glyphs are the digits 0-9
        left, right, top, bottom = glyph_extent(glyph, 1.5)
        centres = np.stack([rng.uniform(left, 32 - right, 20), rng.uniform(top, 32 - bottom, 20)], axis=1)
        det = detect(render(torch.tensor(centres), kind="digits", glyph=glyph), centres, kind="digits")
        assert (det.n_components == 1).all(), glyph  # faint strokes do not split a glyph
        assert (det.outcome == ACCURATE).all() and np.abs(det.error).max() < 0.15, glyph


def test_two_glyphs_are_several_and_a_shifted_glyph_is_wrong():
    centres = np.array([[10.0, 10.0], [22.0, 22.0]])
    two = torch.maximum(*render(torch.tensor(centres), kind="digits", glyph=3).split(1))
    assert detect(two, centres[:1], kind="digits").outcome[0] == SEVERAL
    shifted = render(torch.tensor([[16.8, 16.0]]), kind="digits", glyph=3)
    det = detect(shifted, [[16.0, 16.0]], kind="digits")
    assert det.outcome[0] == WRONG and det.error[0, 0] == pytest.approx(0.8, abs=0.1)


def test_bumps_plus_stripes_scores_each_condition_by_its_own_rule():
    L = 44.0
    conditions = np.array([[20.0, 15.0], [20.0, 2.0], [2.0, 30.0]])  # a bump, a vertical and a horizontal stripe
    images = render(torch.tensor(conditions), kind="bumps+stripes", latent_size=L)
    det = detect(images, conditions, kind="bumps+stripes", latent_size=L)
    assert list(det.outcome) == [ACCURATE] * 3
    assert np.isnan(det.error[1, 1]) and np.isnan(det.error[2, 0])  # hidden labels are not located
    # a bump where a stripe was asked for is not a stripe, and a stripe where a bump was is not a bump
    swapped = detect(images[[1, 0]], conditions[[0, 1]], kind="bumps+stripes", latent_size=L)
    assert ACCURATE not in swapped.outcome


# ----------------------------------------------------------------------------
# The shape test: a component counts only if it has the dataset's shape


def expected_for(kind="bumps", sigma=1.0, **kw):
    """What scoring passes to `detect`: the dataset's own image of a label."""
    from diffrep.config import DataConfig
    from diffrep.data import render_for

    data = DataConfig(kind=kind, sigma=sigma, **kw)
    return lambda labels: render_for(labels, data)


@pytest.mark.parametrize("kind", ["bumps", "sos"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_exact_renders_pass_the_shape_test_down_to_1px_from_the_edge(kind, sigma):
    centres = pairs(FRAME_VALUES)
    det = detect(images(centres, sigma, kind), centres, kind=kind, threshold=threshold_for(sigma),
                 expected=expected_for(kind, sigma))
    assert (det.outcome == ACCURATE).all()


def test_exact_renders_pass_the_shape_test_on_a_torus_and_as_glyphs():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, N, (200, 2))
    det = detect(images(centres, periodic=True), centres, periodic=True, expected=expected_for(periodic=True))
    assert (det.outcome == ACCURATE).all()
    from diffrep.data import glyph_extent

    for glyph in range(10):
        left, right, top, bottom = glyph_extent(glyph, 1.5)
        centres = np.stack([rng.uniform(left, 32 - right, 20), rng.uniform(top, 32 - bottom, 20)], axis=1)
        det = detect(render(torch.tensor(centres), kind="digits", glyph=glyph), centres, kind="digits",
                     expected=expected_for("digits", glyph=glyph))
        assert (det.outcome == ACCURATE).all(), glyph


@pytest.mark.parametrize("kind", ["bumps", "sos", "stripes", "digits", "bumps+stripes"])
def test_pure_noise_is_none_with_the_shape_test(kind):
    """Pure N(0, 1) noise lights half of the pixels at the default threshold: without the shape test
    its blobs are "several bumps". Measured: none of the 51,580 components of 10,000 such images fits
    a bump with R^2 above 0.73, where the test asks for 0.8."""
    noise = torch.randn((500, 1, N, N), generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    conditions = np.full((500, 2), 16.0)
    latent = 44.0 if kind in ("stripes", "bumps+stripes") else 32.0
    det = detect(noise, conditions, kind=kind, latent_size=latent, expected=expected_for(kind, latent_size=latent))
    assert (det.outcome == NONE).all()
    if kind == "bumps":
        assert (detect(noise, conditions).outcome == SEVERAL).mean() > 0.9  # what it was without the test


def test_a_bump_on_a_grey_background_counts_and_a_wrong_shape_does_not():
    centre = [[16.0, 12.0]]
    bump = images(centre)
    grey = (bump + 1) / 2 * 0.6 + 0.3  # a full-height bump, rising from a background of 0.3
    assert detect(grey * 2 - 1, centre, expected=expected_for()).outcome[0] == ACCURATE
    square = -torch.ones(1, 1, N, N)
    square[0, 0, 10:14, 14:18] = 1.0  # a 4 x 4 block: bright, but not a bump of sigma 1
    assert detect(square, [[16.0, 12.0]]).outcome[0] == ACCURATE  # without the test: a centred blob
    assert detect(square, [[16.0, 12.0]], expected=expected_for()).outcome[0] == NONE
    faint = (bump + 1) / 2 * 0.4 * 2 - 1  # 0.4 of a bump's height: lights nothing at the default threshold
    assert detect(faint, centre, threshold=-0.8, expected=expected_for()).outcome[0] == NONE
    assert detect(faint, centre, threshold=-0.8, expected=expected_for(), shape_min_height=0.3).outcome[0] == ACCURATE


def test_shape_settings_are_checked():
    with pytest.raises(ConfigError, match=r"^shape_min_r2: must be in \[0, 1\]"):
        detect(images([[16.0, 16.0]]), [[16.0, 16.0]], shape_min_r2=1.5)
