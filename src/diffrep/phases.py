"""Phase labels of a checkpoint from its representation metrics alone, and how they relate to generation.

The paper's phases (../shared/PAPER.md): A, no structure; B, a disordered 2D manifold; C, an
ordered 2D manifold. `classify` labels a checkpoint from the metrics of `diffrep.probes`
(`probe_metrics` of one layer), compared with the same metrics at initialization (step 0). It
never looks at generation: that is what the phases are later compared with (`agreement`,
`rank_correlation`), so using it here would make the comparison circular.

Why compare with initialization: a randomly initialized UNet already maps the sinusoidal (x, y)
encoding smoothly: at step 0 the default preset's layer4 has decode R^2 1.00, trustworthiness
0.96 and knn_overlap 0.72 (PAPER.md's prototype: decode R^2 0.66-0.91, trustworthiness ~0.8). What
the untrained map lacks is a low dimension: mle_dim ~4.7, participation ratio 6.4-10. Early
training first destroys that order (knn_overlap ~0.3, trustworthiness ~0.8) and collapses the
linear dimension (participation ratio 2-3): the map is rebuilt. So order counts only together with
a 2D dimension, and the dimension's collapse is measured against its value at init.

The rule (thresholds in `PhaseConfig`, keys `phase.<name>`), first match wins:

  C  an ordered 2D manifold: knn_overlap >= c_min_knn_overlap
                             and trustworthiness >= c_min_trustworthiness
                             and mle_dim <= c_max_dim
  B  a 2D manifold, not (yet) ordered; any of
                  mle_dim <= b_max_dim                                 (locally ~2D)
                  participation_ratio <= b_max_pr                      (linearly ~2D)
                  participation_ratio <= b_pr_fraction * its value at init  (dimension collapsed)
                  mean decode R^2 >= b_min_decode and >= its value at init + b_min_decode_gain
  A  otherwise.

Missing metrics (None) never satisfy a criterion; without init metrics (init_metrics=None) the
relative criteria of B do not fire.

Synthetic calibration (tests/test_probes.py, K = 256 grid, D = 64, k = 10):
  unrelated Gaussian points   knn_overlap 0.05, trust 0.51, mle_dim 28,  PR 51,  decode R^2 < 0
  shuffled linear 2D grid     knn_overlap 0.05, trust 0.51, mle_dim 2.4, PR 1.8, decode R^2 ~0
  smooth ordered embedding    knn_overlap 0.98, trust 1.00, mle_dim 2.4, PR 6.7, decode R^2 1.00
Real runs (the thresholds' defaults were chosen on these two; no third seed was held out):
dx = dy = 0.5, lr 2e-3 held constant, seeds 0 and 1, layer4 at t = 999, EMA weights. Both go A
(init) -> B (collapse, "wrong" bumps, from step ~50-250) -> C (seed 0 at steps 2,500-2,721: knn
0.64-0.71, trust 0.92-0.93, mle_dim 2.7-3.1; seed 1 at 3,500-4,000) while generation turns from
"wrong" to accurate. With the rate held at 2e-3, the code spread out again as generation became
accurate (seed 0, step 4,000: knn_overlap 0.44-0.57, mle_dim 3.7-4.0), at layers mid and up2 and
at t = 500 and 100 too; with the `default` preset's cosine decay of the rate it stays ordered
(seed 0: C from 2,500 to 4,000, knn_overlap 0.62 -> 0.75, accuracy 0.61 at 4,000; seed 1 stays
in B with "wrong" bumps to step 4,000; README, "Choosing the default (measured)"). With min-SNR
loss weighting (the default since) both seeds are C from step 1,000-1,500 and accurate by 3,000;
with a 3,000-step decay they stay C (trust 0.91 at the end, just above c_min_trustworthiness),
with the rate still high at 4,000 steps trust falls to 0.85-0.87 and the rule says B again.
With AdamW's beta2 = 0.99 and a 2,000-step decay seed 1 is C from step 1,000 with trust 0.94-0.98
(seed 0 with a 1,500-step decay: C from 750, trust 0.98); with min-SNR gamma 1, lr 3e-3 and a
1,500-step decay both seeds are A at steps 0-2, B from 4 and C from 772 to the end (trust 0.97-0.99,
knn_overlap 0.70-0.83); with lr 4e-3 seeds 0-3 go A -> B -> C, C from 500-772, and with beta2 0.9
and a 1,200-step decay (the default now) seeds 0-5 go A -> B -> C, C from 500-630 (trust 0.91-0.99).
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple, Sequence

import numpy as np

from .config import PhaseConfig

PHASES = ("A", "B", "C")
# The generation outcome (diffrep.detect.OUTCOMES) that each phase predicts. A: several bumps
# (the paper's phase A); "none" (no bump at all) is also an unstructured output and counts as A.
PHASE_OUTCOMES = {"A": ("several", "none"), "B": ("wrong",), "C": ("accurate",)}
_OUTCOME_NAMES = ("none", "several", "wrong", "accurate")  # = diffrep.detect.OUTCOMES, by index


# ----------------------------------------------------------------------------
# The rule.


def _finite(v) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(v)


def _get(metrics: dict | None, key: str) -> float | None:
    if metrics is None:
        return None
    v = metrics.get(key)
    return float(v) if _finite(v) else None


def _mean_decode(metrics: dict | None) -> float | None:
    x, y = _get(metrics, "decode_r2_x"), _get(metrics, "decode_r2_y")
    return None if x is None or y is None else (x + y) / 2


def explain(metrics: dict, init_metrics: dict | None, cfg: PhaseConfig | None = None) -> tuple[str, list[str]]:
    """(phase, reasons): the label of `classify` and the criteria that decided it, as short strings."""
    cfg = cfg or PhaseConfig()
    knn, trust = _get(metrics, "knn_overlap"), _get(metrics, "trustworthiness")
    dim, pr = _get(metrics, "mle_dim"), _get(metrics, "participation_ratio")
    if (knn is not None and trust is not None and dim is not None and knn >= cfg.c_min_knn_overlap
            and trust >= cfg.c_min_trustworthiness and dim <= cfg.c_max_dim):
        return "C", [f"knn_overlap {knn:.3f} >= {cfg.c_min_knn_overlap}",
                     f"trustworthiness {trust:.3f} >= {cfg.c_min_trustworthiness}", f"mle_dim {dim:.2f} <= {cfg.c_max_dim}"]

    reasons = []
    if dim is not None and dim <= cfg.b_max_dim:
        reasons.append(f"mle_dim {dim:.2f} <= {cfg.b_max_dim}")
    if pr is not None and pr <= cfg.b_max_pr:
        reasons.append(f"participation_ratio {pr:.2f} <= {cfg.b_max_pr}")
    if init_metrics is not None:
        pr0 = _get(init_metrics, "participation_ratio")
        if pr is not None and pr0 is not None and pr <= cfg.b_pr_fraction * pr0:
            reasons.append(f"participation_ratio {pr:.2f} <= {cfg.b_pr_fraction} x init {pr0:.2f}")
        dec, dec0 = _mean_decode(metrics), _mean_decode(init_metrics)
        if dec is not None and dec0 is not None and dec >= cfg.b_min_decode and dec >= dec0 + cfg.b_min_decode_gain:
            reasons.append(f"decode R^2 {dec:.3f} >= {cfg.b_min_decode}, init {dec0:.3f} + {cfg.b_min_decode_gain}")
    if reasons:
        return "B", reasons
    return "A", ["no order and no 2D-manifold criterion met"]


def classify(metrics: dict, init_metrics: dict | None, cfg: PhaseConfig | None = None) -> str:
    """"A", "B" or "C" for one checkpoint's metrics (one layer), given the metrics at step 0."""
    return explain(metrics, init_metrics, cfg)[0]


# ----------------------------------------------------------------------------
# Comparison with generation.


def dominant_outcome(summary: dict) -> str | None:
    """The most frequent generation outcome of a scoring summary (its frac_<outcome> fields)."""
    fracs = {name: summary.get(f"frac_{name}") for name in _OUTCOME_NAMES}
    fracs = {k: v for k, v in fracs.items() if _finite(v)}
    return max(fracs, key=fracs.get) if fracs else None


def agreement(phases: Sequence[str | None], dominant_outcomes: Sequence[str | int | None]) -> float:
    """Fraction of checkpoints whose phase predicts their dominant generation outcome:
    A <-> several (or none), B <-> wrong, C <-> accurate (`PHASE_OUTCOMES`). Outcomes are names or
    diffrep.detect codes. Pairs with a missing phase or outcome are skipped; NaN if none is left."""
    if len(phases) != len(dominant_outcomes):
        raise ValueError(f"agreement: {len(phases)} phases but {len(dominant_outcomes)} outcomes")
    hits = []
    for phase, outcome in zip(phases, dominant_outcomes):
        if phase is None or outcome is None:
            continue
        if phase not in PHASE_OUTCOMES:
            raise ValueError(f"agreement: unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
        if not isinstance(outcome, str):
            outcome = _OUTCOME_NAMES[int(outcome)]
        hits.append(outcome in PHASE_OUTCOMES[phase])
    return float(np.mean(hits)) if hits else math.nan


class Correlation(NamedTuple):
    rho: float  # Spearman rank correlation, NaN when undefined
    p_value: float
    n: int  # pairs used (both values finite)


def rank_correlation(quality: Sequence[float | None], accuracy: Sequence[float | None]) -> Correlation:
    """Spearman correlation between representation quality and generation accuracy over checkpoints
    (claim 2 of the paper). Pairs with a missing or non-finite value are dropped; rho and p are NaN
    with fewer than 3 pairs or a constant input."""
    from scipy.stats import spearmanr

    if len(quality) != len(accuracy):
        raise ValueError(f"rank_correlation: {len(quality)} quality values but {len(accuracy)} accuracies")
    pairs = [(float(q), float(a)) for q, a in zip(quality, accuracy) if _finite(q) and _finite(a)]
    if len(pairs) < 3:
        return Correlation(math.nan, math.nan, len(pairs))
    q, a = np.array(pairs).T
    if np.ptp(q) == 0 or np.ptp(a) == 0:
        return Correlation(math.nan, math.nan, len(pairs))
    res = spearmanr(q, a)
    return Correlation(float(res.statistic), float(res.pvalue), len(pairs))


# ----------------------------------------------------------------------------
# A whole run: phases per checkpoint next to generation, into RUN_DIR/probes/phases.json.

QUALITY_METRIC = "knn_overlap"  # representation quality in the rank correlation: order of the (x, y) map


def analyze_run(run, cfg) -> dict:
    """Phase of every probed checkpoint (per layer) beside its dominant generation outcome (the
    scores of the run's scoring sampler), their agreement and the rank correlation of
    representation quality with accuracy. Written to phases.json in the probe set's folder
    (RUN_DIR/probes/ for the run's own) and returned."""
    from .probes import load_probes, probe_dir
    from .rundir import atomic_write
    from .scoring import load_scores, sampler_tag

    tag = sampler_tag(cfg)
    probes = load_probes(run, cfg)
    scores = {r["step"]: r["groups"]["train"] for r in load_scores(run, tag)}
    init = next((r["layers"] for r in probes if r["step"] == 0), {})
    result = {"sampler": tag, "quality_metric": QUALITY_METRIC, "layers": {}}
    for layer in cfg.probe.layers:
        rows = []
        for record in probes:
            metrics = record["layers"].get(layer)
            if metrics is None:
                continue
            phase, reasons = explain(metrics, init.get(layer), cfg.phase)
            summary = scores.get(record["step"])
            rows.append({"step": record["step"], "phase": phase, "reasons": reasons,
                         "outcome": dominant_outcome(summary) if summary else None,
                         "accuracy": summary["accuracy"] if summary else None,
                         QUALITY_METRIC: metrics.get(QUALITY_METRIC)})
        corr = rank_correlation([r[QUALITY_METRIC] for r in rows], [r["accuracy"] for r in rows])
        agree = agreement([r["phase"] for r in rows], [r["outcome"] for r in rows])
        first = {p: next((r["step"] for r in rows if r["phase"] == p), None) for p in PHASES}
        result["layers"][layer] = {
            "checkpoints": rows, "first_step": first,
            "agreement": None if math.isnan(agree) else agree,
            "rank_correlation": {"rho": None if math.isnan(corr.rho) else corr.rho,
                                 "p_value": None if math.isnan(corr.p_value) else corr.p_value, "n": corr.n},
        }
    atomic_write(probe_dir(run, cfg) / "phases.json", json.dumps(result, indent=1).encode())
    return result
