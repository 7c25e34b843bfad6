"""Datasets: Gaussian bumps, sums of stripes, 1D stripes and real glyphs at (x, y) on a lattice.

Coordinate convention (docs/conventions.md). Labels live in a latent square [0, L]^2 (L =
`latent_size`, default 32 = N, the image size). The N x N frame sits centred in it, offset
o = (L - N) / 2. Pixel (row i, column j) covers [o + j, o + j + 1) x [o + i, o + i + 1); its
centre is (o + j + 0.5, o + i + 0.5). x runs along columns, y along rows, origin top left.

Intensities I are in [0, 1] and stored as 2 I - 1 in [-1, 1]:
  bumps:   I = gx(u) gy(v)                 a 2D Gaussian bump at (mu_x, mu_y)
  sos:     I = (gx(u) + gy(v)) / 2          one vertical stripe at x plus one horizontal at y
  stripes: the sos image, restricted to labels with exactly one coordinate inside the frame,
           so only one 1D stripe is visible (the follow-up paper's hidden 44 x 44 latent space);
           `rim_examples` adds a few 2D sums of stripes from the frame's rim to the training set
  bumps+stripes: labels with both coordinates in the frame are bumps, labels with exactly one
           are the 1D stripes of `stripes` (the follow-up's bumps plus stripes)
  digits:  one of scikit-learn's 8 x 8 digit glyphs (0..16 -> I in [0, 1]), scaled by
           `glyph_scale` and placed by bilinear interpolation (torch grid_sample, zero outside
           the glyph) so that its intensity centroid lies at (x, y) (the pixel grid's centroid
           within 0.1 px: the interpolated glyph is sampled at pixel centres);
           every glyph must lie inside the frame. One glyph per dataset (`glyph`); the class is
           not a condition: the model is conditioned on (x, y) only, as for bumps
with gx(u) = exp(-(u - mu_x)^2 / (2 sigma_x^2)), likewise gy. With `periodic`, u - mu_x is the
wrapped difference on a circle of circumference L. "In the frame" is the closed interval
[o, o + N] on each axis (`in_frame`).

Everything is vectorized: a bump image is the outer product of two 1D profiles.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import DATA_KINDS, ConfigError, DataConfig, Holdout

MAX_LATTICE_POINTS = 4_000_000  # conditions held in memory (images are rendered per batch)


def lattice(lo: float, hi: float, step: float) -> np.ndarray:
    """{lo, lo + step, ...} <= hi, computed from integer multiples so that no error accumulates."""
    count = math.floor((hi - lo) / step + 1e-9) + 1
    return lo + step * np.arange(count, dtype=np.float64)


def evenly_spaced(conditions: np.ndarray, count: int) -> np.ndarray:
    """At most `count` rows, evenly spaced through the array (first and last included)."""
    if len(conditions) <= count:
        return conditions
    return conditions[np.unique(np.linspace(0, len(conditions) - 1, count).round().astype(int))]


def gaussian_profiles(
    centres: torch.Tensor, coords: torch.Tensor, sigma: float, period: float | None
) -> torch.Tensor:
    """[B] centres, [N] pixel-centre coordinates -> [B, N] values exp(-d^2 / (2 sigma^2))."""
    d = coords[None, :] - centres[:, None]
    if period is not None:
        d = torch.remainder(d + period / 2, period) - period / 2
    return torch.exp(-(d * d) / (2 * sigma * sigma))


def in_frame(conditions, image_size: int, latent_size: float) -> np.ndarray:
    """[M] bool: both labels of each (x, y) lie in the frame, the closed interval [o, o + N]."""
    conditions = np.asarray(conditions, dtype=np.float64)
    lo = (latent_size - image_size) / 2
    inside = (conditions >= lo - 1e-9) & (conditions <= lo + image_size + 1e-9)
    return inside.all(axis=1)


def render(
    conditions: torch.Tensor,
    kind: str = "bumps",
    image_size: int = 32,
    latent_size: float = 32.0,
    sigma_x: float = 1.0,
    sigma_y: float = 1.0,
    periodic: bool = False,
    glyph: int = 0,
    glyph_scale: float = 1.5,
) -> torch.Tensor:
    """[B, 2] (x, y) labels -> [B, 1, N, N] float32 images in [-1, 1]."""
    conditions = torch.as_tensor(conditions, dtype=torch.float32)
    if kind not in DATA_KINDS:
        raise ConfigError(f"kind: must be one of {', '.join(DATA_KINDS)} (got {kind!r})")
    if kind == "digits":
        return render_glyphs(conditions, glyph, glyph_scale, image_size, latent_size)
    offset = (latent_size - image_size) / 2
    coords = offset + 0.5 + torch.arange(image_size, dtype=torch.float32)
    period = latent_size if periodic else None
    gx = gaussian_profiles(conditions[:, 0], coords, sigma_x, period)  # over columns
    gy = gaussian_profiles(conditions[:, 1], coords, sigma_y, period)  # over rows
    # 2 I - 1, with one full-size temporary and an in-place subtraction (100k images in ~0.2 s)
    if kind == "bumps":
        images = torch.mul(gy[:, :, None], 2 * gx[:, None, :])
    elif kind == "bumps+stripes":
        bump = torch.as_tensor(in_frame(conditions.numpy(), image_size, latent_size))[:, None, None]
        images = torch.where(bump, gy[:, :, None] * (2 * gx[:, None, :]), gy[:, :, None] + gx[:, None, :])
    else:  # sos and stripes: 2 I = gx + gy
        images = torch.add(gy[:, :, None], gx[:, None, :])
    return images.sub_(1).unsqueeze(1)


def render_for(conditions, cfg: DataConfig) -> torch.Tensor:
    """`render` with the settings of a DataConfig: [B, 2] (x, y) -> [B, 1, N, N] images of that dataset."""
    return render(
        torch.as_tensor(np.asarray(conditions), dtype=torch.float32),
        kind=cfg.kind,
        image_size=cfg.image_size,
        latent_size=cfg.latent_size,
        sigma_x=cfg.sigma_x if cfg.sigma_x is not None else cfg.sigma,
        sigma_y=cfg.sigma_y if cfg.sigma_y is not None else cfg.sigma,
        periodic=cfg.periodic,
        glyph=cfg.glyph,
        glyph_scale=cfg.glyph_scale,
    )


@functools.lru_cache(maxsize=16)
def digit_glyph(index: int) -> np.ndarray:
    """Glyph `index` of scikit-learn's bundled digits as [8, 8] float64 intensities in [0, 1]."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

    images = load_digits().images
    if not 0 <= index < len(images):
        raise ConfigError(f"data.glyph: must be in [0, {len(images) - 1}] (got {index})")
    return images[index] / 16.0


def glyph_centroid(glyph: np.ndarray) -> tuple[float, float]:
    """(column, row) intensity centroid of a glyph in its own pixel units (pixel c covers [c, c + 1))."""
    centres = np.arange(glyph.shape[0]) + 0.5
    mass = glyph.sum()
    return float((glyph.sum(axis=0) * centres).sum() / mass), float((glyph.sum(axis=1) * centres).sum() / mass)


def glyph_extent(index: int, scale: float) -> tuple[float, float, float, float]:
    """(left, right, top, bottom): how far the rendered glyph reaches from its centroid, canvas pixels.

    Bilinear interpolation with zero padding spreads a glyph pixel over one pixel on each side of
    its centre, so the reach is from the first lit pixel's centre - 1 to the last one's + 1.
    """
    glyph = digit_glyph(index)
    cx, cy = glyph_centroid(glyph)
    cols, rows = np.flatnonzero(glyph.any(axis=0)), np.flatnonzero(glyph.any(axis=1))
    return ((cx - (cols[0] - 0.5)) * scale, (cols[-1] + 1.5 - cx) * scale,
            (cy - (rows[0] - 0.5)) * scale, (rows[-1] + 1.5 - cy) * scale)


def render_glyphs(conditions: torch.Tensor, index: int, scale: float, image_size: int, latent_size: float) -> torch.Tensor:
    """[B, 2] (x, y) -> [B, 1, N, N] in [-1, 1]: glyph `index`, `scale` canvas pixels per glyph
    pixel, its intensity centroid at (x, y)."""
    glyph = torch.as_tensor(digit_glyph(index), dtype=torch.float32)
    size = glyph.shape[0]
    cx, cy = glyph_centroid(digit_glyph(index))
    offset = (latent_size - image_size) / 2
    coords = offset + 0.5 + torch.arange(image_size, dtype=torch.float32)  # pixel centres, label units
    # A canvas point u maps to glyph coordinate (u - x) / scale + cx; grid_sample wants [-1, 1] over
    # the glyph's outer pixel edges (align_corners=False).
    gx = ((coords[None, :] - conditions[:, :1]) / scale + cx) / size * 2 - 1  # [B, N] over columns
    gy = ((coords[None, :] - conditions[:, 1:]) / scale + cy) / size * 2 - 1  # [B, N] over rows
    batch = len(conditions)
    grid = torch.stack([gx[:, None, :].expand(batch, image_size, image_size),
                        gy[:, :, None].expand(batch, image_size, image_size)], dim=-1)
    intensity = F.grid_sample(glyph.expand(batch, 1, size, size), grid, mode="bilinear",
                              padding_mode="zeros", align_corners=False)
    return intensity.mul_(2).sub_(1)


def in_region(conditions: np.ndarray, region: Holdout) -> np.ndarray:
    """Which (x, y) conditions lie in a held-out region (closed intervals, see `Holdout`)."""
    half = region.width / 2
    in_x = np.abs(conditions[:, 0] - region.x) <= half + 1e-9
    in_y = np.abs(conditions[:, 1] - region.y) <= half + 1e-9
    if region.kind == "square":
        return in_x & in_y
    if region.kind == "cross":
        return in_x | in_y
    return in_x if region.axis == "x" else in_y  # band


class BumpDataset:
    """The lattice of conditions of one `DataConfig`, split into train and held-out sets.

    conditions:      [M, 2] float64 (x, y), every lattice point of the dataset kind (for stripes,
                     then its `rim_examples` 2D points)
    heldout:         [M] bool, inside a held-out region (never trained on, kept for evaluation)
    train:           [M] bool, the training set: not held out, and kept by the lambda subsample
                     (the rim examples are always kept)
    """

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        xs = lattice(cfg.x_min, cfg.x_max, cfg.dx)
        ys = lattice(cfg.y_min, cfg.y_max, cfg.dy)
        if len(xs) * len(ys) > MAX_LATTICE_POINTS:
            raise ConfigError(
                f"data.dx, data.dy: the lattice has {len(xs) * len(ys)} points, "
                f"at most {MAX_LATTICE_POINTS} are allowed"
            )
        gx, gy = np.meshgrid(xs, ys)  # x varies fastest
        conditions = np.stack([gx.ravel(), gy.ravel()], axis=1)
        rim = np.zeros((0, 2))
        if cfg.kind in ("stripes", "bumps+stripes"):
            lo = (cfg.latent_size - cfg.image_size) / 2
            inside = (conditions >= lo - 1e-9) & (conditions <= lo + cfg.image_size + 1e-9)
            one_inside = inside[:, 0] != inside[:, 1]
            if not one_inside.any():
                raise ConfigError(
                    f"data.latent_size: {cfg.kind!r} needs labels outside the frame; "
                    "make latent_size > image_size and the lattice reach beyond the frame"
                )
            both_inside = inside.all(axis=1)
            rim = self._rim(conditions[both_inside], cfg) if cfg.rim_examples else rim
            conditions = conditions[one_inside | (both_inside if cfg.kind == "bumps+stripes" else False)]
        if cfg.kind == "digits":
            self._check_glyphs_fit(xs, ys, cfg)
        self.conditions = conditions
        self.heldout = np.zeros(len(conditions), dtype=bool)
        for region in cfg.holdout:
            self.heldout |= in_region(conditions, region)
        available = np.flatnonzero(~self.heldout)
        keep = round(cfg.keep_fraction * len(available))
        if keep == 0:
            raise ConfigError(
                f"data.holdout, data.keep_fraction: leave no training data "
                f"(0 of {len(conditions)} lattice points); shrink the held-out regions "
                f"or raise keep_fraction"
            )
        rng = np.random.default_rng(cfg.subsample_seed)
        kept = np.sort(rng.permutation(available)[:keep])
        self.train = np.zeros(len(conditions), dtype=bool)
        self.train[kept] = True
        if len(rim):
            self.conditions = np.concatenate([conditions, rim])
            self.heldout = np.concatenate([self.heldout, np.zeros(len(rim), dtype=bool)])
            self.train = np.concatenate([self.train, np.ones(len(rim), dtype=bool)])

    @staticmethod
    def _rim(frame_points: np.ndarray, cfg: DataConfig) -> np.ndarray:
        """`rim_examples` 2D lattice points within `rim_width` of the frame's edge and outside every
        held-out region, evenly spread by their angle around the frame's centre."""
        lo = (cfg.latent_size - cfg.image_size) / 2
        hi = lo + cfg.image_size
        to_edge = np.minimum(frame_points - lo, hi - frame_points).min(axis=1)
        candidates = frame_points[to_edge <= cfg.rim_width + 1e-9]
        for region in cfg.holdout:
            candidates = candidates[~in_region(candidates, region)]
        if len(candidates) < cfg.rim_examples:
            raise ConfigError(f"data.rim_examples: the rim (data.rim_width = {cfg.rim_width}) holds "
                              f"{len(candidates)} lattice points (got {cfg.rim_examples})")
        centre = lo + cfg.image_size / 2
        angle = np.arctan2(candidates[:, 1] - centre, candidates[:, 0] - centre)
        return evenly_spaced(candidates[np.argsort(angle, kind="stable")], cfg.rim_examples)

    @staticmethod
    def _check_glyphs_fit(xs: np.ndarray, ys: np.ndarray, cfg: DataConfig) -> None:
        """Every glyph must lie inside the frame: the detector cannot locate a glyph it sees only in part."""
        left, right, top, bottom = glyph_extent(cfg.glyph, cfg.glyph_scale)
        lo = (cfg.latent_size - cfg.image_size) / 2
        hi = lo + cfg.image_size
        for axis, values, before, after in (("x", xs, left, right), ("y", ys, top, bottom)):
            low, high = lo + before, hi - after
            if values[0] < low - 1e-9 or values[-1] > high + 1e-9:
                raise ConfigError(
                    f"data.{axis}_min, data.{axis}_max: glyph {cfg.glyph} at scale {cfg.glyph_scale} lies inside "
                    f"the frame only for {axis} in [{low:.2f}, {high:.2f}] (got {values[0]:g}, {values[-1]:g})"
                )

    @property
    def train_conditions(self) -> np.ndarray:
        return self.conditions[self.train]

    @property
    def heldout_conditions(self) -> np.ndarray:
        return self.conditions[self.heldout]

    def render(self, conditions) -> torch.Tensor:
        return render_for(conditions, self.cfg)

    def __len__(self) -> int:
        return int(self.train.sum())
