"""Tests of diffrep.data against hand computations.

Conventions (src/diffrep/data.py): labels live in [0, L]^2, the N x N frame is centred in it
with offset o = (L - N) / 2; pixel (row i, column j) has centre (o + j + 0.5, o + i + 0.5);
x runs along columns, y along rows. Images store 2 I - 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffrep import data
from diffrep.config import ConfigError, make_config
from diffrep.data import BumpDataset, lattice, render

ATOL = 1e-6


def img(x, y, **kw) -> np.ndarray:
    """One rendered [N, N] image of the label (x, y)."""
    return render(torch.tensor([[x, y]], dtype=torch.float64), **kw)[0, 0].numpy()


def dataset(**overrides) -> BumpDataset:
    # The hand counts below are for the unit lattice (dx = dy = 1), not the default preset's 0.5.
    return BumpDataset(make_config("default", {"data.dx": 1.0, "data.dy": 1.0,
                                               **{f"data.{k}": v for k, v in overrides.items()}}).data)


# ----------------------------------------------------------------------------
# lattice


def test_lattice_unit_step_has_33_integer_points():
    xs = lattice(0, 32, 1)
    assert len(xs) == 33  # 0, 1, ..., 32
    np.testing.assert_array_equal(xs, np.arange(33.0))


def test_lattice_tenth_step_reaches_hi_without_drift():
    xs = lattice(0, 32, 0.1)
    assert len(xs) == 321  # 32 / 0.1 = 320 steps -> 321 points
    assert abs(xs[-1] - 32.0) < 1e-9
    assert abs(xs[123] - 12.3) < 1e-9  # integer multiples: no accumulated error


def test_lattice_stops_at_or_below_hi():
    # 1 / 0.3 = 3.33 -> 3 steps -> 0, .3, .6, .9 (1.2 > 1 is excluded)
    np.testing.assert_allclose(lattice(0, 1, 0.3), [0.0, 0.3, 0.6, 0.9], atol=1e-12)
    # a nonzero lo: 2, 2.5, 3
    np.testing.assert_allclose(lattice(2, 3, 0.5), [2.0, 2.5, 3.0], atol=1e-12)


# ----------------------------------------------------------------------------
# render: bumps


def test_render_shape_dtype_and_range():
    out = render(torch.tensor([[16.5, 10.5], [3.0, 4.0], [30.0, 1.0]]))
    assert out.shape == (3, 1, 32, 32)
    assert out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_bump_peaks_at_pixel_whose_centre_is_the_label():
    # (16.5, 10.5) is the centre of column 16, row 10 -> I = 1 -> 2 I - 1 = +1
    im = img(16.5, 10.5)
    assert abs(im[10, 16] - 1.0) < ATOL
    assert np.unravel_index(np.argmax(im), im.shape) == (10, 16)
    # x is the column direction: one column right (x distance 1): I = exp(-1/2)
    assert abs(im[10, 17] - (2 * math.exp(-0.5) - 1)) < ATOL
    # one row down (y distance 1): same value
    assert abs(im[11, 16] - (2 * math.exp(-0.5) - 1)) < ATOL


def test_bump_far_background_is_minus_one():
    im = img(16.5, 10.5)
    # row 31 col 0: distance^2 = 16^2 + 21^2 -> I ~ exp(-348) ~ 0 -> 2 I - 1 = -1
    assert abs(im[31, 0] + 1.0) < ATOL
    # every pixel at distance >= 6 (I <= exp(-18) ~ 1.5e-8) is -1 within 1e-6
    jj, ii = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
    far = (jj - 16.5) ** 2 + (ii - 10.5) ** 2 >= 36
    assert np.all(np.abs(im[far] + 1.0) < ATOL)


def test_bump_on_pixel_corner_is_symmetric_2x2():
    # (16, 16): rows 15, 16 and cols 15, 16 have centres 15.5, 16.5, at distance 0.5 on each
    # axis -> I = exp(-(0.25 + 0.25) / 2) = exp(-0.25) -> 2 exp(-0.25) - 1 = 0.557602
    im = img(16.0, 16.0)
    expected = 2 * math.exp(-0.25) - 1
    np.testing.assert_allclose(im[15:17, 15:17], np.full((2, 2), expected), atol=ATOL)
    assert abs(expected - 0.557602) < 1e-6
    assert im.max() == pytest.approx(expected, abs=ATOL)


def test_bump_off_centre_pixel_value_sigma_2():
    # bump at (5.5, 7.5), sigma 2; pixel row 7, col 8 has centre (8.5, 7.5):
    # dx = 3, dy = 0 -> I = exp(-9 / (2 * 4)) = exp(-9/8) = 0.324652 -> 2 I - 1 = -0.350695
    im = img(5.5, 7.5, sigma_x=2.0, sigma_y=2.0)
    assert abs(im[7, 8] - (2 * math.exp(-9 / 8) - 1)) < ATOL
    # row 9, col 6: centre (6.5, 9.5): dx = 1, dy = 2 -> I = exp(-5/8)
    assert abs(im[9, 6] - (2 * math.exp(-5 / 8) - 1)) < ATOL


def test_bump_transpose_symmetry_x_is_columns():
    # swapping x and y transposes the image
    np.testing.assert_allclose(img(5.3, 20.7), img(20.7, 5.3).T, atol=ATOL)
    # and the bump at (5.5, 20.5) sits at row 20, column 5 (not row 5, column 20)
    im = img(5.5, 20.5)
    assert abs(im[20, 5] - 1.0) < ATOL
    assert abs(im[5, 20] + 1.0) < ATOL


def test_bump_mirror_symmetry():
    # column j (centre j + .5) flipped is column 31 - j (centre 31.5 - j); its distance to
    # 32 - x is |31.5 - j - 32 + x| = |j + .5 - x|: fliplr(bump at (x, y)) = bump at (32 - x, y).
    # Labels are binary fractions so that x, 32 - x are exact in float32 (render's precision).
    x, y = 7.25, 12.625
    np.testing.assert_allclose(np.fliplr(img(x, y)), img(32 - x, y), atol=ATOL)
    np.testing.assert_allclose(np.flipud(img(x, y)), img(x, 32 - y), atol=ATOL)


def test_anisotropic_sigma_row_vs_column_profile():
    # sigma_x = 2 along columns, sigma_y = 0.5 along rows, bump at the centre of (16, 16)
    im = img(16.5, 16.5, sigma_x=2.0, sigma_y=0.5)
    for k in (1, 2, 3):
        # along row 16, k columns away: I = exp(-k^2 / (2 * 4)) = exp(-k^2 / 8)
        assert abs(im[16, 16 + k] - (2 * math.exp(-k * k / 8) - 1)) < ATOL
        # along column 16, k rows away: I = exp(-k^2 / (2 * 0.25)) = exp(-2 k^2)
        assert abs(im[16 + k, 16] - (2 * math.exp(-2 * k * k) - 1)) < ATOL
    # k = 1: row neighbour 2 exp(-1/8) - 1 = 0.765 is much brighter than column neighbour -0.729
    assert im[16, 17] > 0.76 and im[17, 16] < -0.72


def test_dataset_render_uses_per_axis_sigma_and_falls_back_to_sigma():
    ds = dataset(sigma_x=2.0, sigma_y=0.5)
    out = ds.render(np.array([[16.5, 16.5]]))[0, 0].numpy()
    np.testing.assert_allclose(out, img(16.5, 16.5, sigma_x=2.0, sigma_y=0.5), atol=ATOL)
    # sigma = 1.5 with sigma_x / sigma_y unset: pixel one column over has I = exp(-1 / 4.5)
    ds = dataset(sigma=1.5)
    out = ds.render(np.array([[16.5, 16.5]]))[0, 0].numpy()
    assert abs(out[16, 17] - (2 * math.exp(-1 / 4.5) - 1)) < ATOL
    assert abs(out[17, 16] - (2 * math.exp(-1 / 4.5) - 1)) < ATOL


# ----------------------------------------------------------------------------
# render: periodic


def test_periodic_wraps_around_left_edge():
    # bump at (0.5, 16.5), row 16: column 0 (centre 0.5) d = 0; column 1 (1.5) d = 1;
    # column 31 (31.5) d = 31, wrapped on a circle of 32 -> 1; column 30 -> 2 like column 2
    im = img(0.5, 16.5, periodic=True)
    assert abs(im[16, 0] - 1.0) < ATOL
    assert abs(im[16, 1] - (2 * math.exp(-0.5) - 1)) < ATOL
    assert abs(im[16, 31] - im[16, 1]) < ATOL
    assert abs(im[16, 30] - (2 * math.exp(-2) - 1)) < ATOL
    assert abs(im[16, 30] - im[16, 2]) < ATOL


def test_not_periodic_does_not_wrap():
    im = img(0.5, 16.5, periodic=False)
    assert abs(im[16, 31] + 1.0) < ATOL  # d = 31 -> I ~ exp(-480) -> -1
    assert abs(im[16, 1] - (2 * math.exp(-0.5) - 1)) < ATOL


def test_periodic_labels_one_period_apart_render_identically():
    # x and x + 32 (and y and y - 32) are the same point on the torus
    a = img(3.25, 7.75, periodic=True)
    np.testing.assert_allclose(img(35.25, 7.75, periodic=True), a, atol=ATOL)
    np.testing.assert_allclose(img(3.25, 7.75 - 32, periodic=True), a, atol=ATOL)
    # a bump at (32, 16) with wrapping: columns 0 and 31 are both 0.5 away
    b = img(32.0, 16.0, periodic=True)
    assert abs(b[15, 0] - b[15, 31]) < ATOL
    assert abs(b[15, 0] - (2 * math.exp(-0.25) - 1)) < ATOL


def test_periodic_period_is_the_latent_size_not_the_image_size():
    # L = 44, N = 32, offset 6. sos with y far away (gy ~ 0 on every row) shows gx - 1.
    # Label x = 41: column 31 (centre 37.5) d = 3.5; column 0 (centre 6.5) d = 34.5, wrapped
    # on a circle of 44 -> 9.5 -> gx = exp(-45.1) ~ 0 (a period of 32 would give 2.5 ->
    # exp(-3.125) = 0.044).
    im = img(41.0, 0.0, kind="sos", latent_size=44.0, periodic=True)
    assert abs(im[0, 31] - (math.exp(-3.5**2 / 2) - 1)) < ATOL
    assert abs(im[0, 0] + 1.0) < ATOL


# ----------------------------------------------------------------------------
# render: sums of stripes


def test_sos_crossing_single_stripe_and_background():
    # crossing at (16.5, 10.5): row 10, col 16 has gx = gy = 1 -> I = 1 -> +1
    im = img(16.5, 10.5, kind="sos")
    assert abs(im[10, 16] - 1.0) < ATOL
    # on the vertical stripe, far from the horizontal one: col 16, row 30 -> I = 1/2 -> 0
    assert abs(im[30, 16] - 0.0) < ATOL
    # on the horizontal stripe, far from the vertical one: row 10, col 0 -> 0
    assert abs(im[10, 0] - 0.0) < ATOL
    # far from both: row 30, col 0 -> -1
    assert abs(im[30, 0] + 1.0) < ATOL
    # one column off the vertical stripe on a far row: I = exp(-1/2) / 2 -> exp(-1/2) - 1
    assert abs(im[30, 17] - (math.exp(-0.5) - 1)) < ATOL


# ----------------------------------------------------------------------------
# stripes: the hidden 44 x 44 latent space


def stripes(**overrides) -> BumpDataset:
    return dataset(kind="stripes", latent_size=44.0, x_max=44.0, y_max=44.0, **overrides)


def test_stripes_keeps_labels_with_exactly_one_coordinate_in_frame():
    # offset (44 - 32) / 2 = 6; the frame covers labels [6, 38].
    # Lattice 0..44 step 1: 45 values, 33 inside (6..38), 12 outside (0..5, 39..44).
    # Exactly one inside: 33 * 12 (x in, y out) + 12 * 33 (x out, y in) = 792.
    ds = stripes()
    assert len(ds.conditions) == 792
    assert len(ds) == 792
    inside = (ds.conditions >= 6) & (ds.conditions <= 38)
    assert np.all(inside[:, 0] != inside[:, 1])
    # both frame edges count as inside: (6, 0) and (38, 44) are kept, (6, 6) and (5, 0) are not
    kept = {tuple(c) for c in ds.conditions}
    assert (6.0, 0.0) in kept and (38.0, 44.0) in kept
    assert (6.0, 6.0) not in kept and (5.0, 0.0) not in kept


def test_stripe_with_x_outside_frame_is_a_horizontal_stripe():
    ds = stripes()
    # x = 0: nearest column centre is 6.5 -> gx <= exp(-21.1) ~ 7e-10, invisible.
    # y = 20.3: row i has centre 6.5 + i; row floor(20.3 - 6) = 14 (centre 20.5, d = 0.2)
    im = ds.render(np.array([[0.0, 20.3]]))[0, 0].numpy()
    np.testing.assert_allclose(im, np.repeat(im[:, :1], 32, axis=1), atol=ATOL)  # rows constant
    assert int(np.argmax(im[:, 0])) == 14
    # a lone stripe has I = gy / 2, so its peak is exp(-0.04 / 2) - 1 = -0.0198, not +1
    assert abs(im[14, 0] - (math.exp(-0.02) - 1)) < ATOL
    assert abs(im[0, 0] + 1.0) < ATOL  # row 0, centre 6.5, d = 13.8


def test_stripe_with_y_outside_frame_is_a_vertical_stripe():
    ds = stripes()
    # y = 44: nearest row centre 37.5, d = 6.5 -> invisible. x = 30.6 -> column floor(24.6) = 24
    im = ds.render(np.array([[30.6, 44.0]]))[0, 0].numpy()
    np.testing.assert_allclose(im, np.repeat(im[:1, :], 32, axis=0), atol=ATOL)  # columns const.
    assert int(np.argmax(im[0])) == 24
    assert abs(im[0, 24] - (math.exp(-0.01 / 2) - 1)) < ATOL  # centre 30.5, d = 0.1


def test_stripes_frame_edge_classification_is_robust_to_float_lattices():
    # Lattice 0.2, 0.4, ..., 44: 220 values, 161 in [6, 38] (6.0, 6.2, ..., 38.0), 59 outside
    # -> 2 * 161 * 59 = 18998 labels, none with both coordinates in the frame.
    ds = stripes(x_min=0.2, y_min=0.2, dx=0.2, dy=0.2)
    c = ds.conditions
    both_inside = ((c >= 6 - 1e-9) & (c <= 38 + 1e-9)).all(axis=1)
    assert not both_inside.any()
    assert len(c) == 18998


# ----------------------------------------------------------------------------
# the lattice of conditions


def test_default_lattice_is_33x33_with_x_fastest():
    ds = dataset()
    assert ds.conditions.shape == (1089, 2)  # 33 * 33
    np.testing.assert_array_equal(ds.conditions[0], [0, 0])
    np.testing.assert_array_equal(ds.conditions[1], [1, 0])  # x varies fastest
    np.testing.assert_array_equal(ds.conditions[33], [0, 1])
    np.testing.assert_array_equal(ds.conditions[-1], [32, 32])
    assert len(ds) == 1089 and ds.train.all() and not ds.heldout.any()


def test_imbalanced_lattice_counts():
    # dx = 0.5: 65 x values; dy = 1: 33 y values -> 2145
    assert len(dataset(dx=0.5).conditions) == 65 * 33 == 2145
    # dx = 0.1, dy = 1 (the paper's imbalanced set): 321 * 33 = 10593
    assert len(dataset(dx=0.1).conditions) == 10593


def test_lattice_over_max_points_raises():
    # dx = dy = 0.01 on [0, 32]: 3201^2 = 10,246,401 > 4,000,000 (validate allows 3201 per axis)
    with pytest.raises(ConfigError, match="data.dx"):
        dataset(dx=0.01, dy=0.01)


def test_lattice_limit_boundary(monkeypatch):
    monkeypatch.setattr(data, "MAX_LATTICE_POINTS", 1089)
    assert len(dataset().conditions) == 1089  # exactly at the limit: allowed
    monkeypatch.setattr(data, "MAX_LATTICE_POINTS", 1088)
    with pytest.raises(ConfigError):
        dataset()


# ----------------------------------------------------------------------------
# holdout regions (closed intervals |x - x0| <= width / 2)


def held(*regions, **overrides) -> BumpDataset:
    return dataset(holdout=[dict(r) for r in regions], **overrides)


def check_split(ds: BumpDataset, n_heldout: int) -> None:
    assert ds.heldout.sum() == n_heldout
    assert len(ds.heldout_conditions) == n_heldout
    assert len(ds) == len(ds.conditions) - n_heldout  # keep_fraction 1: train = the rest
    assert not (ds.train & ds.heldout).any()


def test_square_holdout_5x5():
    # width 4 at (16, 16): |x - 16| <= 2 and |y - 16| <= 2 -> x, y in {14..18} -> 25
    ds = held({"kind": "square", "width": 4, "x": 16, "y": 16})
    check_split(ds, 25)
    h = ds.heldout_conditions
    assert np.all(np.abs(h - 16) <= 2)
    assert {tuple(p) for p in h} == {(x, y) for x in range(14, 19) for y in range(14, 19)}


def test_band_width_1_holds_out_one_column_of_labels():
    # |x - 16| <= 0.5 -> x = 16 only -> 33 labels
    ds = held({"kind": "band", "axis": "x", "x": 16, "width": 1})
    check_split(ds, 33)
    assert np.all(ds.heldout_conditions[:, 0] == 16)


def test_band_interval_is_closed():
    # dx = 0.5: |x - 16| <= 0.5 -> x in {15.5, 16, 16.5}, endpoints included -> 3 * 33 = 99
    ds = held({"kind": "band", "axis": "x", "x": 16, "width": 1}, dx=0.5)
    check_split(ds, 99)
    assert sorted(set(ds.heldout_conditions[:, 0])) == [15.5, 16.0, 16.5]


def test_band_width_3_5():
    # |x - 16| <= 1.75 -> x in [14.25, 17.75] -> x = 15, 16, 17 -> 99
    ds = held({"kind": "band", "axis": "x", "x": 16, "width": 3.5})
    check_split(ds, 99)
    assert sorted(set(ds.heldout_conditions[:, 0])) == [15.0, 16.0, 17.0]


def test_band_axis_y_holds_out_rows_of_labels():
    # axis y, centre y = 10, width 3.5 -> y = 9, 10, 11 for every x -> 99; x centre ignored
    ds = held({"kind": "band", "axis": "y", "x": 0, "y": 10, "width": 3.5})
    check_split(ds, 99)
    assert sorted(set(ds.heldout_conditions[:, 1])) == [9.0, 10.0, 11.0]
    assert len(set(ds.heldout_conditions[:, 0])) == 33


def test_cross_holdout():
    # x or y in [13, 19]: 7 values each -> 7 * 33 + 7 * 33 - 7 * 7 = 413
    ds = held({"kind": "cross", "x": 16, "y": 16, "width": 6})
    check_split(ds, 413)
    h = ds.heldout_conditions
    assert np.all((np.abs(h[:, 0] - 16) <= 3) | (np.abs(h[:, 1] - 16) <= 3))


def test_edge_square_holdout():
    # centre (2, 16), width 4: x in [0, 4] (5 values), y in [14, 18] (5 values) -> 25
    ds = held({"kind": "square", "x": 2, "y": 16, "width": 4})
    check_split(ds, 25)
    assert sorted(set(ds.heldout_conditions[:, 0])) == [0.0, 1.0, 2.0, 3.0, 4.0]
    # centred on the corner (0, 0): x, y in [0, 2] -> 9
    check_split(held({"kind": "square", "x": 0, "y": 0, "width": 4}), 9)


def test_union_of_regions_counts_overlap_once():
    # square (25) + band axis y at y = 16 (33, every x); overlap: y = 16, x in 14..18 -> 5
    # -> 25 + 33 - 5 = 53
    ds = held(
        {"kind": "square", "x": 16, "y": 16, "width": 4},
        {"kind": "band", "axis": "y", "y": 16, "width": 1},
    )
    check_split(ds, 53)
    # the same region twice is still 25
    sq = {"kind": "square", "x": 16, "y": 16, "width": 4}
    check_split(held(sq, sq), 25)


def test_holdout_covering_everything_raises_naming_holdout():
    with pytest.raises(ConfigError, match=r"data\.holdout"):
        held({"kind": "square", "x": 16, "y": 16, "width": 100})


# ----------------------------------------------------------------------------
# keep_fraction (lambda)


def test_keep_fraction_half_rounds_half_to_even():
    # 0.5 * 1089 = 544.5; Python's round() rounds half to even -> 544
    assert round(0.5 * 1089) == 544
    ds = dataset(keep_fraction=0.5)
    assert len(ds) == 544
    assert len(ds.train_conditions) == 544
    assert not ds.heldout.any()


def test_keep_fraction_never_keeps_heldout_points():
    # 1089 - 25 = 1064 available -> 0.5 * 1064 = 532 kept
    ds = held({"kind": "square", "x": 16, "y": 16, "width": 4}, keep_fraction=0.5)
    assert len(ds) == 532
    assert not (ds.train & ds.heldout).any()
    assert ds.heldout.sum() == 25  # held-out points stay held out (not dropped)


def test_keep_fraction_subsample_depends_only_on_seed():
    a = dataset(keep_fraction=0.5, subsample_seed=3)
    b = dataset(keep_fraction=0.5, subsample_seed=3)
    c = dataset(keep_fraction=0.5, subsample_seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    assert len(c) == 544
    assert not np.array_equal(a.train, c.train)


def test_train_conditions_in_lattice_order():
    tc = dataset(keep_fraction=0.3, subsample_seed=1).train_conditions
    assert len(tc) == round(0.3 * 1089) == 327  # 326.7 -> 327
    # lattice order: y ascending, then x ascending within a row
    keys = tc[:, 1] * 1000 + tc[:, 0]
    assert np.all(np.diff(keys) > 0)


def test_keep_fraction_rounding_to_zero_raises():
    # 0.0004 * 1089 = 0.44 -> round -> 0 training points
    with pytest.raises(ConfigError, match=r"data\.keep_fraction"):
        dataset(keep_fraction=0.0004)


# ----------------------------------------------------------------------------
# bumps + stripes, rim examples, digits


def test_bumps_plus_stripes_holds_the_frame_bumps_and_the_stripes():
    both = dataset(kind="bumps+stripes", latent_size=44.0, x_max=44.0, y_max=44.0)
    only = stripes()
    inside = data.in_frame(both.conditions, 32, 44.0)
    assert inside.sum() == 33 * 33 and len(both.conditions) == 33 * 33 + len(only.conditions)
    np.testing.assert_array_equal(both.conditions[~inside], only.conditions)
    images = both.render(both.conditions[[0, int(np.flatnonzero(inside)[0])]]).numpy()
    stripe_at, bump_at = both.conditions[0], both.conditions[np.flatnonzero(inside)[0]]
    np.testing.assert_allclose(images[0, 0], img(*stripe_at, kind="stripes", latent_size=44.0), atol=ATOL)
    np.testing.assert_allclose(images[1, 0], img(*bump_at, kind="bumps", latent_size=44.0), atol=ATOL)


def test_rim_examples_join_training_after_the_lambda_subsample():
    plain = stripes(keep_fraction=0.5)
    rim = stripes(keep_fraction=0.5, rim_examples=8, rim_width=2.0)
    n = len(plain.conditions)
    np.testing.assert_array_equal(rim.conditions[:n], plain.conditions)  # the stripes and their subsample are kept
    np.testing.assert_array_equal(rim.train[:n], plain.train)
    added = rim.conditions[n:]
    assert len(added) == 8 and rim.train[n:].all() and not rim.heldout[n:].any()
    assert data.in_frame(added, 32, 44.0).all()
    to_edge = np.minimum(added - 6, 38 - added).min(axis=1)  # the frame is [6, 38] in the 44 latent square
    assert (to_edge <= 2.0).all()
    angles = np.sort(np.arctan2(added[:, 1] - 22, added[:, 0] - 22))
    assert np.diff(angles).min() > 0.3  # spread around the frame, not bunched on one side


def test_rim_examples_need_the_stripes_kind_and_room_on_the_rim():
    with pytest.raises(ConfigError, match=r"^data\.rim_examples: only with data\.kind = stripes"):
        make_config("default", {"data.rim_examples": 4})
    # frame [6, 38], dx = 1: 33^2 points, of which those with a label in {6, 7, 37, 38}: 33^2 - 29^2 = 248
    with pytest.raises(ConfigError, match=r"^data\.rim_examples: the rim .* holds 248 lattice points \(got 500\)"):
        stripes(rim_examples=500, rim_width=1.0)


@pytest.mark.parametrize("glyph", [0, 1, 7])
def test_a_glyph_is_placed_by_its_intensity_centroid(glyph):
    rng = np.random.default_rng(glyph)
    centres = np.stack([rng.uniform(9, 23, 6), rng.uniform(9, 23, 6)], axis=1)
    images = render(torch.tensor(centres), kind="digits", glyph=glyph, glyph_scale=1.5).numpy()[:, 0]
    intensity = (images + 1) / 2
    assert images.min() == -1.0 and images.max() <= 1.0 and images.max() > 0.5
    pixel = np.arange(32) + 0.5
    centroid = np.stack([(intensity.sum(1) * pixel).sum(1), (intensity.sum(2) * pixel).sum(1)], 1) / intensity.sum((1, 2))[:, None]
    np.testing.assert_allclose(centroid, centres, atol=0.1)  # sampling the interpolated glyph moves it by < 0.1 px
    # the glyph itself: at scale 1 and an integer-aligned centroid it is the 8 x 8 bitmap, shifted
    glyph_image = data.digit_glyph(glyph)
    cx, cy = data.glyph_centroid(glyph_image)
    shifted = render(torch.tensor([[12 + cx, 10 + cy]]), kind="digits", glyph=glyph, glyph_scale=1.0).numpy()[0, 0]
    np.testing.assert_allclose((shifted[10:18, 12:20] + 1) / 2, glyph_image, atol=1e-6)


def test_digits_lattice_must_keep_every_glyph_inside_the_frame():
    with pytest.raises(ConfigError, match=r"^data\.x_min, data\.x_max: glyph 0 at scale 1\.5 lies inside the frame only "
                                          r"for x in \[5\.34, 26\.84\] \(got 0, 32\)"):
        dataset(kind="digits")
    ds = dataset(kind="digits", x_min=8.0, x_max=24.0, y_min=8.0, y_max=24.0)
    assert len(ds) == 17 * 17
    with pytest.raises(ConfigError, match=r"^data\.glyph: must be in \[0, 1796\]"):
        make_config("default", {"data.kind": "digits", "data.glyph": 1797})
    with pytest.raises(ConfigError, match=r"^data\.periodic: not with data\.kind = digits"):
        make_config("default", {"data.kind": "digits", "data.periodic": True})
