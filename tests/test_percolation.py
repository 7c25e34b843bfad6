"""Percolation of overlapping bumps (diffrep/percolation.py) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffrep.config import ConfigError, make_config
from diffrep.data import BumpDataset
from diffrep.percolation import bump_overlap, cluster_row, largest_cluster, link_radius, onset


def test_overlap_is_the_cosine_similarity_of_two_bumps():
    assert bump_overlap(0, 0, 1, 1) == 1.0
    assert bump_overlap(2, 0, 1, 1) == pytest.approx(math.exp(-1))  # one e-fold at two sigma
    assert bump_overlap(0, 3, 1, 1.5) == pytest.approx(math.exp(-1))  # each axis by its own sigma
    # The same number from the images: the normalized inner product of two rendered bumps
    u = np.arange(-20, 20, 0.05)
    a, b = np.exp(-u**2 / 2), np.exp(-(u - 1.3) ** 2 / 2)
    assert (a @ b / (a @ a)) ** 2 == pytest.approx(float(bump_overlap(1.3, 1.3, 1, 1)), rel=1e-6)


def test_largest_cluster_links_pairs_at_or_above_the_threshold():
    line = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [4.0, 0.0], [5.0, 0.0]])
    one_step = math.exp(-1 / 4)  # overlap of bumps 1 px apart at sigma 1
    assert largest_cluster(line, 1, 1, one_step) == 3  # 3-4-5 linked; 1-3 (2 px apart) not
    assert largest_cluster(line, 1, 1, one_step + 1e-6) == 1
    assert largest_cluster(line, 1, 1, math.exp(-1)) == 5  # 2 px apart is now close enough
    assert largest_cluster(line, 2, 2, one_step) == 5  # wider bumps link farther
    assert largest_cluster(line[:0], 1, 1, 0.5) == 0
    assert link_radius(math.exp(-4)) == pytest.approx(2.0)


def test_threshold_outside_zero_one_is_refused():
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match=r"^percolation threshold: must be in \(0, 1\)"):
            link_radius(bad)


def test_cluster_row_counts_the_training_points_of_the_dataset():
    data = make_config("tiny", {"data.keep_fraction": 0.5, "data.subsample_seed": 3}).data  # 9 x 9 lattice, dx = 2
    dataset = BumpDataset(data)
    row = cluster_row(data, 0.5)
    assert (row["kept"], row["total"]) == (len(dataset), 81) and row["kept"] == round(0.5 * 81)
    assert row["largest_cluster"] == largest_cluster(dataset.train_conditions, 1.0, 1.0, 0.5)
    assert row["largest_cluster_fraction"] == row["largest_cluster"] / 81
    # sigma 1, threshold 0.5: linked within 1.67 px < dx = 2, so no two lattice points link
    assert row["largest_cluster"] == 1
    # sigma 2: within 3.33 px, the 4- and 8-neighbours (2 and 2.83 px): the full lattice is one cluster
    assert cluster_row(make_config("tiny", {"data.sigma": 2.0}).data, 0.5)["largest_cluster_fraction"] == 1.0


def test_onset_is_the_first_lambda_whose_cluster_holds_half_the_kept_points():
    assert onset([0.1, 0.2, 0.3, 0.4], [0.05, 0.2, 0.5, 0.9]) == 0.3
    assert onset([0.4, 0.1, 0.3], [0.9, 0.05, 0.49]) == 0.4  # order of the input does not matter
    assert onset([0.1, 0.2], [0.1, 0.2]) is None
