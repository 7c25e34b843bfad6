"""Representation probes: activations of a named layer over a fixed probe set, and metrics.

The probe set (docs/conventions.md, "Measuring representations") is fixed by a `ProbeConfig`
and the run's `DataConfig`, so every checkpoint of a run is measured on the same inputs:

  conditions  a grid x grid grid of (x, y) *cell centres* over [x_min, x_max] x [y_min, y_max]
              (as `scoring.evaluation_set` does; with the default 0..32 range and grid 16 these
              are the odd integers 1, 3, ..., 31, which are lattice points of the dx = dy = 1
              dataset and stay clear of the frame's edges). Conditions inside a held-out region
              are flagged, not dropped: the metrics use the whole grid.
  inputs      `draws` noisy images x_t per condition at timestep `timestep` (`probe_inputs`):
              with `input` = independent (the default) each condition and draw has its own noise
              on a blank image (the background -1, no bump), as the sampler starts each sample
              from its own noise; at t = 999 of the default schedule sqrt(alpha_bar) = 0.006, so
              x_t is that noise to within 0.6%. "clean" noises each condition's own image instead
              (it carries the bump at small t); "shared" gives every condition one noise draw, so
              that all differences between conditions come from (x, y): a randomly initialized
              network's smooth map of them then looks ordered (docs/tuning.md, "The probe").
  activations the output of each named hook point (`config.hook_points`, or the aliases
              "layer4" = down3, the paper's late-encoder layer, and "bottleneck" = mid; in a DiT
              layer4 is written{N/2}, what its first blocks added to the patch tokens), with the
              model in eval mode under `torch.inference_mode`, flattened per condition to
              [K, C * H * W] float32 (C, H, W order). The forward pass stops once the last
              requested hook point has run (a "layer4" probe never runs the decoder).

Metrics are pure, deterministic functions of (activations [R, K, D] of R draws, conditions [K, 2]);
the order metrics are averaged over the draws, the others describe the first draw:

  umap_r2_x/_y          the paper's protocol: UMAP to 3D, then the in-sample R^2 of a linear
                        regression of x (and of y) on the 3 UMAP coordinates
  decode_r2_x/_y        cross-validated ridge R^2 of x (and y) from the standardized raw
                        activations (no UMAP randomness). With a shared input it is already 0.66-1.0
                        at random initialization: a metric to read against its null
  trustworthiness       sklearn's trustworthiness of activation space w.r.t. the true (x, y) grid:
                        1 when every activation-space neighbourhood is a true (x, y) neighbourhood;
                        trustworthiness_chance is its expectation for an unrelated arrangement (~0.5)
  knn_overlap           mean fraction of each point's k nearest neighbours in activation space that
                        are among its k nearest in (x, y) (ties at the k-th grid distance included);
                        knn_overlap_chance is its exact expectation for unrelated activations (~k / K)
  twonn_dim             TwoNN intrinsic dimension (Facco et al. 2017, MLE form). CAUTION: on a grid
                        of conditions mapped smoothly (or linearly) into activation space, each point's
                        two nearest neighbours come in +-v pairs at (nearly) equal distances, r2/r1 ~ 1,
                        and TwoNN diverges (None when exactly a lattice). Use mle_dim on grid probes.
  mle_dim               Levina-Bickel k-NN maximum-likelihood dimension (k = `knn`, MacKay-Ghahramani
                        average of inverses). Robust to the lattice ties: ~2 on a 2D grid
  participation_ratio   (sum lambda)^2 / sum lambda^2 of the PCA covariance eigenvalues: the linear
                        dimension
  xy_angle_deg          angle between the x and y *encoding* directions (the coefficients of a
                        least-squares regression of the centred activations on centred (x, y));
                        90 = orthogonal, as in a factorized code
  xy_decoder_angle_deg  angle between the ridge *decoder* weight vectors of x and of y (centred
                        activations, one global scale so that angles are kept)
  x_transfer_r2         R^2 of an x decoder (ridge) trained on the conditions in one half of the y
                        range and tested on the other half (mean of both directions); y_transfer_r2
                        likewise across the halves of the x range. A factorized code (x coded the
                        same way whatever y is) transfers: close to decode_r2_x. A coupled code
                        (the x code depends on y) does not: much lower, often negative.
  additive_share        the share of the condition-set variation (noise removed as in
                        condition_share) that a sum f(x) + g(y) carries, on the probe grid: 1 for a
                        factorized code, lower where the code of x changes with y;
                        additive_share_chance is its expectation for unrelated activations (0.12)
  condition_share       the fraction of the activations' variation across conditions that the
                        condition sets: the agreement of two noise draws of each condition (1: the
                        condition alone sets the code; 0: the noise does); condition_share_null is
                        the same with the draws paired with shuffled conditions (about 0)

`probe_metrics` computes them all into a flat dict of floats (None where not finite, for JSON).
"""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import torch

from ..config import Config, DataConfig, ProbeConfig
from ..data import in_region, render_for
from ..model import StopForward
from ..rundir import RunDir, atomic_write, read_json, read_npz


# ----------------------------------------------------------------------------
# The probe set and the activations.


def probe_conditions(data_cfg: DataConfig, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(conditions [grid^2, 2] float64 (x, y), heldout [grid^2] bool).

    Cell centres of a grid x grid grid over [x_min, x_max] x [y_min, y_max], x varying fastest
    (row-major like the dataset's lattice); `heldout` flags those inside any of data_cfg.holdout.
    """
    d = data_cfg
    xs = d.x_min + (np.arange(grid) + 0.5) * (d.x_max - d.x_min) / grid
    ys = d.y_min + (np.arange(grid) + 0.5) * (d.y_max - d.y_min) / grid
    gx, gy = np.meshgrid(xs, ys)
    conditions = np.stack([gx.ravel(), gy.ravel()], axis=1)
    heldout = np.zeros(len(conditions), dtype=bool)
    for region in d.holdout:
        heldout |= in_region(conditions, region)
    return conditions, heldout


def probe_inputs(data_cfg: DataConfig, conditions, kind: str, timestep: int, schedule, noise_seed: int,
                 draws: int) -> torch.Tensor:
    """The noisy inputs x_t [draws, K, 1, N, N] (CPU, float32) of the probe set, one per condition and draw.

    kind "independent": each condition and draw its own noise on a blank image (background -1, no
    bump), as the sampler starts from its own noise per sample; "clean": each condition's own clean
    image noised with its own noise; "shared": one noise draw per draw index, the same for every
    condition, on a blank image (then every difference between conditions comes from (x, y) alone).
    All noise comes from one generator seeded with `noise_seed`.
    """
    n, k = data_cfg.image_size, len(conditions)
    generator = torch.Generator().manual_seed(noise_seed)
    shape = (draws, 1 if kind == "shared" else k, 1, n, n)
    noise = torch.randn(shape, generator=generator).expand(draws, k, 1, n, n)
    x0 = render_for(conditions, data_cfg) if kind == "clean" else torch.full((k, 1, n, n), -1.0)
    t = torch.full((k,), timestep, dtype=torch.long)
    return torch.stack([schedule.add_noise(x0, noise[r], t) for r in range(draws)])


def capture_activations(model, conditions, layers, inputs: torch.Tensor, timestep: int,
                        batch_size: int = 256) -> dict[str, np.ndarray]:
    """{layer: [K, D] float32} activations of `layers` for the K conditions on inputs [K, 1, N, N].

    The model runs in eval mode under inference_mode; its training mode is restored afterwards, so
    this can be called from inside a training loop. Deterministic: the same model and arguments
    give identical arrays (fixed batch size).
    """
    device = next(model.parameters()).device
    conditions = torch.as_tensor(np.asarray(conditions), dtype=torch.float32)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), model.capture(list(layers), stop_early=True) as acts:
            for start in range(0, len(conditions), batch_size):
                labels = conditions[start:start + batch_size].to(device)
                b = len(labels)
                t = torch.full((b,), timestep, device=device, dtype=torch.long)
                try:
                    model(inputs[start:start + b].to(device), t, labels)
                except StopForward:  # every requested layer is recorded; the rest would be wasted
                    pass
                for name in layers:
                    chunks[name].append(acts[name].float().reshape(b, -1).cpu().numpy())
    finally:
        model.train(was_training)
    return {name: np.ascontiguousarray(np.concatenate(c), dtype=np.float32) for name, c in chunks.items()}


# ----------------------------------------------------------------------------
# Metrics: pure functions of (activations [K, D], conditions [K, 2]).


def _as64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _degenerate(acts: np.ndarray) -> bool:
    """No variation at all (a dead layer): geometry-based metrics are undefined."""
    return not np.isfinite(acts).all() or float(np.ptp(acts, axis=0).max(initial=0.0)) == 0.0


def _sq_distances(a: np.ndarray) -> np.ndarray:
    """[K, K] squared Euclidean distances, clipped at 0, float64."""
    a = a - a.mean(0)  # smaller norms: less cancellation in |a|^2 + |b|^2 - 2 a.b
    sq = (a * a).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (a @ a.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def umap_r2(acts, conds, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0):
    """The paper's protocol: (r2_x, r2_y, embedding [K, 3]).

    UMAP (umap-learn) to 3 dimensions of the raw activations, Euclidean metric, `n_neighbors`,
    `min_dist`, random_state = seed (single-threaded, reproducible), default n_epochs (500 for
    K < 10000) and spectral initialization. The exact k-NN graph is computed with scikit-learn and
    passed in (what UMAP itself does for K < 4096, minus ~5 s of numba compilation). R^2 is the
    in-sample R^2 of an ordinary linear regression of x (and y) on the 3 UMAP coordinates.
    (nan, nan, None) for a layer with no variation.
    """
    acts, conds = _as64(acts), _as64(conds)
    if _degenerate(acts) or len(acts) <= n_neighbors:
        return math.nan, math.nan, None
    import umap  # slow to import (numba): only when asked for
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import NearestNeighbors

    data = acts.astype(np.float32)
    dist, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(data).kneighbors(data)
    reducer = umap.UMAP(
        n_components=3,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric="euclidean",
        random_state=seed,
        precomputed_knn=(idx, dist.astype(np.float32)),
    )
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", and the like
            embedding = reducer.fit_transform(data).astype(np.float64)
    finally:
        # umap's numba kernels reset the OpenMP thread count that torch reads (1 -> the core count):
        # without this, a process that trains after a UMAP would sum in another order than one that never ran it.
        torch.set_num_threads(threads)
    r2 = [LinearRegression().fit(embedding, conds[:, i]).score(embedding, conds[:, i]) for i in (0, 1)]
    return float(r2[0]), float(r2[1]), embedding


def _standardize(train: np.ndarray, *others: np.ndarray):
    """StandardScaler fitted on `train` (zero-variance features keep scale 1), applied to all."""
    mu = train.mean(0)
    sd = train.std(0)
    sd[sd < 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mu))] = 1.0
    return [(a - mu) / sd for a in (train, *others)]


def _ridge_weights(z: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    """argmin |z w - yc|^2 + alpha |w|^2 for centred z [n, D], yc [n, m] -> w [D, m].
    Solved in the smaller of the primal (D x D) and dual (n x n) forms; equal to sklearn's Ridge
    without intercept, and fast when D >> n (a 4096-dim layer and 256 probes)."""
    from scipy.linalg import solve

    n, d = z.shape
    if d <= n:
        return solve(z.T @ z + alpha * np.eye(d), z.T @ yc, assume_a="pos")
    return z.T @ solve(z @ z.T + alpha * np.eye(n), yc, assume_a="pos")


def _ridge_fit_predict(x_train, y_train, x_test, alpha: float) -> np.ndarray:
    """StandardScaler + Ridge(alpha) (with intercept) fitted on the training rows, predictions on the test rows."""
    z_train, z_test = _standardize(x_train, x_test)
    y_mean = y_train.mean(0)
    return z_test @ _ridge_weights(z_train, y_train - y_mean, alpha) + y_mean


def decoding_r2(acts, conds, alpha: float = 1.0, folds: int = 5) -> tuple[float, float]:
    """Cross-validated R^2 of x and of y from the raw activations: (r2_x, r2_y).

    Standardize the features, ridge regression (`alpha`), `folds`-fold KFold with shuffle and
    random_state 0; R^2 of the pooled out-of-fold predictions.
    """
    from sklearn.model_selection import KFold

    acts, conds = _as64(acts), _as64(conds)
    if not np.isfinite(acts).all():
        return math.nan, math.nan
    pred = np.empty_like(conds)
    for train, test in KFold(folds, shuffle=True, random_state=0).split(acts):
        pred[test] = _ridge_fit_predict(acts[train], conds[train], acts[test], alpha)
    return _r2(conds[:, 0], pred[:, 0]), _r2(conds[:, 1], pred[:, 1])


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else math.nan


def knn_overlap(acts, conds, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours in activation space that are among its k
    nearest in (x, y). The true neighbourhood includes every point tied with the k-th grid distance
    (on a grid the k-th distance is usually shared), so 1.0 is reachable; chance is about k / K.
    Ties in activation space are broken by index (stable sort): deterministic."""
    acts, conds = _as64(acts), _as64(conds)
    if _degenerate(acts):
        return math.nan
    n = len(acts)
    da = _sq_distances(acts)
    np.fill_diagonal(da, np.inf)
    nn_act = np.argsort(da, axis=1, kind="stable")[:, :k]
    dt = _sq_distances(conds)
    np.fill_diagonal(dt, np.inf)
    kth = np.partition(dt, k - 1, axis=1)[:, k - 1]
    true = dt <= kth[:, None] * (1 + 1e-9) + 1e-12
    return float(true[np.arange(n)[:, None], nn_act].sum(1).mean() / k)


def neighbourhood_metrics(acts, conds, k: int = 10) -> tuple[float, float]:
    """(trustworthiness, knn_overlap) of activation space with respect to the true (x, y) grid.

    trustworthiness = sklearn.manifold.trustworthiness(X=conds, X_embedded=acts, n_neighbors=k):
    it penalizes activation-space neighbours that are far apart in (x, y) (a disordered code),
    ~0.5 for an arrangement unrelated to (x, y), 1 for a perfectly ordered one.
    """
    from sklearn.manifold import trustworthiness

    acts, conds = _as64(acts), _as64(conds)
    if _degenerate(acts):
        return math.nan, math.nan
    t = trustworthiness(conds, acts, n_neighbors=k)
    return float(t), knn_overlap(acts, conds, k)


def _unique_rows(a: np.ndarray) -> np.ndarray:
    """The distinct rows, in order of first appearance (rows compared as raw bytes: fast for long rows)."""
    a = np.ascontiguousarray(a)
    _, first = np.unique(a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel(), return_index=True)
    return a[np.sort(first)]


def twonn_dimension(acts) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017), MLE form d = N / sum_i log(r2_i / r1_i).

    Duplicate points are dropped first, so r1 > 0. Diverges (inf, None in probe_metrics) when all
    r2 = r1, which is the case for a grid mapped linearly; see the module docstring.
    """
    a = _unique_rows(_as64(acts))
    if len(a) < 3 or not np.isfinite(a).all():
        return math.nan
    d2 = _sq_distances(a)
    np.fill_diagonal(d2, np.inf)
    two = np.sqrt(np.partition(d2, 1, axis=1)[:, :2])
    r1, r2 = two.min(1), two.max(1)
    ok = r1 > 0
    s = float(np.log(r2[ok] / r1[ok]).sum())
    return len(r1[ok]) / s if s > 0 else math.inf


def mle_dimension(acts, k: int = 10) -> float:
    """Levina-Bickel (2005) maximum-likelihood intrinsic dimension from k nearest neighbours, with
    the MacKay-Ghahramani pooling (average the per-point inverse estimates, then invert):
    1 / d = mean_i [ 1 / (k - 1) sum_{j < k} log(T_k(i) / T_j(i)) ]. Duplicates are dropped first.
    Using k neighbours instead of two makes it robust to the equal distances of a grid."""
    a = _unique_rows(_as64(acts))
    if len(a) <= k or not np.isfinite(a).all():
        return math.nan
    d2 = _sq_distances(a)
    np.fill_diagonal(d2, np.inf)
    t = np.sqrt(np.sort(np.partition(d2, k - 1, axis=1)[:, :k], axis=1))  # [n, k] ascending
    inv = np.log(t[:, -1:] / t[:, :-1]).sum(1) / (k - 1)
    m = float(inv.mean())
    return 1.0 / m if m > 0 else math.inf


def participation_ratio(acts) -> float:
    """(sum lambda)^2 / sum lambda^2 over the eigenvalues of the activations' covariance."""
    a = _as64(acts)
    if _degenerate(a):
        return math.nan
    a = a - a.mean(0)
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a  # same nonzero eigenvalues, smaller side
    lam = np.clip(np.linalg.eigvalsh(gram), 0.0, None)  # proportional to the covariance eigenvalues
    return float(lam.sum() ** 2 / (lam * lam).sum())


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return math.nan
    return float(np.degrees(np.arccos(np.clip(u @ v / (nu * nv), -1.0, 1.0))))


def coding_direction_angle(acts, conds, method: str = "encoding", alpha: float = 1.0) -> float:
    """Angle in degrees, in [0, 180], between the x and the y coding directions; 90 = orthogonal.

    method "encoding": the coefficients (b_x, b_y in R^D) of the least-squares regression of the
      centred activations on centred (x, y), i.e. the directions along which the code moves when x
      (or y) grows. Well determined for any D (two regressors), no penalty to choose.
    method "decoding": the weight vectors of ridge regressions of x and of y on the centred
      activations (divided by one global scale, the RMS feature standard deviation, so that
      `alpha` means what it means for standardized features while angles are kept).
    A factorized code (x and y in separate subspaces) gives 90 with both. 90 alone is not
    evidence of structure: unrelated random activations give about 90 too.
    """
    acts, conds = _as64(acts), _as64(conds)
    if _degenerate(acts):
        return math.nan
    a = acts - acts.mean(0)
    c = conds - conds.mean(0)
    if method == "encoding":
        coef, *_ = np.linalg.lstsq(c, a, rcond=None)  # [2, D]
        return _angle(coef[0], coef[1])
    if method == "decoding":
        scale = math.sqrt(float((a * a).mean()))
        w = _ridge_weights(a / scale, c, alpha)  # [D, 2]
        return _angle(w[:, 0], w[:, 1])
    raise ValueError(f"method must be 'encoding' or 'decoding' (got {method!r})")


def decoder_transfer(acts, conds, alpha: float = 1.0) -> tuple[float, float]:
    """(x_transfer_r2, y_transfer_r2): decoders tested across the halves of the other coordinate.

    x: a ridge decoder of x trained on the conditions with y below the middle of the probed y
    range, tested (R^2) on those above it, and vice versa; the mean of the two. Points on the
    middle line are left out. y: the same across the halves of the x range. The features are
    standardized over the whole probe set (features only, no labels), not over the training half:
    a unit silent in one half would otherwise be blown up by its tiny training-half spread.
    Factorized code: the x code does not depend on y, the decoder transfers (close to decode_r2_x).
    Coupled code: the x code changes with y, the transfer R^2 drops (often below 0).
    """
    acts, conds = _as64(acts), _as64(conds)
    if not np.isfinite(acts).all():
        return math.nan, math.nan
    (z,) = _standardize(acts)
    out = []
    for target, other in ((0, 1), (1, 0)):
        o = conds[:, other]
        mid = (o.min() + o.max()) / 2
        halves = (o < mid - 1e-9, o > mid + 1e-9)
        scores = []
        for train, test in (halves, halves[::-1]):
            if train.sum() < 2 or test.sum() < 2:
                continue
            y_mean = conds[train, target].mean()
            w = _ridge_weights(z[train] - z[train].mean(0), conds[train, target] - y_mean, alpha)
            pred = (z[test] - z[train].mean(0)) @ w + y_mean
            scores.append(_r2(conds[test, target], pred))
        out.append(float(np.mean(scores)) if scores else math.nan)
    return out[0], out[1]


def condition_share(draws) -> float:
    """The fraction of the activations' variation across conditions that the condition sets, from
    R >= 2 independent noise draws [R, K, D] at the same K conditions: the mean inner product of two
    different draws of the same condition over the mean squared norm of one draw, each draw's
    features centred on their mean over the conditions. 1 when the activations depend on (x, y)
    alone, about 0 when the noise alone moves them (whatever the condition does is swamped), whether
    or not the map from (x, y) is ordered: it tells structure from none, not order from disorder."""
    a = _centred_draws(draws)
    return math.nan if a is None else _share(a, a.sum(0))


def condition_share_null(draws, permutations: int = 20, seed: int = 0) -> float:
    """`condition_share` with each draw after the first paired with randomly permuted conditions (the
    mean over `permutations`): what the share is when the draws of a condition have nothing in common."""
    a = _centred_draws(draws)
    if a is None:
        return math.nan
    rng = np.random.default_rng(seed)
    k = a.shape[1]
    return float(np.mean([_share(a, a[0] + sum(d[rng.permutation(k)] for d in a[1:])) for _ in range(permutations)]))


def _centred_draws(draws) -> np.ndarray | None:
    """The draws [R, K, D] with each draw's features centred over the conditions; None when the share
    is undefined (one draw, non-finite values, or no variation at all)."""
    a = _as64(draws)
    if a.shape[0] < 2 or not np.isfinite(a).all():
        return None
    a = a - a.mean(axis=1, keepdims=True)
    return a if (a * a).sum() > 0 else None


def _share(a: np.ndarray, total: np.ndarray) -> float:
    """Mean inner product of different draws over the mean squared norm of one, from the centred
    draws [R, K, D] and the sum of the draws as paired (`total`, [K, D])."""
    r = a.shape[0]
    own = float(np.einsum("rkd,rkd->", a, a))
    cross = float(np.einsum("kd,kd->", total, total)) - own  # the sum over pairs of different draws of <a_r, a_s>
    return (cross / (r * (r - 1))) / (own / r)


def _grid_index(conds: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column of each condition's x, row of its y) when the K conditions fill a full grid of
    distinct x values by distinct y values once each (the probe grid does); else None."""
    xs, ix = np.unique(conds[:, 0], return_inverse=True)
    ys, iy = np.unique(conds[:, 1], return_inverse=True)
    if len(xs) < 2 or len(ys) < 2 or len(xs) * len(ys) != len(conds) or len(set(zip(ix, iy))) != len(conds):
        return None
    return ix, iy


def _main_effects(a: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per x value and per y value, the mean of the activations [K, D] (centred over the conditions)
    over the other coordinate: the main effects of a two-way layout, [nx, D] and [ny, D]."""
    mx = np.zeros((ix.max() + 1, a.shape[1]))
    my = np.zeros((iy.max() + 1, a.shape[1]))
    np.add.at(mx, ix, a)
    np.add.at(my, iy, a)
    return mx / np.bincount(ix)[:, None], my / np.bincount(iy)[:, None]


def additive_share(draws, conds) -> float:
    """How much of the condition's code is a sum of a code of x and a code of y, a(x, y) = f(x) + g(y),
    from R >= 2 noise draws [R, K, D] on a full grid of conditions: the share of the condition-set
    variation (as `condition_share` measures it, inner products of different draws, so that the
    noise adds nothing) that the two main effects of a two-way layout carry. 1 for a factorized
    code; lower where the code of x changes with y (an interaction: a place code of (x, y), units
    with Gaussian fields 5 px wide, gives about 0.6 on the 16 x 16 probe grid); unrelated
    activations give `additive_share_chance`. A random network's smooth map of (x, y) is partly
    additive too: read it against the same layer at initialization. NaN off a full grid or without
    condition-set variation."""
    a = _centred_draws(draws)
    index = _grid_index(_as64(conds))
    if a is None or index is None:
        return math.nan
    ix, iy = index
    # On a full grid, mx[ix] + my[iy] is the orthogonal projection of a centred draw onto the sums
    # f(x) + g(y), so <P a_r, a_s> = <P a_r, P a_s>: the noise of different draws cancels in both terms.
    additive = np.stack([mx[ix] + my[iy] for mx, my in (_main_effects(d, ix, iy) for d in a)])
    total = _cross_draws(a, a)
    return _cross_draws(additive, a) / total if total > 0 else math.nan


def _cross_draws(u: np.ndarray, a: np.ndarray) -> float:
    """The sum over pairs of different draws r != s of <u_r, a_s>, for [R, K, D] arrays."""
    return float(np.einsum("kd,kd->", u.sum(0), a.sum(0)) - np.einsum("rkd,rkd->", u, a))


def additive_share_chance(conds) -> float:
    """The expected `additive_share` of activations unrelated to (x, y) on a full grid of nx x ny
    conditions: the sums f(x) + g(y) span nx + ny - 2 of the K - 1 directions of centred variation,
    (nx + ny - 2) / (K - 1) (0.12 on the 16 x 16 probe grid); NaN off a full grid."""
    conds = _as64(conds)
    index = _grid_index(conds)
    if index is None:
        return math.nan
    ix, iy = index
    return (ix.max() + iy.max()) / (len(conds) - 1)


def knn_overlap_chance(conds, k: int = 10) -> float:
    """The expected `knn_overlap` of activations unrelated to (x, y): each point's k activation-space
    neighbours are then k random others, and a fraction |true neighbourhood| / (K - 1) of them is
    true; averaged over the points (with the grid's ties, a true neighbourhood can exceed k)."""
    conds = _as64(conds)
    dt = _sq_distances(conds)
    np.fill_diagonal(dt, np.inf)
    kth = np.partition(dt, k - 1, axis=1)[:, k - 1]
    true = dt <= kth[:, None] * (1 + 1e-9) + 1e-12
    return float(true.sum(1).mean() / (len(conds) - 1))


def trustworthiness_chance(n: int, k: int = 10) -> float:
    """The expected trustworthiness of n points whose k nearest neighbours in activation space are
    unrelated to (x, y): each neighbour's rank in (x, y) is uniform on 1..n-1, so its expected
    excess over k is (n - 1 - k)(n - k) / (2 (n - 1)), and the trustworthiness formula gives
    1 - (n - 1 - k)(n - k) / ((n - 1)(2n - 3k - 1)) (0.51 for n = 256, k = 10)."""
    return 1.0 - (n - 1 - k) * (n - k) / ((n - 1) * (2 * n - 3 * k - 1))


METRIC_KEYS = (
    "umap_r2_x", "umap_r2_y", "decode_r2_x", "decode_r2_y", "trustworthiness", "knn_overlap",
    "twonn_dim", "mle_dim", "participation_ratio", "xy_angle_deg", "xy_decoder_angle_deg",
    "x_transfer_r2", "y_transfer_r2", "additive_share", "additive_share_chance", "condition_share",
    "condition_share_null", "knn_overlap_chance", "trustworthiness_chance",
)
# The order of the code, averaged over the noise draws (the rule reads it); the other metrics describe
# the first draw.
PER_DRAW_KEYS = ("trustworthiness", "knn_overlap")


def probe_metrics(acts, conds, cfg: ProbeConfig, return_embedding: bool = False):
    """All metrics of one layer as a flat {key: float or None} (keys `METRIC_KEYS`; the UMAP ones
    are absent when cfg.umap is False). `acts` is [K, D] (one draw) or [R, K, D] (R noise draws at
    the same K conditions): the `PER_DRAW_KEYS` are averaged over the draws, the others describe the
    first draw, and `condition_share` and its null need R >= 2. Non-finite values become None. With
    return_embedding, (metrics, UMAP embedding [K, 3] of the first draw, or None).

    BLAS runs single-threaded inside (threadpoolctl): these are small problems (K = 256), and
    several multi-threaded BLAS copies (numpy's, scipy's) next to a training process made them
    5-10x slower here through oversubscription; it also keeps the results bit-for-bit stable.
    """
    from threadpoolctl import threadpool_limits

    acts = _as64(acts)
    draws = acts if acts.ndim == 3 else acts[None]
    with threadpool_limits(limits=1, user_api="blas"):
        return _probe_metrics(draws, _as64(conds), cfg, return_embedding)


def _probe_metrics(draws: np.ndarray, conds: np.ndarray, cfg: ProbeConfig, return_embedding: bool):
    acts = draws[0]
    m: dict[str, float] = {}
    embedding = None
    if cfg.umap:
        m["umap_r2_x"], m["umap_r2_y"], embedding = umap_r2(
            acts, conds, cfg.umap_neighbors, cfg.umap_min_dist, cfg.umap_seed
        )
    m["decode_r2_x"], m["decode_r2_y"] = decoding_r2(acts, conds, cfg.ridge_alpha, cfg.cv_folds)
    order = np.array([neighbourhood_metrics(a, conds, cfg.knn) for a in draws])
    m["trustworthiness"], m["knn_overlap"] = order.mean(axis=0)
    m["twonn_dim"] = twonn_dimension(acts)
    m["mle_dim"] = mle_dimension(acts, cfg.knn)
    m["participation_ratio"] = participation_ratio(acts)
    m["xy_angle_deg"] = coding_direction_angle(acts, conds, "encoding")
    m["xy_decoder_angle_deg"] = coding_direction_angle(acts, conds, "decoding", cfg.ridge_alpha)
    m["x_transfer_r2"], m["y_transfer_r2"] = decoder_transfer(acts, conds, cfg.ridge_alpha)
    m["additive_share"] = additive_share(draws, conds)
    m["additive_share_chance"] = additive_share_chance(conds)
    m["condition_share"] = condition_share(draws)
    m["condition_share_null"] = condition_share_null(draws)
    m["knn_overlap_chance"] = knn_overlap_chance(conds, cfg.knn)
    m["trustworthiness_chance"] = trustworthiness_chance(len(conds), cfg.knn)
    m = {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in m.items()}
    return (m, embedding) if return_embedding else m


PCA_COMPONENTS = 3


def pca_embedding(acts) -> np.ndarray | None:
    """The first draw's activations [K, D] projected on their first PCA_COMPONENTS principal axes
    (float32): a view of the code at every checkpoint, kept where the activations themselves are not.
    None where an activation is not finite (a diverged network). Single-threaded BLAS, like
    `probe_metrics`, so that the projection is the same bit for bit."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    acts = _as64(acts)
    if not np.isfinite(acts).all():
        return None
    components = min(PCA_COMPONENTS, *acts.shape)
    # A code the condition does not move (a DiT at initialization: adaLN-zero blocks pass the noisy
    # input through) has no variance: its projection is zeros, and sklearn's explained-variance ratio,
    # computed on the side, divides 0 by 0.
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(invalid="ignore", divide="ignore"):
        return PCA(n_components=components, svd_solver="full").fit_transform(acts).astype(np.float32)


def probe_checkpoint(model, cfg: Config, schedule) -> dict:
    """Probe every layer of cfg.probe on one model: {"conditions", "heldout", "layers": {layer:
    {"metrics", "embedding" (UMAP [K, 3] or None), "pca" ([K, 3] or None, `pca_embedding`), "activations"
    ([R, K, D], one per noise draw)}}}."""
    p = cfg.probe
    conds, heldout = probe_conditions(cfg.data, p.grid)
    inputs = probe_inputs(cfg.data, conds, p.input, p.timestep, schedule, p.noise_seed, p.draws)
    per_draw = [capture_activations(model, conds, p.layers, x_t, p.timestep) for x_t in inputs]
    layers = {}
    for name in p.layers:
        a = np.stack([d[name] for d in per_draw])
        metrics, embedding = probe_metrics(a, conds, p, return_embedding=True)
        layers[name] = {"metrics": metrics, "embedding": embedding, "pca": pca_embedding(a[0]), "activations": a}
    return {"conditions": conds, "heldout": heldout, "layers": layers}


def write_probe(run: RunDir, step: int, result: dict, cfg: Config, phases: dict[str, str], rule: str,
                keep_activations: bool = True) -> None:
    """Write (or add layers to) the probe files of a checkpoint: layers probed before are kept. The
    JSON holds each layer's metrics, its phase and the phase rule that labelled it (`phases.rule_id`);
    the npz the probe conditions, each layer's PCA projection (and UMAP embedding where computed) and,
    with keep_activations, the activations of the first noise draw (float16), for pictures."""
    json_path, npz_path = run.probe_path(cfg.probe, step, "json"), run.probe_path(cfg.probe, step, "npz")
    json_path.parent.mkdir(exist_ok=True)
    record = read_json(json_path) if json_path.exists() else {"step": step, "layers": {}, "phases": {}}
    record.update({"input": cfg.probe.input, "timestep": cfg.probe.timestep, "draws": cfg.probe.draws, "rule": rule})
    record["layers"].update({name: layer["metrics"] for name, layer in result["layers"].items()})
    record.setdefault("phases", {}).update(phases)
    arrays = read_npz(npz_path) if npz_path.exists() else {}
    arrays.update({"conditions": result["conditions"], "heldout": result["heldout"]})
    for name, layer in result["layers"].items():
        if layer["pca"] is not None:
            arrays[f"pca.{name}"] = layer["pca"]
        if layer["embedding"] is not None:
            arrays[f"umap.{name}"] = layer["embedding"]
        if keep_activations:
            arrays[f"activations.{name}"] = layer["activations"][0].astype(np.float16)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(npz_path, buffer.getvalue())
    atomic_write(json_path, json.dumps(record, indent=1).encode())


def load_probes(run: RunDir, cfg: Config) -> list[dict]:
    """The probe records (metrics and phase per layer) of a run's probe set (cfg.probe), by step."""
    return sorted((read_json(p) for p in run.probe_files(cfg.probe)), key=lambda r: r["step"])


def flat_record(step: int, result: dict, phases: dict[str, str]) -> dict:
    """One metrics.jsonl line: {"step", "probe.layer4.knn_overlap", ..., "phase.layer4": "B"}."""
    record = {"step": step}
    for name, layer in result["layers"].items():
        record.update({f"probe.{name}.{k}": v for k, v in layer["metrics"].items()})
    record.update({f"phase.{name}": label for name, label in phases.items()})
    return record
