"""Phase labels of a checkpoint from its representation metrics alone, and how they line up with generation.

The papers' phases (docs/conventions.md): A, no structure; B, a disordered 2D manifold; C, an
ordered 2D manifold. `classify` labels one checkpoint from the metrics of `diffrep.probes` for one
layer, probed as the sampler sees the layer: each condition with its own noise (`probe.input =
independent`, t = 999, two draws). It never looks at generation, which is what the phases are
compared with afterwards (`onsets`, `agreement`, `lag`), so the comparison is not circular.

The rule compares each metric with its null, never with the run's own step 0, so that it can label
any checkpoint on its own and can say A, B or C at initialization too:

  structure  condition_share: the fraction of the activations' variation across conditions that
             the condition sets (two noise draws of each condition agree). Its null, the same with
             the draws paired with shuffled conditions, is 0 (stored as condition_share_null).
  order      order_gain = (knn_overlap - chance) / (1 - chance): how far the activation-space
             neighbourhoods are from chance (0) towards the true (x, y) neighbourhoods (1); chance
             is the expected overlap of unrelated activations on the same probe grid
             (knn_overlap_chance), so the gain means the same on any grid and for any image size.

  A  condition_share <  min_condition_share       the noise, not (x, y), sets the code
  B  condition_share >= min_condition_share
     and order_gain  <  min_order_gain            a manifold of (x, y), its neighbourhoods not (x, y)'s
  C  condition_share >= min_condition_share
     and order_gain  >= min_order_gain            an ordered manifold of (x, y)

Missing metrics (None) never satisfy a criterion: a checkpoint without them is A. A probe set with
another input (shared noise, clean images) is not labelled at all (`label_layers`, `explain` gives
None): there a random network's smooth map of (x, y) already looks ordered, and the thresholds mean
nothing. The thresholds are
`PhaseConfig` (`phase.*`); with its defaults the rule is RULE_VERSION, written into every probe
file, and how they were chosen is in docs/tuning.md ("The phase rule").
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..config import PHASE_RULE_INPUT as CALIBRATED_INPUT, PhaseConfig

# The frozen rule: these thresholds, chosen on seeds 0-3 of the default preset, judged on others.
RULE_VERSION = "nulls-1"
FROZEN = PhaseConfig()

PHASES = ("A", "B", "C")
# The generation outcome (diffrep.detect.OUTCOMES) that each phase predicts. A: several bumps
# (the paper's phase A); "none" (no bump at all) is also an unstructured output and counts as A.
PHASE_OUTCOMES = {"A": ("several", "none"), "B": ("wrong",), "C": ("accurate",)}
OUTCOME_NAMES = ("none", "several", "wrong", "accurate")  # = diffrep.detect.OUTCOMES, by index
ACCURATE_ONSET = 0.5  # "generation is accurate" from the first checkpoint with accuracy >= this


def rule_id(cfg: PhaseConfig) -> str:
    """RULE_VERSION for the frozen thresholds, else 'custom' with the thresholds used."""
    if cfg == FROZEN:
        return RULE_VERSION
    return f"custom(min_condition_share={cfg.min_condition_share:g}, min_order_gain={cfg.min_order_gain:g})"


# ----------------------------------------------------------------------------
# The rule.


def _finite(v) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(v)


def _get(metrics: dict | None, key: str) -> float | None:
    v = (metrics or {}).get(key)
    return float(v) if _finite(v) else None


def order_gain(metrics: dict) -> float | None:
    """(knn_overlap - chance) / (1 - chance), or None without both."""
    knn, chance = _get(metrics, "knn_overlap"), _get(metrics, "knn_overlap_chance")
    if knn is None or chance is None or chance >= 1:
        return None
    return (knn - chance) / (1 - chance)


def explain(metrics: dict, cfg: PhaseConfig | None = None, probe_input: str = CALIBRATED_INPUT) -> tuple[str | None, list[str]]:
    """(phase, reasons): the label of `classify` and the comparisons that decided it, as short strings;
    (None, [why]) for metrics of a probe set whose input is not CALIBRATED_INPUT."""
    if probe_input != CALIBRATED_INPUT:
        return None, [f"probe.input {probe_input}: the rule reads {CALIBRATED_INPUT} noise only"]
    cfg = cfg or FROZEN
    share, gain = _get(metrics, "condition_share"), order_gain(metrics)
    if share is None or share < cfg.min_condition_share:
        shown = "missing" if share is None else f"{share:.3f}"
        return "A", [f"condition_share {shown} < {cfg.min_condition_share:g}"]
    reasons = [f"condition_share {share:.3f} >= {cfg.min_condition_share:g}"]
    if gain is None or gain < cfg.min_order_gain:
        shown = "missing" if gain is None else f"{gain:.3f}"
        return "B", reasons + [f"order_gain {shown} < {cfg.min_order_gain:g}"]
    return "C", reasons + [f"order_gain {gain:.3f} >= {cfg.min_order_gain:g}"]


def classify(metrics: dict, cfg: PhaseConfig | None = None) -> str:
    """"A", "B" or "C" for one checkpoint's metrics of one layer (probed with CALIBRATED_INPUT)."""
    return explain(metrics, cfg)[0]


def label_layers(layer_metrics: dict[str, dict], cfg: PhaseConfig, probe_input: str) -> dict[str, str]:
    """{layer: phase} of one checkpoint's probe, {} where the probe's input is not CALIBRATED_INPUT."""
    phases = {name: explain(metrics, cfg, probe_input)[0] for name, metrics in layer_metrics.items()}
    return {name: phase for name, phase in phases.items() if phase is not None}


# ----------------------------------------------------------------------------
# One run: phases and generation over its checkpoints.


def dominant_outcome(summary: dict) -> str | None:
    """The most frequent generation outcome of a scoring summary (its frac_<outcome> fields)."""
    fracs = {name: summary.get(f"frac_{name}") for name in OUTCOME_NAMES}
    fracs = {k: v for k, v in fracs.items() if _finite(v)}
    return max(fracs, key=fracs.get) if fracs else None


def agreement(phases: Sequence[str | None], dominant_outcomes: Sequence[str | int | None]) -> float:
    """Fraction of checkpoints whose phase predicts their dominant generation outcome:
    A <-> several (or none), B <-> wrong, C <-> accurate (`PHASE_OUTCOMES`). Outcomes are names or
    diffrep.detect codes. Pairs with a missing phase or outcome are skipped; NaN if none is left."""
    hits = _hits(phases, dominant_outcomes)
    return float(np.mean(hits)) if len(hits) else math.nan


def _hits(phases, dominant_outcomes) -> np.ndarray:
    if len(phases) != len(dominant_outcomes):
        raise ValueError(f"agreement: {len(phases)} phases but {len(dominant_outcomes)} outcomes")
    hits = []
    for phase, outcome in zip(phases, dominant_outcomes):
        if phase is None or outcome is None:
            continue
        if phase not in PHASE_OUTCOMES:
            raise ValueError(f"agreement: unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
        if not isinstance(outcome, str):
            outcome = OUTCOME_NAMES[int(outcome)]
        hits.append(outcome in PHASE_OUTCOMES[phase])
    return np.array(hits, dtype=bool)


class Onsets(NamedTuple):
    """First checkpoint (step) of each event of one run, None where it never happened."""

    phase: dict[str, int | None]  # first checkpoint labelled A, B, C
    outcome: dict[str, int | None]  # first checkpoint whose dominant outcome is none, several, wrong, accurate
    accurate: int | None  # first checkpoint with accuracy >= ACCURATE_ONSET
    in_order: bool  # starts in A, passes through B, reaches C, and never goes back to an earlier phase
    reversals: int  # checkpoints labelled with an earlier phase than one seen before


def onsets(steps: Sequence[int], phases: Sequence[str | None], outcomes: Sequence[str | None],
           accuracy: Sequence[float | None]) -> Onsets:
    """The onsets of one run from its checkpoints in step order (a None is a checkpoint without it)."""
    def first(values, target):
        return next((s for s, v in zip(steps, values) if v == target), None)

    labelled = [p for p in phases if p is not None]
    rank = [PHASES.index(p) for p in labelled]
    reversals = sum(r < max(rank[:i]) for i, r in enumerate(rank) if i)
    in_order = bool(labelled) and labelled[0] == "A" and {"B", "C"} <= set(labelled) and reversals == 0
    return Onsets({p: first(phases, p) for p in PHASES}, {o: first(outcomes, o) for o in OUTCOME_NAMES},
                  next((s for s, a in zip(steps, accuracy) if _finite(a) and a >= ACCURATE_ONSET), None),
                  in_order, reversals)


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
# Several runs: agreement against its permutation null, the lag between code and generation.


def agreement_null(runs: Sequence[tuple[Sequence[str | None], Sequence[str | None]]], permutations: int = 10_000,
                   seed: int = 0) -> dict:
    """Agreement pooled over runs ([(phases, outcomes) per run]) against a label-shuffle null: each
    run's phase labels permuted over its own checkpoints (so each run keeps how long it spent in
    each phase), the pooled agreement recomputed `permutations` times. Returns {"agreement",
    "null_mean", "null_95" (95th percentile), "p_value" (one-sided, (1 + #null >= observed) /
    (1 + permutations)), "n", "runs_changing_phase" (runs with two phases or more: a run in one
    phase throughout is its own shuffle and adds nothing to tell agreement from chance)}; None
    values when no checkpoint has both."""
    pairs = []
    for phases, outcomes in runs:
        keep = [(p, o if isinstance(o, str) else OUTCOME_NAMES[int(o)])
                for p, o in zip(phases, outcomes) if p is not None and o is not None]
        if keep:
            pairs.append(keep)
    n = sum(len(k) for k in pairs)
    if not n:
        return {"agreement": None, "null_mean": None, "null_95": None, "p_value": None, "n": 0, "runs_changing_phase": 0}
    observed = float(np.mean(np.concatenate([_hits(*zip(*k)) for k in pairs])))
    rng = np.random.default_rng(seed)
    # Agreement is a sum over checkpoints of [outcome in PHASE_OUTCOMES[phase]]: a table per run.
    # table[i, j]: the phase of checkpoint i predicts the outcome of checkpoint j.
    tables = [np.array([[o in PHASE_OUTCOMES[p] for _, o in k] for p, _ in k]) for k in pairs]
    null = np.zeros(permutations)
    for table in tables:
        m = len(table)
        perms = rng.permuted(np.tile(np.arange(m), (permutations, 1)), axis=1)
        null += table[perms, np.arange(m)].sum(axis=1)  # checkpoint j gets the phase of checkpoint perm[j]
    null /= n
    return {"agreement": observed, "null_mean": float(null.mean()), "null_95": float(np.percentile(null, 95)),
            "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + permutations)), "n": n,
            "runs_changing_phase": sum(len({p for p, _ in k}) > 1 for k in pairs)}
