"""Statistics that can say no: intervals over seeds, tests against nulls, and three-way verdicts.

Every claim an experiment tests is stated as a prediction before its runs, with the test that
decides it; the verdict is computed here and is one of

    reproduced       the test came out as the prediction says
    contradicted     the test came out against it
    not measurable   the test cannot decide at this scale (too few runs reached the event, or the
                     interval is too wide), with the reason

Intervals are percentile bootstraps over runs (seeds); p-values of predictions are one-sided.
Times to an event (a phase, an accuracy) that a run never reached are censored: they rank after
every reached time, tied, in every rank statistic here.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.stats import binomtest, permutation_test, rankdata

REPRODUCED, CONTRADICTED, NOT_MEASURABLE = "reproduced", "contradicted", "not measurable"
VERDICTS = (REPRODUCED, CONTRADICTED, NOT_MEASURABLE)
ALPHA = 0.05  # the level of every test and interval (95%)
BOOTSTRAP = 10_000  # resamples of a bootstrap, and of a permutation test
MIN_MEASURED_RUNS = 6  # a prediction about runs is not measurable with fewer runs that reached its events


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


def censored_ranks(times: Sequence) -> np.ndarray:
    """Ranks of times to an event (1 = soonest), never reached (None) tied after every reached one."""
    return rankdata([math.inf if t is None else float(t) for t in times])


def rank_correlation(x, y, axis=-1):
    """Spearman's rho of values already ranked (the Pearson correlation of the ranks) along `axis`;
    NaN where either is constant."""
    x = x - x.mean(axis=axis, keepdims=True)
    y = y - y.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(axis=axis) / np.sqrt((x * x).sum(axis=axis) * (y * y).sum(axis=axis))


def bootstrap_over_runs(statistic: Callable[[np.ndarray], np.ndarray], n: int, seed: int = 0) -> list[float] | None:
    """The 95% percentile interval of a statistic of n runs over BOOTSTRAP resamples of the runs with
    replacement: statistic(indices [BOOTSTRAP, n]) -> [BOOTSTRAP] values, NaN where a resample
    leaves it undefined (those are left out); None if it always is."""
    draws = np.asarray(statistic(np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))), dtype=float)
    if not np.isfinite(draws).any():
        return None
    tail = ALPHA / 2 * 100
    return [float(np.nanpercentile(draws, tail)), float(np.nanpercentile(draws, 100 - tail))]


def censored_spearman(settings, times, picks=None):
    """Spearman rho of a setting with times to an event (never reached: ranked last), NaN where
    undefined; with picks ([B, n] indices), one rho per row of resampled runs."""
    x = np.asarray(settings, dtype=float)
    t = np.array([math.inf if v is None else float(v) for v in times])
    if picks is None:
        return float(rank_correlation(rankdata(x), rankdata(t)))
    return rank_correlation(rankdata(x[picks], axis=1), rankdata(t[picks], axis=1))


def trend_test(settings: Sequence[float], times: Sequence, seed: int = 0) -> dict:
    """Spearman rho of a setting with the times to an event over runs (one per run; never reached:
    ranked last), its one-sided permutation p-values for rho > 0 and rho < 0 (the times paired with
    the settings at random, BOOTSTRAP times; exact where there are fewer pairings), and its 95%
    percentile bootstrap interval, resampling runs.

    {"rho", "p_greater", "p_less", "interval": [low, high], "n", "n_reached", "n_settings"}; rho and
    the rest are None where it is undefined (fewer than 3 runs, one setting, or every time tied).
    """
    x = rankdata(np.asarray(settings, dtype=float))
    t = censored_ranks(times)
    out = {"rho": None, "p_greater": None, "p_less": None, "interval": None, "n": len(t),
           "n_reached": sum(v is not None for v in times), "n_settings": len(set(settings))}
    if len(t) < 3 or np.ptp(x) == 0 or np.ptp(t) == 0:
        return out
    out["rho"] = float(rank_correlation(x, t))
    for side in ("greater", "less"):
        res = permutation_test((x, t), rank_correlation, permutation_type="pairings", vectorized=True,
                               n_resamples=BOOTSTRAP, alternative=side, random_state=seed)
        out[f"p_{side}"] = float(res.pvalue)
    out["interval"] = bootstrap_over_runs(lambda picks: censored_spearman(settings, times, picks), len(t), seed)
    return out


def trend_verdict(test: dict, sign: int, event: str) -> dict:
    """The verdict on the prediction that the trend of `trend_test` has the sign `sign` (+1: the
    times grow with the setting, -1: they shrink): reproduced when its one-sided permutation p <
    ALPHA, contradicted when the opposite one-sided p is, else not measurable; not measurable also
    with fewer than MIN_MEASURED_RUNS runs that reached `event` or fewer than two settings."""
    if test["n_settings"] < 2:
        return verdict(NOT_MEASURABLE, "one setting: no trend to measure")
    if test["n_reached"] < MIN_MEASURED_RUNS:
        return verdict(NOT_MEASURABLE, f"{test['n_reached']} of {test['n']} runs reached {event} "
                                       f"(fewer than {MIN_MEASURED_RUNS})")
    if test["rho"] is None:
        return verdict(NOT_MEASURABLE, f"every run reached {event} at the same rank: no trend to measure")
    p_for, p_against = (test["p_greater"], test["p_less"]) if sign > 0 else (test["p_less"], test["p_greater"])
    interval = "" if test["interval"] is None else " (95% interval [{:.2f}, {:.2f}])".format(*test["interval"])
    text = (f"Spearman rho {test['rho']:.2f}{interval}, one-sided permutation p = {p_for:.3g}, {test['n']} runs, "
            f"{test['n_reached']} reached {event}")
    if p_for < ALPHA:
        return verdict(REPRODUCED, text)
    if p_against < ALPHA:
        return verdict(CONTRADICTED, f"{text}; the opposite trend at p = {p_against:.3g}")
    return verdict(NOT_MEASURABLE, f"{text}: neither this trend nor its opposite is resolved")


def paired_test(differences: Sequence[float], seed: int = 0) -> dict:
    """Whether paired differences (one per matched pair of runs, e.g. two arms at the same setting
    and seed) lean above or below 0: their median with its 95% bootstrap interval, and one-sided
    sign-flip permutation p-values of their mean for > 0 and < 0 (the sign of each difference
    flipped at random; exact where there are fewer than BOOTSTRAP flips). Differences of 0 carry no
    sign: with every difference 0 there is nothing to test.

    {"median", "interval": [low, high], "p_greater", "p_less", "n", "n_nonzero"}; the p-values are
    None where there is nothing to test, median and interval None without differences.
    """
    d = np.asarray([v for v in differences if v is not None], dtype=float)
    out = {"median": None, "interval": None, "p_greater": None, "p_less": None, "n": len(d),
           "n_nonzero": int(np.count_nonzero(d))}
    if not len(d):
        return out
    median, low, high = bootstrap_interval(d, seed=seed)
    out.update(median=median, interval=[low, high])
    if out["n_nonzero"]:
        for side in ("greater", "less"):
            res = permutation_test((d,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
                                   vectorized=True, n_resamples=BOOTSTRAP, alternative=side, random_state=seed)
            out[f"p_{side}"] = float(res.pvalue)
    return out


def paired_verdict(test: dict, pairs: str) -> dict:
    """The verdict on the prediction that the differences of `paired_test` are > 0: reproduced when
    its one-sided p < ALPHA, contradicted when the opposite one-sided p is, else not measurable; not
    measurable also with fewer than MIN_MEASURED_RUNS pairs or no difference but 0. `pairs` names
    what was paired, for the reason."""
    if test["n"] < MIN_MEASURED_RUNS:
        return verdict(NOT_MEASURABLE, f"{test['n']} {pairs} (fewer than {MIN_MEASURED_RUNS})")
    text = (f"median difference {test['median']:.3f} [{test['interval'][0]:.3f}, {test['interval'][1]:.3f}] over "
            f"{test['n']} {pairs}")
    if test["p_greater"] is None:
        return verdict(NOT_MEASURABLE, f"{text}: every difference is 0")
    text += f", one-sided sign-flip p = {test['p_greater']:.3g}"
    if test["p_greater"] < ALPHA:
        return verdict(REPRODUCED, text)
    if test["p_less"] < ALPHA:
        return verdict(CONTRADICTED, f"{text}; below 0 at p = {test['p_less']:.3g}")
    return verdict(NOT_MEASURABLE, f"{text}: neither above nor below 0 is resolved")


def shift_test(times: Sequence, reference: Sequence, seed: int = 0) -> dict:
    """Whether `times` come sooner or later than `reference` (times to one event, one per run;
    never reached: ranked last): the difference of their mean ranks in the pooled runs and its
    two-sided permutation p-value (runs reassigned to the two groups; exact where there are fewer
    than BOOTSTRAP assignments). With 2 runs against 2 the smallest p is 1/3: nothing is resolved.

    {"rank_shift" (negative: sooner), "p_value" (None with fewer than 2 runs on a side), "n",
    "n_reference", "n_reached"}.
    """
    ranks = censored_ranks(list(times) + list(reference))
    a, b = ranks[: len(times)], ranks[len(times):]
    out = {"rank_shift": None, "p_value": None, "n": len(a), "n_reference": len(b),
           "n_reached": sum(v is not None for v in list(times) + list(reference))}
    if not len(a) or not len(b):
        return out
    out["rank_shift"] = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:  # one run against n: the smallest two-sided p is 2 / (n + 1), nothing to test
        return out
    if np.ptp(ranks) == 0:
        out["p_value"] = 1.0
        return out
    res = permutation_test((a, b), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis), vectorized=True,
                           n_resamples=BOOTSTRAP, alternative="two-sided", random_state=seed)
    out["p_value"] = float(res.pvalue)
    return out


def shift_direction(test: dict) -> int:
    """-1 (sooner) or +1 (later) where `shift_test` resolves the shift (p < ALPHA), else 0."""
    if test["p_value"] is None or test["p_value"] >= ALPHA or not test["rank_shift"]:
        return 0
    return -1 if test["rank_shift"] < 0 else 1


def shift_word(test: dict, words: tuple[str, str] = ("sooner", "later")) -> str:
    """'sooner' or 'later' (`words`: for values that are not times) where `shift_test` resolves it
    (`shift_direction`), else 'not resolved (...)'."""
    if test["p_value"] is None:
        return f"not resolved ({test['n']} against {test['n_reference']} runs: too few to test)"
    direction = shift_direction(test)
    if not direction:
        return f"not resolved (p = {test['p_value']:.2g}, {test['n']} against {test['n_reference']} runs)"
    return f"{words[0] if direction < 0 else words[1]} (p = {test['p_value']:.2g})"
