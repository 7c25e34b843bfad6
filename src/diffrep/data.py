"""Datasets: Gaussian bumps, sums of stripes and 1D stripes at (x, y) on a lattice.

Coordinate convention (../shared/PAPER.md). Labels live in a latent square [0, L]^2 (L =
`latent_size`, default 32 = N, the image size). The N x N frame sits centred in it, offset
o = (L - N) / 2. Pixel (row i, column j) covers [o + j, o + j + 1) x [o + i, o + i + 1); its
centre is (o + j + 0.5, o + i + 0.5). x runs along columns, y along rows, origin top left.

Intensities I are in [0, 1] and stored as 2 I - 1 in [-1, 1]:
  bumps:   I = gx(u) gy(v)                 a 2D Gaussian bump at (mu_x, mu_y)
  sos:     I = (gx(u) + gy(v)) / 2          one vertical stripe at x plus one horizontal at y
  stripes: the sos image, restricted to labels with exactly one coordinate inside the frame,
           so only one 1D stripe is visible (the follow-up paper's hidden 44 x 44 latent space)
with gx(u) = exp(-(u - mu_x)^2 / (2 sigma_x^2)), likewise gy. With `periodic`, u - mu_x is the
wrapped difference on a circle of circumference L.

Everything is vectorized: a bump image is the outer product of two 1D profiles.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import ConfigError, DataConfig, Holdout

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


def render(
    conditions: torch.Tensor,
    kind: str = "bumps",
    image_size: int = 32,
    latent_size: float = 32.0,
    sigma_x: float = 1.0,
    sigma_y: float = 1.0,
    periodic: bool = False,
) -> torch.Tensor:
    """[B, 2] (x, y) labels -> [B, 1, N, N] float32 images in [-1, 1]."""
    conditions = torch.as_tensor(conditions, dtype=torch.float32)
    offset = (latent_size - image_size) / 2
    coords = offset + 0.5 + torch.arange(image_size, dtype=torch.float32)
    period = latent_size if periodic else None
    gx = gaussian_profiles(conditions[:, 0], coords, sigma_x, period)  # over columns
    gy = gaussian_profiles(conditions[:, 1], coords, sigma_y, period)  # over rows
    # 2 I - 1, with one full-size temporary and an in-place subtraction (100k images in ~0.2 s)
    if kind not in ("bumps", "sos", "stripes"):
        raise ConfigError(f"kind: must be one of bumps, sos, stripes (got {kind!r})")
    if kind == "bumps":
        images = torch.mul(gy[:, :, None], 2 * gx[:, None, :])
    else:  # sos and stripes: 2 I = gx + gy
        images = torch.add(gy[:, :, None], gx[:, None, :])
    return images.sub_(1).unsqueeze(1)


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

    conditions:      [M, 2] float64 (x, y), every lattice point of the dataset kind
    heldout:         [M] bool, inside a held-out region (never trained on, kept for evaluation)
    train:           [M] bool, the training set: not held out, and kept by the lambda subsample
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
        if cfg.kind == "stripes":
            lo = (cfg.latent_size - cfg.image_size) / 2
            inside = (conditions >= lo - 1e-9) & (conditions <= lo + cfg.image_size + 1e-9)
            conditions = conditions[inside[:, 0] != inside[:, 1]]
            if len(conditions) == 0:
                raise ConfigError(
                    "data.latent_size: 'stripes' needs labels outside the frame; "
                    "make latent_size > image_size and the lattice reach beyond the frame"
                )
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

    @property
    def train_conditions(self) -> np.ndarray:
        return self.conditions[self.train]

    @property
    def heldout_conditions(self) -> np.ndarray:
        return self.conditions[self.heldout]

    def render(self, conditions) -> torch.Tensor:
        c = self.cfg
        return render(
            torch.as_tensor(np.asarray(conditions), dtype=torch.float32),
            kind=c.kind,
            image_size=c.image_size,
            latent_size=c.latent_size,
            sigma_x=c.sigma_x if c.sigma_x is not None else c.sigma,
            sigma_y=c.sigma_y if c.sigma_y is not None else c.sigma,
            periodic=c.periodic,
        )

    def __len__(self) -> int:
        return int(self.train.sum())
