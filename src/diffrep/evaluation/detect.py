"""Scoring generated images against their conditions: no bump, several, wrong or accurate.

Conventions are those of `diffrep.data`: images are [B, 1, N, N] (or [B, N, N]) and store
2 I - 1 for an intensity I in [0, 1]; labels (x, y) live in [0, L]^2, the frame's offset is
o = (L - N) / 2, and pixel (row i, column j) has centre (o + j + 0.5, o + i + 0.5). Generated
values outside [-1, 1] are clipped, as when saving an image.

Bumps
  - A pixel is lit when its stored value exceeds `threshold` (default 0.0: half the peak
    intensity, since a bump's peak is stored as +1 and the background as -1).
  - Lit pixels form components by 8-connectivity (scipy.ndimage.label). A component of fewer
    than `min_size` pixels is a speck and ignored.
  - With `expected` (the dataset's image of a label; scoring passes it), a component counts only if
    it has that shape: the dataset's image rendered at the component's centroid fits it with
    R^2 >= shape_min_r2 and a height >= shape_min_height of a full bump (`_shape_filter`). Pure
    noise, which lights half of the pixels at the default threshold, then scores "none" where it
    would score "several"; a bump on a grey background still counts.
  - 0 components: "none"; more than 1: "several"; exactly 1: its centroid is measured and the
    outcome is "accurate" if |error_x| <= tolerance and |error_y| <= tolerance, else "wrong".
  - Centroid: intensity-weighted over the component grown by CENTROID_MARGIN pixels, so that
    the bump's tails below the threshold weigh in too (over the lit pixels alone, a sigma = 1
    bump's centroid is off by up to 0.3 px). The weights are summed into a column and a row
    profile, and each gives one coordinate (see `_edge_balanced_centroid` for bumps cut off by
    the frame edge).
  - With `periodic` and L = N the frame is a torus: components meeting across opposite edges
    are one, and the centroid is taken on the circle. With L > N the frame is a window onto
    the circle and its edges are real edges. Either way, periodic errors are wrapped into
    [-L/2, L/2) and centroids into [0, L).
  - Bump conditions are expected inside the frame.

Sums of stripes ("sos") and single stripes ("stripes")
  - A vertical stripe at x lifts every row by g_x(u) / 2 and a horizontal stripe spreads over
    the columns, so the column profile (mean of I over rows) is g_x(u) / 2 + mean_v(g_y) / 2:
    a peak of height 1/2 (STRIPE_HEIGHT) over a flat baseline. Likewise the row profile
    (mean over columns) peaks at y. Each profile's baseline is its median, which the few
    columns of a stripe do not move.
  - A profile entry is lit when it exceeds the baseline by the same fraction of the stripe's
    height as `threshold` is of a bump's peak ((threshold + 1) / 2; default 0.0: half).
    Lit entries form 1D runs; runs shorter than `min_size` are specks and ignored.
  - An axis is visible when the condition's label on it lies in the frame [o, o + N].
    "several": more than one run on an axis, or any run on an axis that is not visible (an
    extra stripe); otherwise "none": no run on a visible axis, or no visible axis at all;
    otherwise each visible axis has exactly one run, whose centroid (weights: the profile
    above its baseline, over the run grown by CENTROID_MARGIN) is compared with the label,
    "accurate" if every visible axis is within `tolerance`, else "wrong". Axes that are not
    visible have NaN centroid and error.
  - `n_components` counts the runs of both axes.

Glyphs ("digits")
  - As bumps, except that lit pixels within 2 * GLYPH_JOIN pixels of each other form one
    component (the mask is dilated GLYPH_JOIN times before labelling; sizes still count lit
    pixels only), since a glyph's faint strokes break it apart at the threshold, and that the
    centroid is the plain intensity centroid: glyphs lie inside the frame (data.py checks it),
    and a glyph's profile, unlike a bump's, need not be symmetric about its centroid.

Bumps plus stripes ("bumps+stripes"): conditions with both labels in the frame are scored as
bumps, the others as stripes.

Limits, measured on exact renders (tests/test_detect.py)
  - A feature must light at least `min_size` pixels. At the default threshold a bump or stripe
    narrower than sigma ~ 0.85 centred on a pixel lights a single pixel and is dropped as a
    speck; score narrow ones with a lower threshold (-0.5 suits sigma >= 0.7). Likewise, at
    sigma = 1, a bump on a frame corner or a stripe whose label is on the frame edge lights
    one pixel (one row) and scores "none".
  - A hidden label less than about 1.2 sigma - 1.5 px outside the frame (at min_size = 2)
    lights enough of its stripe's tail to count as an extra stripe; never for sigma < 1.25.
  - Centroid error for sigma in [0.5, 2]: < 0.03 px at >= 3 sigma from the frame edges and
    anywhere on a torus; up to 0.16 px for a centre 1 to 1.5 px inside an edge (sigma = 2).
    A centre less than 1 px from an edge cannot be resolved: it is reported 0.5 px inside
    the frame (error <= 0.5, within the default tolerance).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from ..config import DATA_KINDS, ConfigError
from ..data import in_frame

OUTCOMES = ("none", "several", "wrong", "accurate")  # index = outcome code
NONE, SEVERAL, WRONG, ACCURATE = range(len(OUTCOMES))
KINDS = DATA_KINDS
GLYPH_JOIN = 1  # dilations joining a glyph's pieces: gaps of up to 2 px (tests/test_detect.py measures all ten digits)

STRIPE_HEIGHT = 0.5  # a stripe adds g / 2 to I: its peak lifts a profile by 1/2
# Pixels around a component whose intensity weighs in its centroid: at 3 px the tails left out
# move the centroid by < 0.02 px for sigma <= 2 (1 px: up to 0.1 px).
CENTROID_MARGIN = 3
# The shape test of a bump or glyph component (`_shape_filter`): a fit of the image by the dataset's
# own image rendered at the component's centroid, over the rendering's support (intensity >
# SHAPE_SUPPORT) grown by a pixel. Exact renders of sigma 0.5-2 anywhere >= 1 px inside the frame fit
# with R^2 >= 0.978 and height >= 0.97; the 51,580 components of 10,000 images of pure N(0, 1) noise
# with R^2 <= 0.73 (<= 0.69 where the height is >= 0.5). The thresholds sit between the two.
SHAPE_SUPPORT = 0.05
SHAPE_MIN_R2 = 0.8
SHAPE_MIN_HEIGHT = 0.5


@dataclass
class Detection:
    """Per-image scores; arrays of length B."""

    outcome: np.ndarray  # [B] int codes into OUTCOMES
    n_components: np.ndarray  # [B] bumps, or stripe runs on both axes, specks excluded
    centroid: np.ndarray  # [B, 2] (x, y) in label coordinates, NaN where not located
    error: np.ndarray  # [B, 2] signed centroid - target (wrapped if periodic), NaN likewise
    tolerance: float  # the tolerance that decided "accurate"

    def select(self, mask: np.ndarray) -> "Detection":
        """The scores of a subset of the images."""
        return Detection(self.outcome[mask], self.n_components[mask], self.centroid[mask], self.error[mask], self.tolerance)


def detect(
    images,
    conditions,
    kind: str = "bumps",
    image_size: int = 32,
    latent_size: float = 32.0,
    periodic: bool = False,
    tolerance: float = 0.5,
    threshold: float = 0.0,
    min_size: int = 2,
    expected=None,
    shape_min_r2: float = SHAPE_MIN_R2,
    shape_min_height: float = SHAPE_MIN_HEIGHT,
) -> Detection:
    """Score [B, 1, N, N] images against their [B, 2] (x, y) conditions (rules: module doc).

    `expected` maps labels [M, 2] to the dataset's images of them ([M, 1, N, N] in [-1, 1], e.g.
    `data.render_for`): with it, a bump or glyph component counts only if it has that shape
    (`shape_min_r2`, `shape_min_height`; `_shape_filter`); without it, every component of
    `min_size` lit pixels counts."""
    if tolerance <= 0:
        raise ConfigError(f"tolerance: must be > 0 (got {tolerance})")
    if kind not in KINDS:
        raise ConfigError(f"kind: must be one of {', '.join(KINDS)} (got {kind!r})")
    if min_size < 1:
        raise ConfigError(f"min_size: must be >= 1 (got {min_size})")
    if not 0 <= shape_min_r2 <= 1:
        raise ConfigError(f"shape_min_r2: must be in [0, 1] (got {shape_min_r2})")
    values = _as_numpy(images)
    shape = list(values.shape)
    if values.ndim == 4 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 3 or values.shape[1:] != (image_size, image_size):
        raise ConfigError(f"images: must be [B, 1, {image_size}, {image_size}] (got {shape})")
    targets = _as_numpy(conditions)
    if targets.shape != (len(values), 2):
        raise ConfigError(f"conditions: must be [{len(values)}, 2] (got {list(targets.shape)})")

    if kind == "bumps+stripes":
        return _detect_bumps_and_stripes(values, targets, image_size, latent_size, periodic, tolerance, threshold,
                                         min_size, expected, shape_min_r2, shape_min_height)
    intensity = np.clip((values + 1) / 2, 0, 1)
    lit_fraction = (threshold + 1) / 2  # the threshold as a fraction of the peak intensity
    offset = (latent_size - image_size) / 2
    torus = periodic and latent_size == image_size  # opposite frame edges touch
    if kind in ("bumps", "digits"):
        visible = np.ones(targets.shape, dtype=bool)
        glyph = kind == "digits"
        shaped = None if expected is None else _shape_filter(intensity, expected, offset, torus, shape_min_r2,
                                                             shape_min_height, balanced=not glyph)
        n_components, outcome, centroid = _find_bump(intensity, lit_fraction, min_size, torus,
                                                     join=GLYPH_JOIN if glyph else 0, balanced=not glyph,
                                                     accept=shaped)
    else:
        visible = (targets >= offset) & (targets <= offset + image_size)
        n_components, outcome, centroid = _find_stripes(
            intensity, lit_fraction * STRIPE_HEIGHT, min_size, torus, visible
        )

    centroid += offset
    error = centroid - targets
    if periodic:
        centroid %= latent_size
        error = (error + latent_size / 2) % latent_size - latent_size / 2
    within = np.where(visible, np.abs(error) <= tolerance, True).all(axis=1)
    outcome[(outcome == WRONG) & within] = ACCURATE
    return Detection(outcome, n_components, centroid, error, float(tolerance))


def _detect_bumps_and_stripes(values, targets, image_size, latent_size, periodic, tolerance, threshold, min_size,
                              expected, shape_min_r2, shape_min_height):
    """Bumps where both labels are in the frame, stripes elsewhere, each by its own rule."""
    bump = in_frame(targets, image_size, latent_size)
    batch = len(targets)
    outcome, n_components = np.zeros(batch, dtype=int), np.zeros(batch, dtype=int)
    centroid, error = np.full((batch, 2), np.nan), np.full((batch, 2), np.nan)
    for mask, kind in ((bump, "bumps"), (~bump, "stripes")):
        if mask.any():
            part = detect(values[mask], targets[mask], kind, image_size, latent_size, periodic, tolerance, threshold,
                          min_size, expected, shape_min_r2, shape_min_height)
            outcome[mask], n_components[mask], centroid[mask], error[mask] = (
                part.outcome, part.n_components, part.centroid, part.error)
    return Detection(outcome, n_components, centroid, error, float(tolerance))


def summarize(det: Detection) -> dict:
    """Fractions of each outcome, per-axis accuracy and position errors of one Detection.

    x_accuracy / y_accuracy: fraction of images located (one bump, or one stripe per visible
    axis) with |error| <= tolerance on that axis. mean/median_position_error: Euclidean norm
    of the error over the located images (stripes: over their visible axes), NaN if none.
    """
    located = np.isin(det.outcome, (WRONG, ACCURATE))
    distance = np.sqrt(np.nansum(det.error[located] ** 2, axis=1))
    within = np.abs(det.error) <= det.tolerance  # NaN compares False
    summary = {"n": len(det.outcome), "accuracy": float(np.mean(det.outcome == ACCURATE))}
    summary["x_accuracy"] = float(np.mean(within[:, 0]))
    summary["y_accuracy"] = float(np.mean(within[:, 1]))
    for code, name in enumerate(OUTCOMES):
        summary[f"frac_{name}"] = float(np.mean(det.outcome == code))
    summary["mean_position_error"] = float(np.mean(distance)) if len(distance) else float("nan")
    summary["median_position_error"] = float(np.median(distance)) if len(distance) else float("nan")
    return summary


# ----------------------------------------------------------------------------
# Bumps and stripes. Each returns n_components [B], outcome [B] (NONE, SEVERAL, or WRONG for
# "located", refined to ACCURATE by the caller) and centroid [B, 2] in frame units (the
# label minus the offset), NaN where not located.


def _find_bump(intensity, lit_fraction, min_size, torus, join=0, balanced=True, accept=None):
    batch = len(intensity)
    components, n_components = _components(intensity > lit_fraction, min_size, torus, join, accept)
    one = n_components == 1
    weights = intensity[one] * _grow(components[one], torus)
    centroid = np.full((batch, 2), np.nan)
    centroid[one, 0] = _centroid(weights.sum(axis=1), torus, balanced)  # profile over columns: x
    centroid[one, 1] = _centroid(weights.sum(axis=2), torus, balanced)  # profile over rows: y
    outcome = np.select([n_components == 0, n_components > 1], [NONE, SEVERAL], WRONG)
    return n_components, outcome, centroid


def _find_stripes(intensity, lit_height, min_size, torus, visible):
    batch = len(intensity)
    runs_per_axis = np.zeros((batch, 2), dtype=int)
    centroid = np.full((batch, 2), np.nan)
    # Column profile (mean over rows) for the vertical stripe at x, row profile for y
    for axis, profile in enumerate((intensity.mean(axis=1), intensity.mean(axis=2))):
        height = profile - np.median(profile, axis=1, keepdims=True)
        runs, runs_per_axis[:, axis] = _components(height > lit_height, min_size, torus)
        one = runs_per_axis[:, axis] == 1
        weights = np.clip(height[one], 0, None) * _grow(runs[one], torus)
        centroid[one, axis] = _centroid(weights, torus)

    several = (runs_per_axis > 1).any(axis=1) | ((runs_per_axis > 0) & ~visible).any(axis=1)
    none = ((runs_per_axis == 0) & visible).any(axis=1) | ~visible.any(axis=1)
    outcome = np.select([several, none], [SEVERAL, NONE], WRONG)
    centroid[(outcome != WRONG)[:, None] | ~visible] = np.nan
    return runs_per_axis.sum(axis=1), outcome, centroid


# ----------------------------------------------------------------------------
# Components, on the whole batch at once: [B, N] profiles or [B, N, N] images.


def _components(lit: np.ndarray, min_size: int, torus: bool, join: int = 0,
                accept=None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of components of >= min_size lit pixels, and the number of such components per image.

    Neighbours include diagonals; pixels of different images are never neighbours. On a torus,
    pixels on opposite frame edges are neighbours too. With `join`, the lit mask is dilated that
    many times first, so that lit pixels up to 2 * join pixels apart share a component. `accept`
    (labels, kept, lit, image_of_label) -> kept narrows the kept components further (`_shape_filter`).
    """
    batch = len(lit)
    structure = np.zeros((3,) * lit.ndim, dtype=bool)
    structure[1] = True  # every neighbour within the same image, none in the images beside it
    grouped = ndimage.binary_dilation(lit, structure, iterations=join) if join else lit
    labels, count = ndimage.label(grouped, structure)
    if torus:
        labels, count = _join_across_edges(labels, count)
    sizes = np.bincount(labels[lit], minlength=count + 1)  # lit pixels only: the dilation adds none
    kept = sizes >= min_size
    kept[0] = False  # the background
    image_of_label = np.zeros(count + 1, dtype=int)
    image_of_label[labels.reshape(batch, -1)] = np.arange(batch)[:, None]
    if accept is not None:
        kept = accept(labels, kept, lit, image_of_label)
    return kept[labels], np.bincount(image_of_label[kept], minlength=batch)


def shape_fits(images, expected, kind: str = "bumps", image_size: int = 32, latent_size: float = 32.0,
               periodic: bool = False, threshold: float = 0.0, min_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(r2, height) of the shape test (`_shape_filter`) of every component of >= min_size lit pixels
    in [B, 1, N, N] images of bumps or glyphs: what `detect` compares with shape_min_r2 and
    shape_min_height (bench/bench_detector.py measures them on exact renders and on noise)."""
    intensity = np.clip((_as_numpy(images).reshape(-1, image_size, image_size) + 1) / 2, 0, 1)
    torus = periodic and latent_size == image_size
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    accept = _shape_filter(intensity, expected, (latent_size - image_size) / 2, torus, -np.inf, -np.inf,
                           balanced=kind != "digits", record=fits.append)
    _components(intensity > (threshold + 1) / 2, min_size, torus, GLYPH_JOIN if kind == "digits" else 0, accept)
    return tuple(np.concatenate([f[i] for f in fits]) if fits else np.zeros(0) for i in (0, 1))


def _shape_filter(intensity, expected, offset, torus, min_r2, min_height, balanced=True, record=None):
    """An `accept` for `_components`: keep the components that have the dataset's shape.

    Each kept component's centroid is measured as for scoring (`_grow`, `_centroid`, `balanced` as
    there) and rendered by
    `expected` into a template T. Over the template's support (T > SHAPE_SUPPORT, grown by one
    pixel) the image I is
    fitted by least squares as I = height * T + background: the component is kept if the fit's
    R^2 >= min_r2 (it has the template's shape) and height >= min_height (it rises above its
    surroundings by that fraction of a full bump, whatever their level). `record((r2, height))` sees
    the fits of the components tested.
    """
    def accept(labels, kept, lit, image_of_label):
        ids = np.flatnonzero(kept)
        if not len(ids):
            return kept
        image = intensity[image_of_label[ids]]
        weights = image * _grow(labels[image_of_label[ids]] == ids[:, None, None], torus)
        centre = np.stack([_centroid(weights.sum(axis=1), torus, balanced), _centroid(weights.sum(axis=2), torus, balanced)],
                          axis=1)
        template = (_as_numpy(expected(centre + offset))[:, 0] + 1) / 2
        # The template's support and one pixel around it: a narrow bump's support alone can be two or
        # three pixels, which any blob fits; the ring must be as dark as the template's there.
        support = ndimage.maximum_filter(template > SHAPE_SUPPORT, size=(1, 3, 3), mode="wrap" if torus else "constant")
        count = support.sum((1, 2))
        t = np.where(support, template - ((template * support).sum((1, 2)) / count)[:, None, None], 0)
        i = np.where(support, image - ((image * support).sum((1, 2)) / count)[:, None, None], 0)
        tt, ti, ii = (t * t).sum((1, 2)), (t * i).sum((1, 2)), (i * i).sum((1, 2))
        height = ti / tt
        r2 = ti * ti / np.maximum(tt * ii, 1e-300)
        if record is not None:
            record((r2, height))
        shaped = kept.copy()
        shaped[ids] = (r2 >= min_r2) & (height >= min_height)
        return shaped
    return accept


def _join_across_edges(labels: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """Merge the labels of components that meet across opposite frame edges."""
    spatial_axes = tuple(range(1, labels.ndim))
    first, second = [], []
    for shift in itertools.product((-1, 0, 1), repeat=len(spatial_axes)):
        neighbour = np.roll(labels, shift, axis=spatial_axes)
        # Inside the frame neighbours already share a label: pairs that differ met by wrapping
        meet = (labels > 0) & (neighbour > 0) & (labels != neighbour)
        first.append(labels[meet])
        second.append(neighbour[meet])
    first, second = np.concatenate(first), np.concatenate(second)
    links = sparse.coo_matrix((np.ones(len(first)), (first, second)), shape=(count + 1, count + 1))
    merged_count, merged = csgraph.connected_components(links, directed=False)
    # Label 0 (the background) is its own component; shifting by 1 keeps 0 free for it
    return np.where(labels > 0, merged[labels] + 1, 0), merged_count


def _grow(kept: np.ndarray, torus: bool) -> np.ndarray:
    """The kept pixels and those within CENTROID_MARGIN of them (per image)."""
    size = (1,) + (2 * CENTROID_MARGIN + 1,) * (kept.ndim - 1)
    return ndimage.maximum_filter(kept, size=size, mode="wrap" if torus else "constant")


# ----------------------------------------------------------------------------
# Centroids of [B, N] non-negative weight profiles, in frame units: pixel j covers [j, j + 1).


def _centroid(weights: np.ndarray, torus: bool, balanced: bool = True) -> np.ndarray:
    if not torus:
        if not balanced:
            return (weights * (np.arange(weights.shape[1]) + 0.5)).sum(axis=1) / weights.sum(axis=1)
        return _edge_balanced_centroid(weights)
    # On a circle: turn each profile so that its peak sits mid-frame, take the plain centroid
    # there (the profile does not reach round the circle), and turn back.
    batch, size = weights.shape
    shift = size // 2 - weights.argmax(axis=1)
    turned = weights[np.arange(batch)[:, None], (np.arange(size) - shift[:, None]) % size]
    centre = (turned * (np.arange(size) + 0.5)).sum(axis=1) / turned.sum(axis=1)
    return (centre - shift) % size


def _edge_balanced_centroid(weights: np.ndarray) -> np.ndarray:
    """The centre c that balances the weights in the widest window [c - r, c + r] inside the frame.

    Where the weights fit in that window this is the plain centroid. Near a frame edge a bump
    has lost the tail beyond it, which pulls the plain centroid inward (by 1 px for sigma = 2
    at 1 px from the edge); the window leaves out the far tail as well, so a symmetric bump
    stays balanced about its true centre.

    Each pixel's weight is spread evenly over it. Working from the nearer edge (a profile whose
    plain centroid lies in the far half is mirrored), the window is [0, t] with c = t / 2, and
    its imbalance H(t) = sum of (u - t / 2) w(u) du over the window is linear in t within each
    pixel, so H at the pixel boundaries t = k (cumulative sums) locates its zero exactly:
    between the last boundary with H > 0 and the first with H <= 0. A window of one pixel is
    always balanced (H(1) = 0), so the search starts at k = 2; a centre less than a pixel
    from the edge, which pixels cannot resolve, comes out at c = 0.5.
    """
    batch, size = weights.shape
    centres = np.arange(size) + 0.5
    mirrored = (weights * centres).sum(axis=1) > weights.sum(axis=1) * size / 2
    weights = np.where(mirrored[:, None], weights[:, ::-1], weights)
    mass = np.concatenate([np.zeros((batch, 1)), np.cumsum(weights, axis=1)], axis=1)
    moment = np.concatenate([np.zeros((batch, 1)), np.cumsum(weights * centres, axis=1)], axis=1)
    ends = np.arange(size + 1)
    imbalance = moment - ends / 2 * mass
    balanced = (mass > 0) & (imbalance <= 0)
    balanced[:, :2] = False
    balanced[:, size] = True  # the whole frame: the plain centroid lies in this half
    k = balanced.argmax(axis=1)
    rows = np.arange(batch)
    before, after = imbalance[rows, k - 1], imbalance[rows, k]
    drop = before - after  # > 0: H > 0 before and <= 0 after, unless both are 0
    window = np.where(drop > 0, k - 1 + before / np.where(drop > 0, drop, 1), k)
    centre = window / 2
    return np.where(mirrored, size - centre, centre)


def _as_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)
