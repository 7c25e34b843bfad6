"""Percolation of the overlap between bumps as the data fraction lambda grows (no training).

The follow-up paper (arXiv 2408.13256, claim 5 of docs/conventions.md) ties the sudden onset of manifold
formation to percolation: keep a fraction lambda of the lattice, link two kept bumps when they
overlap enough, and a cluster spanning most of the data appears abruptly at some lambda.

  overlap   of two bumps whose centres are (dx, dy) apart: the cosine similarity of their
            intensities on the plane, exp(-dx^2 / (4 sigma_x^2) - dy^2 / (4 sigma_y^2)) (1 for the
            same centre; 0.78 at one sigma, 0.37 at two)
  linked    two kept lattice points whose overlap is >= `threshold`: centres within
            2 sigma sqrt(-ln threshold) of each other (per axis scaled by its sigma). Every pair
            counts, not only lattice neighbours, so that wider bumps link farther.
  clusters  connected components of the linked pairs (scipy.sparse.csgraph.connected_components)
  statistic the size of the largest cluster as a fraction of ALL lattice points of the dataset
            (so at most lambda), and `onset`: the smallest lambda whose largest cluster holds at
            least half of the kept points.

The kept points are exactly those a training run of the same `DataConfig` trains on
(`BumpDataset(...).train`: held-out regions out, the lambda subsample of `subsample_seed`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from .config import ConfigError, DataConfig
from .data import BumpDataset

MAX_PAIRS = 50_000_000  # linked pairs held in memory (16 bytes each)
ONSET_SHARE = 0.5  # the onset: the largest cluster holds at least this share of the kept points


def bump_overlap(dx, dy, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Cosine similarity of two Gaussian bumps whose centres are (dx, dy) apart."""
    return np.exp(-np.asarray(dx) ** 2 / (4 * sigma_x**2) - np.asarray(dy) ** 2 / (4 * sigma_y**2))


def link_radius(threshold: float) -> float:
    """Distance, in units of 2 sigma, within which two bumps overlap by at least `threshold`."""
    if not 0 < threshold < 1:
        raise ConfigError(f"percolation threshold: must be in (0, 1) (got {threshold})")
    return math.sqrt(-math.log(threshold))


def largest_cluster(points: np.ndarray, sigma_x: float, sigma_y: float, threshold: float) -> int:
    """Points in the largest cluster of bumps at `points` [M, 2] linked by overlap >= threshold."""
    if len(points) == 0:
        return 0
    scaled = np.asarray(points, dtype=np.float64) / (2 * np.array([sigma_x, sigma_y]))
    tree = cKDTree(scaled)
    radius = link_radius(threshold) * (1 + 1e-9)  # a pair exactly at the threshold is linked
    expected = tree.count_neighbors(tree, radius) // 2
    if expected > MAX_PAIRS:
        raise ConfigError(f"percolation: {expected} linked pairs exceed {MAX_PAIRS}; use a coarser lattice "
                          f"(data.dx, data.dy), a narrower sigma or a higher threshold")
    pairs = tree.query_pairs(radius, output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    _, labels = csgraph.connected_components(graph, directed=False)
    return int(np.bincount(labels).max())


def cluster_row(data: DataConfig, threshold: float) -> dict:
    """The largest cluster of the training points of one dataset: {"kept", "total", "largest_cluster",
    "largest_cluster_fraction" (of all lattice points), "largest_cluster_share" (of the kept ones)}."""
    dataset = BumpDataset(data)
    sigma_x = data.sigma_x if data.sigma_x is not None else data.sigma
    sigma_y = data.sigma_y if data.sigma_y is not None else data.sigma
    biggest = largest_cluster(dataset.train_conditions, sigma_x, sigma_y, threshold)
    kept, total = len(dataset), len(dataset.conditions)
    return {"kept": kept, "total": total, "largest_cluster": biggest,
            "largest_cluster_fraction": biggest / total, "largest_cluster_share": biggest / kept}


def onset(lambdas: list[float], shares: list[float]) -> float | None:
    """The smallest lambda whose largest cluster holds >= ONSET_SHARE of the kept points (None: never)."""
    reached = [lam for lam, share in sorted(zip(lambdas, shares)) if share >= ONSET_SHARE]
    return reached[0] if reached else None
