"""Representation probes: probe set, activations, and metrics on synthetic codes of known structure."""

import math

import numpy as np
import pytest
import torch

from diffrep.evaluation import probes as P
from diffrep.config import ConfigError, DataConfig, Holdout, ProbeConfig, make_config
from diffrep.diffusion import NoiseSchedule
from diffrep.model import build_model

D = 64
L = 32.0
CONDS, _ = P.probe_conditions(DataConfig(), 16)  # K = 256, cell centres 1, 3, ..., 31
K = len(CONDS)
FAST = ProbeConfig(umap=False)


# ----------------------------------------------------------------------------
# Synthetic activations [K, D] of the three phases, and factorized / coupled codes.


def unrelated(seed=0):
    """Phase A: Gaussian points unrelated to (x, y)."""
    return np.random.default_rng(seed).normal(size=(K, D))


def shuffled_grid(seed=0):
    """Phase B: the (x, y) grid embedded linearly in D dims, grid points assigned to the wrong conditions."""
    rng = np.random.default_rng(seed)
    return CONDS[rng.permutation(K)] @ rng.normal(size=(2, D))


def ordered(seed=0):
    """Phase C: a smooth nonlinear embedding of the true (x, y): random sinusoidal features."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, D)) * 0.7 * 2 * np.pi / L
    return np.sin(CONDS @ w + rng.uniform(0, 2 * np.pi, D))


def _fourier(v, dims=4):
    f = np.pi * np.outer(v / L, 0.5 * np.arange(1, dims + 1))
    return np.concatenate([np.cos(f), np.sin(f)], axis=1)


def factorized():
    """Clifford-torus-like: cos/sin features of x alone in dims 0-7, of y alone in dims 8-15, zeros after."""
    a = np.zeros((K, D))
    a[:, 0:8], a[:, 8:16] = _fourier(CONDS[:, 0]), _fourier(CONDS[:, 1])
    return a


def band_coupled():
    """Coupled: x is coded in dims 0-7 when y is in the lower half, in dims 8-15 in the upper half."""
    a = np.zeros((K, D))
    low = CONDS[:, 1] < L / 2
    fx = _fourier(CONDS[:, 0])
    a[low, 0:8], a[~low, 8:16] = fx[low], fx[~low]
    a[:, 16:24] = _fourier(CONDS[:, 1])
    return a


def place_coupled(seed=0):
    """Coupled: conjunctive 2D place fields (each unit responds to one (x, y) region)."""
    centres = np.random.default_rng(seed).uniform(0, L, size=(D, 2))
    d2 = ((CONDS[:, None, :] - centres[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * (0.15 * L) ** 2))


# ----------------------------------------------------------------------------
# The probe set and activations.


def test_probe_conditions_are_cell_centres_and_flag_holdouts():
    d = DataConfig(holdout=[Holdout(kind="square", width=4.0, x=16.0, y=16.0)])
    conds, heldout = P.probe_conditions(d, 16)
    assert conds.shape == (256, 2) and heldout.shape == (256,)
    assert np.array_equal(np.unique(conds[:, 0]), np.arange(1.0, 32.0, 2.0))
    assert np.array_equal(conds[:3], [[1, 1], [3, 1], [5, 1]])  # x varies fastest
    inside = (np.abs(conds - 16) <= 2).all(1)  # |x - 16| <= 2 and |y - 16| <= 2: x, y in {15, 17}
    assert np.array_equal(heldout, inside) and heldout.sum() == 4


def test_capture_activations_shapes_and_determinism():
    cfg = make_config("tiny")  # 16 x 16 images, widths 8, 16, 16, T = 100
    torch.manual_seed(0)
    model = build_model(cfg).train()
    conds, _ = P.probe_conditions(cfg.data, 6)
    inputs = P.probe_inputs(cfg.data, conds, "independent", 99, NoiseSchedule(cfg.diffusion), 0, 2)
    assert inputs.shape == (2, 36, 1, 16, 16)
    args = (model, conds, ["layer4", "up2"], inputs[0], 99)
    first = P.capture_activations(*args, batch_size=16)
    second = P.capture_activations(*args, batch_size=16)
    assert model.training  # mode restored
    assert first["layer4"].shape == (36, 16 * 4 * 4) and first["up2"].shape == (36, 8 * 8 * 8)
    assert first["layer4"].dtype == np.float32
    for name in first:
        assert np.array_equal(first[name], second[name])
    assert np.ptp(first["layer4"], axis=0).max() > 0


@pytest.mark.parametrize("kind", ["independent", "clean", "shared"])
def test_probe_inputs(kind):
    cfg = make_config("default")
    conds, _ = P.probe_conditions(cfg.data, 4)
    schedule = NoiseSchedule(cfg.diffusion)
    x = P.probe_inputs(cfg.data, conds, kind, 100, schedule, 0, 2)
    assert torch.equal(x, P.probe_inputs(cfg.data, conds, kind, 100, schedule, 0, 2))  # one seed, one input
    assert not torch.equal(x[0], x[1])  # the draws differ
    assert torch.equal(x[0, 0], x[0, 1]) == (kind == "shared")  # conditions share the noise only when shared
    # x_t = sqrt(ab) x_0 + sqrt(1 - ab) noise, x_0 the condition's own image or a blank one.
    ab = schedule.alphas_cumprod[100].item()
    if kind == "clean":
        from diffrep.data import render_for

        clean = render_for(conds, cfg.data)
        noise = (x[0] - ab ** 0.5 * clean) / (1 - ab) ** 0.5
        assert noise.std().item() == pytest.approx(1, abs=0.05)
    else:
        assert (x[0] - ab ** 0.5 * -1).mean().item() == pytest.approx(0, abs=0.1)  # a blank image, noised


def test_condition_share_tells_structure_from_noise_not_order():
    rng = np.random.default_rng(0)
    code = ordered()
    noisy = lambda scale: np.stack([code + scale * rng.normal(size=code.shape) for _ in range(2)])  # noqa: E731
    assert P.condition_share(noisy(0.0)) == pytest.approx(1.0)
    equal = np.sqrt(code.var(axis=0).mean())  # noise as large as the code's variation across conditions
    assert P.condition_share(noisy(equal)) == pytest.approx(0.5, abs=0.05)
    assert abs(P.condition_share(np.stack([unrelated(1), unrelated(2)]))) < 0.05  # noise alone
    lookup = shuffled_grid()  # a disordered code: still fully set by the condition
    assert P.condition_share(np.stack([lookup, lookup])) == pytest.approx(1.0)
    assert abs(P.condition_share_null(noisy(0.0))) < 0.05  # draws paired with shuffled conditions
    assert math.isnan(P.condition_share(code[None]))  # one draw: undefined


def test_chance_levels_are_the_means_of_shuffled_labels():
    rng = np.random.default_rng(0)
    acts = ordered()
    knn, trust = [], []
    for _ in range(200):
        t, k = P.neighbourhood_metrics(acts, CONDS[rng.permutation(K)], 10)
        knn.append(k)
        trust.append(t)
    assert np.mean(knn) == pytest.approx(P.knn_overlap_chance(CONDS, 10), abs=0.005)
    assert np.mean(trust) == pytest.approx(P.trustworthiness_chance(K, 10), abs=0.005)
    small, _ = P.probe_conditions(DataConfig(), 6)
    assert P.knn_overlap_chance(small, 5) > P.knn_overlap_chance(CONDS, 5)  # fewer conditions: more by chance


# ----------------------------------------------------------------------------
# The three phases.


@pytest.fixture(scope="module")
def phase_metrics():
    return {name: P.probe_metrics(f(), CONDS, FAST) for name, f in
            (("A", unrelated), ("B", shuffled_grid), ("C", ordered))}


def test_unrelated_points_have_no_structure(phase_metrics):
    m = phase_metrics["A"]
    assert m["knn_overlap"] < 0.1 and m["trustworthiness"] < 0.6
    assert m["decode_r2_x"] < 0.2 and m["decode_r2_y"] < 0.2
    assert m["mle_dim"] > 15 and m["participation_ratio"] > 30


def test_shuffled_grid_is_a_disordered_2d_manifold(phase_metrics):
    m = phase_metrics["B"]
    assert abs(m["mle_dim"] - 2) < 0.6 and m["participation_ratio"] < 2.5
    assert m["knn_overlap"] < 0.1 and m["trustworthiness"] < 0.6


def test_ordered_embedding_is_ordered(phase_metrics):
    m = phase_metrics["C"]
    assert m["knn_overlap"] > 0.9 and m["trustworthiness"] > 0.95
    assert m["decode_r2_x"] > 0.9 and m["decode_r2_y"] > 0.9
    assert abs(m["mle_dim"] - 2) < 0.7


def test_phase_rule_labels_the_synthetic_cases():
    from diffrep.evaluation.phases import classify

    rng = np.random.default_rng(0)
    two = lambda code: np.stack([code + 0.1 * code.std() * rng.normal(size=code.shape) for _ in range(2)])  # noqa: E731
    cases = {"A": np.stack([unrelated(1), unrelated(2)]), "B": two(shuffled_grid()), "C": two(ordered())}
    assert [classify(P.probe_metrics(cases[p], CONDS, FAST)) for p in "ABC"] == ["A", "B", "C"]


def test_umap_leaves_torch_thread_count_as_it_was():
    # umap's numba kernels reset OpenMP's thread count; a run trained after them must sum as before.
    before = torch.get_num_threads()
    P.umap_r2(unrelated(), CONDS)
    assert torch.get_num_threads() == before


def test_umap_r2_separates_ordered_from_unrelated():
    cfg = ProbeConfig(umap=True)
    good, emb = P.probe_metrics(ordered(), CONDS, cfg, return_embedding=True)
    bad = P.umap_r2(unrelated(), CONDS, cfg.umap_neighbors, cfg.umap_min_dist, cfg.umap_seed)
    assert emb.shape == (K, 3)
    assert good["umap_r2_x"] > 0.8 and good["umap_r2_y"] > 0.8
    assert bad[0] < 0.3 and bad[1] < 0.3
    assert "umap_r2_x" not in P.probe_metrics(ordered(), CONDS, FAST)


# ----------------------------------------------------------------------------
# Single metrics.


def test_identity_code_is_perfectly_ordered_despite_grid_ties():
    trust, overlap = P.neighbourhood_metrics(CONDS * 3.0, CONDS, 10)
    assert overlap == 1.0  # ties at the k-th grid distance are part of the true neighbourhood
    assert trust > 0.999  # sklearn breaks the grid's distance ties by index: 0.9995, not 1


def test_twonn_dimension_on_known_manifolds():
    rng = np.random.default_rng(0)
    plane = rng.uniform(size=(256, 2)) @ rng.normal(size=(2, 10))
    assert P.twonn_dimension(plane) == pytest.approx(2, abs=0.3)
    assert P.twonn_dimension(rng.normal(size=(256, 5))) == pytest.approx(5, abs=1)
    # Duplicates are dropped; an exact lattice has r2 = r1 everywhere, so TwoNN diverges ...
    assert P.twonn_dimension(np.vstack([plane, plane])) == P.twonn_dimension(plane)
    assert P.twonn_dimension(CONDS) == math.inf
    # ... while the k-NN maximum likelihood estimate is fine on it.
    assert P.mle_dimension(CONDS, 10) == pytest.approx(2, abs=0.4)
    assert P.mle_dimension(plane, 10) == pytest.approx(2, abs=0.3)


def test_participation_ratio():
    a = np.zeros((100, 20))
    a[:, :4] = np.random.default_rng(0).choice([-1.0, 1.0], size=(100, 4))
    a[:, :4] -= a[:, :4].mean(0)
    a[:, :4] /= a[:, :4].std(0)
    assert P.participation_ratio(a) == pytest.approx(4, rel=0.15)  # 4 equal, nearly uncorrelated axes
    assert P.participation_ratio(np.outer(np.arange(50.0), np.ones(8))) == pytest.approx(1.0)


def test_pca_embedding_of_a_code_the_condition_does_not_move_is_zeros_without_a_warning():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = P.pca_embedding(np.ones((16, 8)))
        line = P.pca_embedding(np.outer(np.arange(16.0), np.ones(8)))
    assert flat.shape == (16, 3) and not flat.any()
    assert np.corrcoef(line[:, 0], np.arange(16.0))[0, 1] ** 2 == pytest.approx(1.0)  # a moving code keeps its axis
    assert P.pca_embedding(np.full((4, 2), np.nan)) is None


def test_ridge_decoding_matches_scikit_learn():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    for dim in (20, 300):  # the primal and the dual solve
        x = rng.normal(size=(100, dim)) * rng.uniform(0.1, 10, dim)
        y = np.stack([x[:, 0] + rng.normal(size=100), np.tanh(x[:, 1])], 1)
        pred = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=2.0)), x, y,
                                 cv=KFold(5, shuffle=True, random_state=0))
        ours = P.decoding_r2(x, y, alpha=2.0, folds=5)
        assert ours == pytest.approx(tuple(r2_score(y, pred, multioutput="raw_values")), abs=1e-8)


def test_factorized_code_is_orthogonal_and_transfers():
    a = factorized()
    assert P.coding_direction_angle(a, CONDS) == pytest.approx(90, abs=2)
    assert P.coding_direction_angle(a, CONDS, "decoding") == pytest.approx(90, abs=2)
    tx, ty = P.decoder_transfer(a, CONDS)
    assert tx > 0.95 and ty > 0.95


def test_coupled_codes_transfer_worse():
    tx, ty = P.decoder_transfer(band_coupled(), CONDS)
    assert tx < 0.3 and ty > 0.95  # only the x code depends on the other coordinate
    dx, dy = P.decoding_r2(place_coupled(), CONDS)
    tx, ty = P.decoder_transfer(place_coupled(), CONDS)
    assert dx > 0.95 and dy > 0.95  # decodable in distribution ...
    assert tx < 0.75 and ty < 0.75  # ... but a decoder from one half fails on the other


def noisy_draws(code, noise, draws=2, seed=0):
    """`draws` noise draws of a code [K, D]: independent Gaussian noise of `noise` times its spread."""
    rng = np.random.default_rng(seed)
    return np.stack([code + noise * code.std() * rng.normal(size=code.shape) for _ in range(draws)])


@pytest.mark.parametrize("noise", [0.0, 1.0, 3.0])
def test_additive_share_tells_a_factorized_code_from_coupled_ones_whatever_the_noise(noise):
    assert P.additive_share(noisy_draws(factorized(), noise), CONDS) == pytest.approx(1.0, abs=0.03)
    assert P.additive_share(noisy_draws(band_coupled(), noise), CONDS) < 0.85  # x's code depends on y's half
    assert P.additive_share(noisy_draws(place_coupled(), noise), CONDS) < 0.7  # conjunctive place fields


def test_additive_share_of_unrelated_activations_is_its_chance_level():
    chance = P.additive_share_chance(CONDS)
    assert chance == pytest.approx((15 + 15) / (K - 1))  # the sums f(x) + g(y) span 30 of 255 directions
    rng = np.random.default_rng(1)
    draws = noisy_draws(factorized(), 0.5)
    shuffled = [P.additive_share(draws[:, rng.permutation(K)], CONDS) for _ in range(20)]
    assert np.mean(shuffled) == pytest.approx(chance, abs=0.01)
    assert math.isnan(P.additive_share(draws[:, :200], CONDS[:200]))  # not a full grid
    assert math.isnan(P.additive_share_chance(CONDS[:200]))


def test_metrics_are_deterministic_and_json_safe():
    a = ordered()
    assert P.probe_metrics(a, CONDS, FAST) == P.probe_metrics(a.copy(), CONDS, FAST)
    dead = P.probe_metrics(np.ones((2, K, 8)), CONDS, ProbeConfig(umap=True))
    assert set(dead) == set(P.METRIC_KEYS)
    for key in ("umap_r2_x", "trustworthiness", "knn_overlap", "twonn_dim", "participation_ratio", "xy_angle_deg",
                "condition_share"):
        assert dead[key] is None
    assert all(v is None or math.isfinite(v) for v in dead.values())


# ----------------------------------------------------------------------------
# Settings.


@pytest.mark.parametrize(
    "change, message",
    [
        ({"probe.layers": []}, r"^probe\.layers: must be a non-empty list"),
        ({"probe.layers": ["layer5"]}, r"^probe\.layers: unknown hook point 'layer5'; allowed: .*layer4"),
        ({"probe.layers": ["mid", "mid"]}, r"^probe\.layers: must be a non-empty list of distinct"),
        ({"diffusion.timesteps": 100}, r"^probe\.timestep: must be in \[0, diffusion\.timesteps - 1 = 99\] \(got 999\)"),
        ({"probe.timestep": -1}, r"^probe\.timestep: must be in"),
        ({"probe.grid": 3}, r"^probe\.grid: must be in \[4, 64\] \(got 3\)"),
        ({"probe.noise_seed": -1}, r"^probe\.noise_seed"),
        ({"probe.umap_neighbors": 16, "probe.grid": 4}, r"^probe\.umap_neighbors: must be in \[2, probe\.grid\^2 - 1 = 15\]"),
        ({"probe.umap_min_dist": 1.5}, r"^probe\.umap_min_dist: must be in \[0, 1\]"),
        ({"probe.knn": 128}, r"^probe\.knn: must be >= 2 and < probe\.grid\^2 / 2 = 128"),
        ({"probe.ridge_alpha": 0.0}, r"^probe\.ridge_alpha: must be > 0"),
        ({"probe.cv_folds": 1}, r"^probe\.cv_folds: must be in \[2, 20\]"),
        ({"probe.input": "blank"}, r"^probe\.input: must be one of independent, clean, shared \(got 'blank'\)"),
        ({"probe.draws": 0}, r"^probe\.draws: must be in \[1, 16\]"),
        ({"probe.keep_every": -1}, r"^probe\.keep_every: must be >= 0"),
    ],
)
def test_probe_config_errors_name_the_setting(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        make_config("default", change)
    assert "\n" not in str(err.value)
