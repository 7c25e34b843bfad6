"""Statistics that can say no: intervals over seeds, tests against nulls, and three-way verdicts.

Every claim an experiment tests is stated as a prediction before its runs, with the test that
decides it; the verdict is computed here and is one of

    reproduced       the test came out as the prediction says
    contradicted     the test came out against it
    not measurable   the test cannot decide at this scale (too few runs reached the event, or the
                     interval is too wide), with the reason

Intervals are percentile bootstraps over runs (seeds); p-values are one-sided.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

REPRODUCED, CONTRADICTED, NOT_MEASURABLE = "reproduced", "contradicted", "not measurable"
VERDICTS = (REPRODUCED, CONTRADICTED, NOT_MEASURABLE)
ALPHA = 0.05  # the level of every test and interval (95%)
BOOTSTRAP = 10_000  # resamples of a bootstrap


def bootstrap_interval(values: Sequence[float], statistic: Callable = np.median, resamples: int = BOOTSTRAP,
                       seed: int = 0, level: float = 1 - ALPHA) -> tuple[float, float, float] | None:
    """(statistic, low, high): `statistic` of the values and its percentile bootstrap interval at
    `level`, resampling the values (one per run) with replacement; None without values."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(x):
        return None
    rng = np.random.default_rng(seed)
    draws = statistic(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)
    tail = (1 - level) / 2 * 100
    return float(statistic(x)), float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def binomial_p(successes: int, trials: int, p: float = 0.5) -> float:
    """One-sided p-value of at least `successes` of `trials` if each succeeds with probability p."""
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, p, alternative="greater").pvalue) if trials else math.nan


def verdict(outcome: str, reason: str) -> dict:
    """{"verdict", "reason"}, checked to be one of VERDICTS."""
    if outcome not in VERDICTS:
        raise ValueError(f"verdict: must be one of {', '.join(VERDICTS)} (got {outcome!r})")
    return {"verdict": outcome, "reason": reason}


def overall(verdicts: Sequence[dict]) -> str:
    """One word for several predictions of one claim: contradicted if any is, reproduced if all are,
    else not measurable."""
    words = [v["verdict"] for v in verdicts]
    if CONTRADICTED in words:
        return CONTRADICTED
    if words and all(w == REPRODUCED for w in words):
        return REPRODUCED
    return NOT_MEASURABLE
