"""From a sweep's aggregated rows to an experiment's finding: statistics, a verdict, a figure.

Every analysis takes the rows of `sweep.aggregate` (one per run and checkpoint) and a `Context`
(where figures go, the experiment's base config and parameters) and returns

    {"statistics": {name: statistic}, "verdict": str, "figures": [file names]}

A statistic is {"description", "per_setting": [entry, ...]} or {"description", "value", ...}; an
entry is one setting of the sweep over its seeds (`seed_stats`):

    {"label", "setting", "runs", "values": [one per seed, None where not reached],
     "n", "n_reached", "mean", "min", "max"}   (mean, min, max over the reached values, else None)

Verdicts are computed from the statistics with the rules in each analysis's docstring and the
thresholds below, never written by hand; where a statistic is undefined (no run reached it) the
verdict says "not reached" rather than inventing a number. Times to an event (a phase, an
accuracy) that a run never reached are censored: they rank after every reached time in rank
correlations and comparisons, and are never averaged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Config
from .data import BumpDataset, in_frame
from .percolation import bump_overlap, cluster_row, onset
from .phases import (ACCURATE_ONSET, OUTCOME_NAMES, PHASES, Onsets, agreement, agreement_null, dominant_outcome,
                     onsets)
from .stats import (ALPHA, CONTRADICTED, NOT_MEASURABLE, REPRODUCED, binomial_p, bootstrap_interval, overall,
                    verdict)
from .plots import plot_phase_timelines, plot_seed_bands, plot_setting_curves, save_panels
from .sweep import by_setting, config_from_row, curve, final_value, time_to

NOT_REACHED = "not reached"
ACCURACY_KEY = "score.train.accuracy"
ACCURACY_THRESHOLD = 0.9  # "time to 90% accuracy" (the sweep report's statistic)
TREND_MIN_RHO = 0.5  # |Spearman rho| at least this for a trend to count
AXIS_ACCURACY_THRESHOLD = 0.5  # imbalance: x-only / y-only accuracy that counts as "learned"
TOGETHER_FACTOR = 2.0  # imbalance: x and y learned together when their times differ by less than this factor
FACTORIZED_TRANSFER = 0.8  # x and y decoders transfer across the other coordinate: both R^2 at least this
MIN_TRAIN_ACCURACY = 0.2  # holes: below this in-distribution accuracy a held-out ratio means nothing
INTERPOLATES = 0.8  # holes: held-out / in-distribution accuracy at least this: "interpolates" ...
FAILS = 0.5  # ... below this: "fails", between: "partly"
DATA_ACCURACY = 0.6  # stripes: "the data needed for 60% accuracy"
COMPOSITION_GAIN = 0.1  # stripes: rim examples "help" when they raise composition accuracy by this much


@dataclass
class Context:
    out: Path  # where figures go (the sweep directory)
    base: Config  # the experiment's base config at its scale
    params: dict = field(default_factory=dict)  # the scale's experiment parameters (`experiments.Scale.params`)
    name: str = "experiment"
    layer: str = "layer4"  # the probed layer whose phases count


# ----------------------------------------------------------------------------
# Statistics over seeds.


def seed_stats(values: list) -> dict:
    """Values of one setting, one per seed (None: not reached), with mean, min and max of the reached ones."""
    reached = [float(v) for v in values if v is not None]
    return {"values": list(values), "n": len(values), "n_reached": len(reached),
            "mean": float(np.mean(reached)) if reached else None,
            "min": min(reached) if reached else None, "max": max(reached) if reached else None}


def steps_to_enter(rows: list[dict], layer: str, phase: str = "C") -> dict[str, int | None]:
    """For each run, the first checkpoint labelled `phase` whose previous checkpoint was not: the step
    training brought the run into it. A label at initialization is not something training reached: a
    random MLP on raw (x, y) (model.label_encoding = mlp) can already be an ordered 2D map (the tiny
    ablation's MLP variant was labelled C at step 0); a run labelled `phase` from step 0 on never
    entered it (None)."""
    key = f"phase.{layer}"
    entered: dict[str, int | None] = {}
    previous: dict[str, object] = {}
    for row in sorted(rows, key=lambda r: (r["run"], r["step"])):
        run, label = row["run"], row.get(key)
        entered.setdefault(run, None)
        if label in (None, ""):
            continue
        if entered[run] is None and label == phase and run in previous and previous[run] != phase:
            entered[run] = int(row["step"])
        previous[run] = label
    return entered


def first_rows(rows: list[dict]) -> dict[str, dict]:
    """One row per run (its config columns are the same in all of them), in row order."""
    firsts: dict[str, dict] = {}
    for row in rows:
        firsts.setdefault(row["run"], row)
    return firsts


def per_setting(rows: list[dict], per_run: dict, label) -> list[dict]:
    """`by_setting` of a per-run value, each group with `seed_stats` and label(first row of its first run)."""
    firsts = first_rows(rows)
    return [{"label": label(firsts[g["runs"][0]]), "setting": g["setting"], "runs": g["runs"], "seeds": g["seeds"],
             **seed_stats(g["values"])}
            for g in by_setting(rows, per_run)]


def censored_rank_correlation(xs: list[float], times: list) -> dict:
    """Spearman rho of a setting against times to an event, never-reached times (None) ranking last
    (tied). rho is None with fewer than 3 runs, no reached time, or a constant setting or rank."""
    from scipy.stats import rankdata, spearmanr

    n_reached = sum(t is not None for t in times)
    ranks = rankdata([math.inf if t is None else float(t) for t in times])
    if len(xs) < 3 or n_reached == 0 or np.ptp(xs) == 0 or np.ptp(ranks) == 0:
        return {"rho": None, "p_value": None, "n": len(xs), "n_reached": n_reached}
    res = spearmanr(xs, ranks)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": len(xs), "n_reached": n_reached}


def common_time(times: list):
    """The step at which every run reached the event when it is the same for all (no rank to
    correlate: at this checkpoint resolution the settings do not differ), else None."""
    return times[0] if times and times[0] is not None and len(set(times)) == 1 else None


def earlier_or_later(times: list, reference: list) -> str:
    """'earlier', 'later' or 'no clear change': every seed before (after) every reference seed, with
    never-reached times after every reached one; NOT_REACHED when no run of either reached it."""
    if all(t is None for t in times + reference):
        return NOT_REACHED
    t = [math.inf if v is None else v for v in times]
    r = [math.inf if v is None else v for v in reference]
    if max(t) < min(r):
        return "earlier"
    if min(t) > max(r):
        return "later"
    return "no clear change"


def fmt(value, digits: int = 3) -> str:
    """A number for a verdict or a table; None is 'not reached'."""
    if value is None:
        return NOT_REACHED
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def setting_curves(rows: list[dict], key: str, label) -> list[dict]:
    """Groups for `plots.plot_setting_curves`: per setting, the curve of `key` of each of its runs."""
    firsts = first_rows(rows)
    groups = by_setting(rows, {})
    return [{"label": label(firsts[g["runs"][0]]), "runs": [c for c in (curve(rows, run, key) for run in g["runs"]) if c]}
            for g in groups]


def series(entries: list[dict], x_of, label: str = "") -> dict:
    """A `plots.plot_seed_bands` series from per-setting entries, ordered by x."""
    pairs = sorted(((x_of(e), e["values"]) for e in entries), key=lambda p: p[0])
    return {"label": label, "x": [p[0] for p in pairs], "values": [p[1] for p in pairs]}


def save_figure(ctx: Context, title: str, drawers: list) -> list[str]:
    path = ctx.out / f"{ctx.name}.png"
    save_panels(path, title, drawers)
    return [path.name]


# ----------------------------------------------------------------------------
# phases (and digits): the three phases in order, and how generation lines up with them.

FINAL_ACCURACY_KEY = "final.train.accuracy"  # the last checkpoint scored with DDPM over all T steps
MIN_MEASURED_RUNS = 6  # a prediction about runs is not measurable with fewer runs that reached its events


def run_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows of each run, in step order."""
    by_run: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["run"], r["step"])):
        by_run.setdefault(row["run"], []).append(row)
    return by_run


def run_onsets(rows: list[dict], layer: str) -> dict[str, Onsets]:
    """`phases.onsets` of every run: its phases at `layer` and its in-distribution outcomes."""
    found = {}
    for run, mine in run_rows(rows).items():
        outcomes = [dominant_outcome({k[len("score.train."):]: v for k, v in r.items() if k.startswith("score.train.frac_")})
                    for r in mine]
        found[run] = onsets([r["step"] for r in mine], [r.get(f"phase.{layer}") or None for r in mine], outcomes,
                            [r.get(ACCURACY_KEY) for r in mine])
    return found


def umap_by_phase(rows: list[dict], layer: str) -> dict:
    """The paper's UMAP R^2 (mean of x and y) over the checkpoints of each phase, pooled over runs, with
    its chance level (the in-sample R^2 of 3 unrelated regressors, 3 / (K - 1)) and the Spearman rho of
    phase (A, B, C = 0, 1, 2) with it."""
    from scipy.stats import spearmanr

    pairs = [(PHASES.index(r[f"phase.{layer}"]), (r[f"probe.{layer}.umap_r2_x"] + r[f"probe.{layer}.umap_r2_y"]) / 2)
             for r in rows if r.get(f"phase.{layer}") in PHASES and r.get(f"probe.{layer}.umap_r2_x") not in (None, "")
             and r.get(f"probe.{layer}.umap_r2_y") not in (None, "")]
    by_phase = {p: [v for i, v in pairs if PHASES[i] == p] for p in PHASES}
    k = float(config_from_row(rows[0]).probe.grid ** 2) if rows else math.nan
    rho = None
    if len(pairs) >= 3 and len({i for i, _ in pairs}) > 1:
        rho = float(spearmanr([i for i, _ in pairs], [v for _, v in pairs]).statistic)
    return {"mean": {p: (float(np.mean(v)) if v else None) for p, v in by_phase.items()},
            "n": {p: len(v) for p, v in by_phase.items()}, "chance": 3 / (k - 1), "rho_phase": rho}


def phase_statistics(rows: list[dict], ctx: Context, label) -> tuple[dict, dict[str, Onsets]]:
    """Per run: the onsets of each phase, of each dominant outcome and of accurate generation
    (accuracy >= phases.ACCURATE_ONSET), the lag from phase C to accurate generation, whether the
    phases came in order, the agreement of phase and outcome; per setting over seeds, and pooled."""
    found = run_onsets(rows, ctx.layer)
    by_run = run_rows(rows)

    def per(values, description):
        return {"description": description, "per_setting": per_setting(rows, values, label)}

    stats = {f"first_step_{p}": per({r: o.phase[p] for r, o in found.items()}, f"first checkpoint labelled phase {p} "
                                    f"({ctx.layer})") for p in PHASES}
    for outcome in OUTCOME_NAMES:
        stats[f"first_step_{outcome}"] = per({r: o.outcome[outcome] for r, o in found.items()},
                                             f"first checkpoint whose most frequent outcome is '{outcome}'")
    stats["first_step_accurate"] = per({r: o.accurate for r, o in found.items()},
                                       f"first checkpoint with accuracy >= {ACCURATE_ONSET}")
    lags = {r: (o.accurate - o.phase["C"] if o.accurate is not None and o.phase["C"] is not None else None)
            for r, o in found.items()}
    stats["lag_c_to_accurate"] = {**per(lags, f"first accuracy >= {ACCURATE_ONSET} minus first phase C (steps; > 0: "
                                               "the ordered code comes first)"),
                                  "median_interval": bootstrap_interval(list(lags.values()))}
    stats["reversals"] = per({r: o.reversals for r, o in found.items()},
                             "checkpoints labelled with an earlier phase than one seen before")
    agree = {}
    for run, mine in by_run.items():
        value = agreement([r.get(f"phase.{ctx.layer}") or None for r in mine],
                          [dominant_outcome({k[len("score.train."):]: v for k, v in r.items()
                                             if k.startswith("score.train.frac_")}) for r in mine])
        agree[run] = None if math.isnan(value) else value
    stats["agreement"] = per(agree, "fraction of checkpoints whose phase predicts their most frequent outcome "
                                    "(A: several or none, B: wrong, C: accurate)")
    stats["agreement_null"] = {
        "description": "agreement pooled over runs against each run's phase labels shuffled over its checkpoints "
                       "(10,000 permutations; p one-sided)",
        **agreement_null([([r.get(f"phase.{ctx.layer}") or None for r in mine],
                           [dominant_outcome({k[len("score.train."):]: v for k, v in r.items()
                                              if k.startswith("score.train.frac_")}) for r in mine])
                          for mine in by_run.values()])}
    stats["runs_in_order"] = {"description": "runs that start in A, pass through B, reach C and never go back",
                              "value": sum(o.in_order for o in found.values()), "n": len(found)}
    stats["final_accuracy"] = per(final_value(rows, FINAL_ACCURACY_KEY), "in-distribution accuracy at the last "
                                  "checkpoint, DDPM over all T steps")
    stats["final_accuracy_curve_sampler"] = per(final_value(rows, ACCURACY_KEY), "the same with the curves' sampler "
                                                "(DDIM), which overstates late accuracy")
    stats["umap_r2_by_phase"] = {"description": "the paper's UMAP R^2 (mean of x and y) per phase over all checkpoints "
                                                "that have it", **umap_by_phase(rows, ctx.layer)}
    return stats, found


def phase_predictions(stats: dict, found: dict[str, Onsets]) -> list[dict]:
    """The papers' claims 1 and 2 as three predictions, each with its computed verdict.

    order      every run goes A -> B -> C without going back. Reproduced when the number of runs in
               order is significantly above half (one-sided binomial p < ALPHA), contradicted when
               the number out of order is, else not measurable; not measurable when fewer than
               MIN_MEASURED_RUNS runs reached phase C.
    agreement  a checkpoint's phase predicts its most frequent outcome better than its shuffled
               labels do: reproduced at permutation p < ALPHA, contradicted when the agreement is at
               or below the null's mean, else not measurable.
    lag        accurate generation does not come before the ordered code: reproduced when the 95%
               bootstrap interval of the median lag (first accuracy >= 0.5 minus first C) is >= 0,
               contradicted when it is < 0, not measurable when it spans 0 or fewer than
               MIN_MEASURED_RUNS runs reached both.
    """
    n = len(found)
    reached_c = sum(o.phase["C"] is not None for o in found.values())
    k = stats["runs_in_order"]["value"]
    if reached_c < MIN_MEASURED_RUNS:
        order = verdict(NOT_MEASURABLE, f"{reached_c} of {n} runs reached phase C (fewer than {MIN_MEASURED_RUNS})")
    elif binomial_p(k, n) < ALPHA:
        order = verdict(REPRODUCED, f"{k} of {n} runs in order (binomial p = {binomial_p(k, n):.3g})")
    elif binomial_p(n - k, n) < ALPHA:
        order = verdict(CONTRADICTED, f"{n - k} of {n} runs out of order (binomial p = {binomial_p(n - k, n):.3g})")
    else:
        order = verdict(NOT_MEASURABLE, f"{k} of {n} runs in order: neither significantly most nor few")
    null = stats["agreement_null"]
    if null["agreement"] is None:
        agree = verdict(NOT_MEASURABLE, "no checkpoint has both a phase and an outcome")
    elif null["p_value"] < ALPHA:
        agree = verdict(REPRODUCED, f"agreement {null['agreement']:.2f} against the null's {null['null_mean']:.2f} "
                                    f"(p = {null['p_value']:.3g})")
    elif null["agreement"] <= null["null_mean"]:
        agree = verdict(CONTRADICTED, f"agreement {null['agreement']:.2f} at or below the null's {null['null_mean']:.2f}")
    else:
        agree = verdict(NOT_MEASURABLE, f"agreement {null['agreement']:.2f} against the null's {null['null_mean']:.2f} "
                                        f"(p = {null['p_value']:.3g})")
    lags = [v for e in stats["lag_c_to_accurate"]["per_setting"] for v in e["values"] if v is not None]
    interval = stats["lag_c_to_accurate"]["median_interval"]
    if len(lags) < MIN_MEASURED_RUNS:
        lag = verdict(NOT_MEASURABLE, f"{len(lags)} of {n} runs reached both phase C and accuracy {ACCURATE_ONSET}")
    else:
        text = f"median lag {interval[0]:g} steps, 95% interval [{interval[1]:g}, {interval[2]:g}] over {len(lags)} runs"
        lag = verdict(REPRODUCED if interval[1] >= 0 else CONTRADICTED if interval[2] < 0 else NOT_MEASURABLE, text)
    return [{"name": "order", "prediction": "the phases come A -> B -> C, never going back", **order},
            {"name": "agreement", "prediction": "a checkpoint's phase predicts its generation outcome "
                                                "(A: several or none, B: wrong, C: accurate) better than chance", **agree},
            {"name": "lag", "prediction": "generation is not accurate before the code is ordered (first accuracy "
                                          f">= {ACCURATE_ONSET} at or after the first phase C)", **lag}]


def phase_timelines(rows: list[dict], ctx: Context, label) -> list[tuple[str, list[tuple[int, str]]]]:
    """Per run, `label(first row), seed N` and its (step, phase) checkpoints: `plots.plot_phase_timelines`."""
    key = f"phase.{ctx.layer}"
    return [(f"{label(row)}, seed {row['training.seed']}",
             [(s, r[key]) for s, r in sorted((r["step"], r) for r in rows if r["run"] == run and r.get(key))])
            for run, row in first_rows(rows).items()]


def analyze_phases(rows: list[dict], ctx: Context, label=lambda row: "all runs") -> dict:
    """Onsets, lag and agreement per seed (per setting with `label`), the predictions of
    `phase_predictions` with their verdicts; the verdict line is their `stats.overall`."""
    stats, found = phase_statistics(rows, ctx, label)
    predictions = phase_predictions(stats, found)
    figures = save_figure(ctx, f"{ctx.name}: accuracy (band: seeds) and the phases of each run ({ctx.layer})", [
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, label), "in-distribution accuracy"),
        lambda ax: plot_phase_timelines(ax, phase_timelines(rows, ctx, label)),
    ])
    line = "; ".join(f"{p['name']}: {p['verdict']} ({p['reason']})" for p in predictions)
    return {"statistics": stats, "predictions": predictions, "verdict": f"{overall(predictions)}: {line}",
            "figures": figures}


def analyze_digits(rows: list[dict], ctx: Context) -> dict:
    """The phases on real glyphs, per glyph (`analyze_phases`)."""
    return analyze_phases(rows, ctx, label=lambda row: f"glyph {row['data.glyph']}")


# ----------------------------------------------------------------------------
# density and sigma: time to phase C and to 90% accuracy against the settings.


def timing_statistics(rows: list[dict], ctx: Context, label) -> tuple[dict, dict, dict]:
    to_c = steps_to_enter(rows, ctx.layer, "C")
    to_acc = time_to(rows, ACCURACY_KEY, ACCURACY_THRESHOLD)
    stats = {
        "steps_to_phase_C": {"description": f"first checkpoint that entered phase C ({ctx.layer}; steps_to_enter)",
                             "per_setting": per_setting(rows, to_c, label)},
        f"steps_to_accuracy_{ACCURACY_THRESHOLD}": {"description": f"first checkpoint with accuracy >= {ACCURACY_THRESHOLD}",
                                                    "per_setting": per_setting(rows, to_acc, label)},
        "final_accuracy": {"description": "in-distribution accuracy at the last checkpoint",
                           "per_setting": per_setting(rows, final_value(rows, ACCURACY_KEY), label)},
    }
    return stats, to_c, to_acc


def analyze_density(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C and to 90% accuracy against the increment dx = dy (PAPER.md claim 3).

    Verdict, from the Spearman rho of the increment with the steps to phase C over all runs (never
    reached: ranked last): rho >= TREND_MIN_RHO 'denser is faster', <= -TREND_MIN_RHO 'denser is
    slower', else 'no clear trend'; 'no difference' when every run reached it at the same checkpoint,
    NOT_REACHED when no run reached phase C. The same for 90%
    accuracy is reported beside it.
    """
    increment = lambda row: float(row["data.dx"])  # noqa: E731
    stats, to_c, to_acc = timing_statistics(rows, ctx, lambda row: f"increment {increment(row):g}")
    firsts = first_rows(rows)
    runs = list(firsts)
    xs = [increment(firsts[r]) for r in runs]
    words = {1: "denser is faster (as the paper says)", -1: "denser is slower (against the paper)", 0: "no clear trend"}
    parts = []
    for name, times in (("phase_C", to_c), (f"accuracy_{ACCURACY_THRESHOLD}", to_acc)):
        t = stats[f"trend_steps_to_{name}"] = {
            "description": f"Spearman rho of the increment with the steps to {name} (never reached: ranked last)",
            **censored_rank_correlation(xs, [times[r] for r in runs])}
        if t["rho"] is None:
            same = common_time([times[r] for r in runs])
            parts.append(f"steps to {name}: " + (f"no difference (all {t['n']} runs at step {same:g})" if same is not None
                                                 else NOT_REACHED if t["n_reached"] == 0
                                                 else "undefined (fewer than 3 runs or one increment)"))
            continue
        sign = 1 if t["rho"] >= TREND_MIN_RHO else -1 if t["rho"] <= -TREND_MIN_RHO else 0
        parts.append(f"steps to {name}: {words[sign]} (Spearman rho {t['rho']:.2f} of increment with steps, "
                     f"{t['n']} runs, {t['n_reached']} reached)")
    x_of = lambda e: increment(firsts[e["runs"][0]])  # noqa: E731
    figures = save_figure(ctx, "density: time to phase C and to 90% accuracy against the increment (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series(stats["steps_to_phase_C"]["per_setting"], x_of, "phase C"),
                                        series(stats[f"steps_to_accuracy_{ACCURACY_THRESHOLD}"]["per_setting"], x_of,
                                               f"accuracy {ACCURACY_THRESHOLD}")],
                                   "increment dx = dy (pixels)", "training step"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, lambda r: f"increment {increment(r):g}"),
                                       "in-distribution accuracy"),
    ])
    return {"statistics": stats, "verdict": "; ".join(parts), "figures": figures}


def neighbour_overlap(row: dict) -> float:
    """Overlap (cosine similarity, percolation.bump_overlap) of two bumps one lattice step apart along x."""
    sigma = float(row["data.sigma"])
    return float(bump_overlap(float(row["data.dx"]), 0.0, sigma, sigma))


def analyze_sigma(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C over sigma x increment, against the overlap of neighbouring bumps.

    Verdict: the setting (increment, sigma, or neighbour overlap) with the largest |Spearman rho|
    against the steps to phase C (never reached: ranked last) is what the timing follows; sigma
    "matters less than the increment" (PAPER.md claim 3) when its |rho| is smaller. 'No difference'
    when every run reached phase C at the same checkpoint, NOT_REACHED when none did.
    """
    firsts = first_rows(rows)
    label = lambda r: f"increment {float(r['data.dx']):g}, sigma {float(r['data.sigma']):g}"  # noqa: E731
    stats, to_c, _ = timing_statistics(rows, ctx, label)
    stats["neighbour_overlap"] = {"description": "overlap of two bumps one lattice step apart, exp(-d^2 / (4 sigma^2))",
                                  "per_setting": per_setting(rows, {r: neighbour_overlap(row) for r, row in firsts.items()}, label)}
    runs = list(firsts)
    factors = {"increment": lambda r: float(r["data.dx"]), "sigma": lambda r: float(r["data.sigma"]),
               "neighbour overlap": neighbour_overlap}
    correlations = {name: censored_rank_correlation([f(firsts[r]) for r in runs], [to_c[r] for r in runs])
                    for name, f in factors.items()}
    stats["rank_correlation_steps_to_phase_C"] = {
        "description": "Spearman rho of each factor with the steps to phase C (never reached: ranked last)",
        "value": {name: c["rho"] for name, c in correlations.items()},
        "n": len(runs), "n_reached": correlations["sigma"]["n_reached"]}
    defined = {name: c["rho"] for name, c in correlations.items() if c["rho"] is not None}
    if not any(to_c[r] is not None for r in runs):
        verdict = f"{NOT_REACHED}: no run reached phase C"
    elif (same := common_time([to_c[r] for r in runs])) is not None:
        verdict = f"no difference to follow: all {len(runs)} runs reach phase C at step {same:g}"
    elif not defined:
        verdict = "no factor varies enough to correlate with the steps to phase C"
    else:
        best = max(defined, key=lambda k: abs(defined[k]))
        verdict = f"the steps to phase C follow the {best} most closely (Spearman rho {defined[best]:.2f})"
        if "sigma" in defined and "increment" in defined:
            less = abs(defined["sigma"]) < abs(defined["increment"])
            verdict += (f"; sigma matters {'less' if less else 'as much or more'} than the increment "
                        f"(|rho| {abs(defined['sigma']):.2f} vs {abs(defined['increment']):.2f}, "
                        f"{'as' if less else 'against'} the paper)")
    increments = sorted({float(r["data.dx"]) for r in firsts.values()})

    def by_increment(x_of, xlabel):
        def draw(ax):
            plot_seed_bands(ax, [series([e for e in stats["steps_to_phase_C"]["per_setting"]
                                         if float(firsts[e["runs"][0]]["data.dx"]) == inc],
                                        lambda e: x_of(firsts[e["runs"][0]]), f"increment {inc:g}")
                                 for inc in increments], xlabel, "steps to phase C")
        return draw

    figures = save_figure(ctx, "sigma: steps to phase C against sigma and against neighbour overlap (band: seeds)", [
        by_increment(lambda r: float(r["data.sigma"]), "sigma (pixels)"),
        by_increment(neighbour_overlap, "overlap of neighbouring bumps"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, label), "in-distribution accuracy"),
    ])
    return {"statistics": stats, "verdict": verdict, "figures": figures}


# ----------------------------------------------------------------------------
# imbalance: are x and y learned together (coupled) or apart (factorized)?


def analyze_imbalance(rows: list[dict], ctx: Context) -> dict:
    """x-only and y-only accuracy, decoding and transfer R^2 over training for dx != dy.

    Per run: t_x, t_y, the first checkpoints with x_accuracy (y_accuracy) >= AXIS_ACCURACY_THRESHOLD;
    the timing is "together" when both are reached within a factor TOGETHER_FACTOR of each other,
    "apart" when they are not, or when one is reached at a step that is less than 1 / TOGETHER_FACTOR
    of the run's last step and the other never; otherwise undetermined. Per imbalanced setting the
    timing is the majority of its determined runs. The representation "transfers" when the mean over
    seeds of min(x_transfer_r2, y_transfer_r2) at the last checkpoint is >= FACTORIZED_TRANSFER.
    Verdict over the imbalanced settings whose timing is determined: 'coupled' when every one is
    together and no decoder transfers, 'factorized' when every one is apart and every decoder
    transfers, 'mixed' otherwise; NOT_REACHED when no imbalanced setting has a determined timing
    (nothing was learned to be coupled or not; the transfer R^2 is still reported).
    """
    threshold = ctx.params.get("axis_threshold", AXIS_ACCURACY_THRESHOLD)
    firsts = first_rows(rows)
    label = lambda r: f"dx {float(r['data.dx']):g}, dy {float(r['data.dy']):g}"  # noqa: E731
    t_x = time_to(rows, "score.train.x_accuracy", threshold)
    t_y = time_to(rows, "score.train.y_accuracy", threshold)
    last_step = {run: max(r["step"] for r in rows if r["run"] == run) for run in firsts}
    probe = f"probe.{ctx.layer}"
    final = {k: final_value(rows, f"{probe}.{k}") for k in ("x_transfer_r2", "y_transfer_r2", "decode_r2_x", "decode_r2_y")}

    def timing(run):
        a, b = t_x[run], t_y[run]
        if a is not None and b is not None:
            return "together" if max(a, b) < TOGETHER_FACTOR * max(min(a, b), 1) else "apart"
        one = a if a is not None else b
        if one is not None and one * TOGETHER_FACTOR < last_step[run]:
            return "apart"
        return None

    ratio = {r: (t_x[r] / t_y[r] if t_x[r] is not None and t_y[r] not in (None, 0) else None) for r in firsts}
    stats = {
        f"steps_to_x_accuracy_{threshold}": {"description": f"first checkpoint with x-only accuracy >= {threshold}",
                                             "per_setting": per_setting(rows, t_x, label)},
        f"steps_to_y_accuracy_{threshold}": {"description": f"first checkpoint with y-only accuracy >= {threshold}",
                                             "per_setting": per_setting(rows, t_y, label)},
        "x_over_y_time_ratio": {"description": "t_x / t_y (both reached)", "per_setting": per_setting(rows, ratio, label)},
    }
    for key, values in final.items():
        stats[f"final_{key}"] = {"description": f"{ctx.layer} {key} at the last checkpoint", "per_setting": per_setting(rows, values, label)}
    settings = []
    for group in by_setting(rows, {}):
        row = firsts[group["runs"][0]]
        if float(row["data.dx"]) == float(row["data.dy"]):
            continue
        votes = [timing(r) for r in group["runs"] if timing(r) is not None]
        together = votes.count("together")
        time_word = None if not votes else "together" if together * 2 > len(votes) else "apart" if together * 2 < len(votes) else None
        transfers = [min(final["x_transfer_r2"][r], final["y_transfer_r2"][r]) for r in group["runs"]
                     if final["x_transfer_r2"][r] is not None and final["y_transfer_r2"][r] is not None]
        transfer = None if not transfers else float(np.mean(transfers))
        settings.append({"label": label(row), "timing": time_word, "min_transfer_r2": transfer,
                         "transfers": None if transfer is None else transfer >= FACTORIZED_TRANSFER})
    stats["coupling"] = {"description": f"per imbalanced setting: timing of x vs y (within a factor {TOGETHER_FACTOR}: "
                                        f"together) and whether decoders transfer (min transfer R^2 >= {FACTORIZED_TRANSFER})",
                         "value": settings}
    verdict = coupling_verdict(settings)
    curves = lambda key: lambda ax: plot_setting_curves(ax, setting_curves(rows, key, label), short(key))  # noqa: E731
    figures = save_figure(ctx, "imbalance: x-only and y-only accuracy and transfer R^2 over training (band: seeds)", [
        curves("score.train.x_accuracy"), curves("score.train.y_accuracy"),
        curves(f"{probe}.x_transfer_r2"), curves(f"{probe}.y_transfer_r2"),
    ])
    return {"statistics": stats, "verdict": verdict, "figures": figures}


def coupling_verdict(settings: list[dict]) -> str:
    """'coupled', 'factorized', 'mixed' or NOT_REACHED from the per-setting timing and transfer (see
    `analyze_imbalance`), with the evidence."""
    if not settings:
        return f"{NOT_REACHED}: no imbalanced setting (dx != dy) in the sweep"
    evidence = "; ".join(f"{s['label']}: timing {s['timing'] or NOT_REACHED}, min transfer R^2 {fmt(s['min_transfer_r2'], 2)}"
                         for s in settings)
    determined = [s for s in settings if s["timing"] is not None]
    if not determined:
        return f"{NOT_REACHED}: x or y accuracy never reached its threshold ({evidence})"
    timings = {s["timing"] for s in determined}
    transfers = {s["transfers"] for s in determined} - {None}
    if timings == {"together"} and transfers <= {False}:
        word = "coupled"
    elif timings == {"apart"} and transfers <= {True}:
        word = "factorized"
    else:
        word = "mixed"
    return f"{word} ({evidence})"


# ----------------------------------------------------------------------------
# holes: held-out regions of growing size.


def region_family(region, data) -> str:
    """'interior square', 'edge square' (it reaches the lattice's edge), 'band' or 'cross'."""
    if region.kind != "square":
        return region.kind
    half = region.width / 2
    at_edge = (region.x - half <= data.x_min + 1e-9 or region.x + half >= data.x_max - 1e-9
               or region.y - half <= data.y_min + 1e-9 or region.y + half >= data.y_max - 1e-9)
    return "edge square" if at_edge else "interior square"


def analyze_holes(rows: list[dict], ctx: Context) -> dict:
    """In-distribution vs held-out accuracy per held-out region family and width W.

    Per run and region: the held-out to in-distribution accuracy ratio at the last checkpoint (None
    when the in-distribution accuracy is below MIN_TRAIN_ACCURACY: nothing is learned to generalize)
    and the held-out to in-distribution denoising-loss ratio (sampling-free). Verdict per family and
    W from the mean ratio over seeds: >= INTERPOLATES 'interpolates', < FAILS 'fails', else 'partly';
    NOT_REACHED when no seed learned the in-distribution set.
    """
    firsts = first_rows(rows)
    train_acc = final_value(rows, ACCURACY_KEY)
    train_loss = final_value(rows, "score.train.denoise_loss")
    groups: dict[tuple[str, float], dict] = {}
    loss_curves: dict[tuple[str, float], list] = {}
    for run, row in firsts.items():
        data = config_from_row(row).data
        for i, region in enumerate(data.holdout):
            key = (region_family(region, data), region.width)
            g = groups.setdefault(key, {"runs": [], "train": [], "heldout": [], "ratio": [], "loss_ratio": []})
            held = final_value([r for r in rows if r["run"] == run], f"score.heldout_{i}.accuracy")[run]
            held_loss = final_value([r for r in rows if r["run"] == run], f"score.heldout_{i}.denoise_loss")[run]
            learned = train_acc[run] is not None and train_acc[run] >= MIN_TRAIN_ACCURACY and held is not None
            g["runs"].append(run)
            g["train"].append(train_acc[run])
            g["heldout"].append(held)
            g["ratio"].append(held / train_acc[run] if learned else None)
            g["loss_ratio"].append(held_loss / train_loss[run] if held_loss is not None and train_loss[run] else None)
            loss_curves.setdefault(key, []).append(
                [(s, h / t) for (s, h), (s2, t) in zip(curve(rows, run, f"score.heldout_{i}.denoise_loss"),
                                                        curve(rows, run, "score.train.denoise_loss")) if s == s2 and t])
    order = sorted(groups)
    entries = {name: [] for name in ("train", "heldout", "ratio", "loss_ratio")}
    for family, width in order:
        g = groups[(family, width)]
        for name in entries:
            entries[name].append({"label": f"{family} W={width:g}", "setting": {"family": family, "width": width},
                                  "runs": g["runs"], **seed_stats(g[name])})
    stats = {
        "final_train_accuracy": {"description": "in-distribution accuracy at the last checkpoint", "per_setting": entries["train"]},
        "final_heldout_accuracy": {"description": "held-out accuracy of the region at the last checkpoint",
                                   "per_setting": entries["heldout"]},
        "heldout_to_train_accuracy": {"description": f"held-out / in-distribution accuracy (in-distribution >= {MIN_TRAIN_ACCURACY})",
                                      "per_setting": entries["ratio"]},
        "heldout_to_train_denoise_loss": {"description": "held-out / in-distribution denoising loss at the last checkpoint",
                                          "per_setting": entries["loss_ratio"]},
    }
    words = []
    for e in entries["ratio"]:
        word = NOT_REACHED if e["mean"] is None else "interpolates" if e["mean"] >= INTERPOLATES else \
            "fails" if e["mean"] < FAILS else "partly"
        words.append(f"{e['label']}: {word}" + ("" if e["mean"] is None else f" ({e['mean']:.2f})"))
    verdict = "held-out / in-distribution accuracy: " + "; ".join(words) if words else f"{NOT_REACHED}: no held-out region"
    families = sorted({f for f, _ in order})
    width_of = lambda e: e["setting"]["width"]  # noqa: E731
    by_width = [{"setting": {"width": w}, "values": [v for e in entries["train"] if e["setting"]["width"] == w
                                                      for v in e["values"]]} for w in sorted({w for _, w in order})]
    figures = save_figure(ctx, "holes: accuracy against W and held-out / in-distribution denoising loss (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series([e for e in entries["heldout"] if e["setting"]["family"] == f], width_of,
                                               f"held-out, {f}") for f in families]
                                   + [series(by_width, width_of, "in-distribution (all runs)")],
                                   "width W (pixels)", "accuracy at the last checkpoint"),
        lambda ax: plot_setting_curves(ax, [{"label": f"{f} W={w:g}", "runs": [c for c in loss_curves[(f, w)] if c]}
                                            for f, w in order], "held-out / in-distribution denoising loss"),
    ])
    return {"statistics": stats, "verdict": verdict, "figures": figures}


# ----------------------------------------------------------------------------
# stripes: accuracy against the data fraction lambda; data needed against the image size.


def stripes_arm(row: dict) -> str:
    kind, rim = row["data.kind"], int(row["data.rim_examples"])
    return f"stripes + {rim} rim 2D" if kind == "stripes" and rim else kind


def training_images(row: dict) -> tuple[int, int]:
    """(2D training images: both labels in the frame, all training images) of a row's dataset."""
    data = config_from_row(row).data
    dataset = BumpDataset(data)
    return int(in_frame(dataset.train_conditions, data.image_size, data.latent_size).sum()), len(dataset)


def analyze_stripes(rows: list[dict], ctx: Context) -> dict:
    """Accuracy on the frame's 2D conditions (group "frame") against lambda, per data arm and size N.

    Data needed: per arm and N, the smallest lambda whose mean final frame accuracy is >=
    DATA_ACCURACY, with its number of 2D training images. Verdict parts: (1) per N, bumps + stripes
    'needs fewer 2D images' than bumps only when its count is smaller (or only it reached
    DATA_ACCURACY); (2) rim 2D examples 'help composition' when they raise the stripes arm's frame
    accuracy at the largest lambda by >= COMPOSITION_GAIN; (3) the accuracy onset of bumps only
    beside the percolation onset of the same lattice (percolation.onset). NOT_REACHED where
    undefined.
    """
    firsts = first_rows(rows)
    frame = final_value(rows, "score.frame.accuracy")
    label = lambda r: f"{stripes_arm(r)}, N={r['data.image_size']}, lambda={float(r['data.keep_fraction']):g}"  # noqa: E731
    entries = per_setting(rows, frame, label)
    for e in entries:
        row = firsts[e["runs"][0]]
        e["arm"], e["N"], e["lambda"] = stripes_arm(row), int(row["data.image_size"]), float(row["data.keep_fraction"])
    stats = {"final_frame_accuracy": {"description": "accuracy on the frame's 2D conditions at the last checkpoint",
                                      "per_setting": entries}}
    needed = []
    for arm, size in sorted({(e["arm"], e["N"]) for e in entries}):
        mine = sorted((e for e in entries if e["arm"] == arm and e["N"] == size), key=lambda e: e["lambda"])
        hit = next((e for e in mine if e["mean"] is not None and e["mean"] >= DATA_ACCURACY), None)
        images_2d, images = training_images(firsts[hit["runs"][0]]) if hit else (None, None)
        needed.append({"arm": arm, "N": size, "lambda": hit["lambda"] if hit else None,
                       "images_2d": images_2d, "images": images})
    stats[f"data_for_accuracy_{DATA_ACCURACY}"] = {
        "description": f"smallest lambda with mean frame accuracy >= {DATA_ACCURACY}, and its 2D / all training images",
        "value": needed}

    parts = []
    for size in sorted({n["N"] for n in needed}):
        arms = {n["arm"]: n for n in needed if n["N"] == size}
        if "bumps" not in arms or "bumps+stripes" not in arms:
            continue
        b, bs = arms["bumps"]["images_2d"], arms["bumps+stripes"]["images_2d"]
        if b is None and bs is None:
            parts.append(f"N={size}: {NOT_REACHED} ({DATA_ACCURACY} accuracy in neither arm)")
        elif b is None or (bs is not None and bs < b):
            parts.append(f"N={size}: bumps + stripes needs fewer 2D images ({fmt(bs)} vs bumps only {fmt(b)})")
        else:
            parts.append(f"N={size}: bumps + stripes needs no fewer 2D images ({fmt(bs)} vs bumps only {fmt(b)})")
    top = max((e["lambda"] for e in entries), default=None)
    plain = [e for e in entries if e["arm"] == "stripes" and e["lambda"] == top]
    rim = [e for e in entries if e["arm"].startswith("stripes + ") and e["lambda"] == top]
    if plain and rim:
        a, b = plain[0]["mean"], rim[0]["mean"]
        if a is None or b is None:
            parts.append(f"composition: {NOT_REACHED}")
        else:
            effect = "help composition" if b - a >= COMPOSITION_GAIN else "do not clearly help composition"
            parts.append(f"rim 2D examples {effect} (frame accuracy {a:.2f} -> {b:.2f} at lambda {top:g})")

    bumps_rows = [firsts[e["runs"][0]] for e in entries if e["arm"] == "bumps"]
    percolation = []
    if bumps_rows:
        base_n = max(int(r["data.image_size"]) for r in bumps_rows)
        data = config_from_row(next(r for r in bumps_rows if int(r["data.image_size"]) == base_n)).data
        lambdas = sorted({e["lambda"] for e in entries if e["arm"] == "bumps" and e["N"] == base_n})
        for threshold in ctx.params.get("percolation_thresholds", [0.5]):
            shares, fractions = [], []
            for lam in lambdas:
                data.keep_fraction = lam
                result = cluster_row(data, threshold)
                shares.append(result["largest_cluster_share"])
                fractions.append(result["largest_cluster_fraction"])
            percolation.append({"threshold": threshold, "N": base_n, "lambda": lambdas, "largest_cluster_fraction": fractions,
                                "onset": onset(lambdas, shares)})
        accuracy = sorted((e["lambda"], e["mean"]) for e in entries if e["arm"] == "bumps" and e["N"] == base_n)
        accuracy_onset = next((lam for lam, m in accuracy if m is not None and m >= DATA_ACCURACY), None)
        parts.append(f"bumps only, N={base_n}: accuracy {DATA_ACCURACY} from lambda {fmt(accuracy_onset)}; percolation onset "
                     + ", ".join(f"{fmt(p['onset'])} (overlap >= {p['threshold']:g})" for p in percolation))
    stats["percolation"] = {"description": "largest cluster of overlapping kept bumps (bumps-only lattice), and its onset",
                            "value": percolation}
    verdict = "; ".join(parts) if parts else f"{NOT_REACHED}: no arm to compare"
    sizes = sorted({e["N"] for e in entries})
    # Every arm at every N it ran at: the arms need not share their sizes (laptop: stripes at N = 16 only).
    figures = save_figure(ctx, "stripes: frame accuracy against lambda, data needed against N, percolation (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series([e for e in entries if (e["arm"], e["N"]) == (arm, size)],
                                               lambda e: e["lambda"], f"{arm}, N={size}")
                                        for arm, size in sorted({(e["arm"], e["N"]) for e in entries})],
                                   "data fraction lambda", "frame accuracy at the last checkpoint"),
        lambda ax: plot_seed_bands(ax, [{"label": arm, "x": sizes,
                                         "values": [[n["images_2d"] for n in needed if n["arm"] == arm and n["N"] == s] or [None]
                                                    for s in sizes]}
                                        for arm in ("bumps", "bumps+stripes")],
                                   "image size N", f"2D images for {DATA_ACCURACY} accuracy"),
        lambda ax: (plot_seed_bands(ax, [{"label": f"overlap >= {p['threshold']:g}", "x": p["lambda"],
                                          "values": [[f] for f in p["largest_cluster_fraction"]]} for p in percolation],
                                    "data fraction lambda", "largest cluster / all lattice points"), ax.set_ylim(0, 1.02)),
    ])
    return {"statistics": stats, "verdict": verdict, "figures": figures}


# ----------------------------------------------------------------------------
# percolation: no training.


def percolation_rows(ctx: Context) -> list[dict]:
    """One row per sigma, overlap threshold, lambda and subsample seed: `percolation.cluster_row`."""
    p = ctx.params
    rows = []
    for sigma in p["sigmas"]:
        for threshold in p["thresholds"]:
            for lam in p["lambdas"]:
                for seed in p["seeds"]:
                    data = ctx.base.with_overrides({"data.sigma": sigma, "data.keep_fraction": lam,
                                                    "data.subsample_seed": seed}).data
                    rows.append({"data.sigma": sigma, "threshold": threshold, "data.keep_fraction": lam,
                                 "data.subsample_seed": seed, **cluster_row(data, threshold)})
    return rows


def analyze_percolation(rows: list[dict], ctx: Context) -> dict:
    """Largest cluster against lambda for each sigma and overlap threshold; its onset.

    Verdict: per threshold, whether the onset lambda (`percolation.onset` of the mean share over
    subsample seeds) falls as sigma grows (never rises where defined), with the onsets; NOT_REACHED
    for a sigma whose cluster never holds half of the kept points.
    """
    entries, onsets = [], []
    for sigma in ctx.params["sigmas"]:
        for threshold in ctx.params["thresholds"]:
            mine = [r for r in rows if r["data.sigma"] == sigma and r["threshold"] == threshold]
            lambdas = sorted({r["data.keep_fraction"] for r in mine})
            shares = []
            for lam in lambdas:
                at = [r for r in mine if r["data.keep_fraction"] == lam]
                entries.append({"label": f"sigma {sigma:g}, overlap >= {threshold:g}, lambda {lam:g}",
                                "setting": {"data.sigma": sigma, "threshold": threshold, "data.keep_fraction": lam},
                                "runs": [], **seed_stats([r["largest_cluster_fraction"] for r in at])})
                shares.append(float(np.mean([r["largest_cluster_share"] for r in at])))
            onsets.append({"sigma": sigma, "threshold": threshold, "onset": onset(lambdas, shares)})
    stats = {"largest_cluster_fraction": {"description": "largest cluster / all lattice points, over subsample seeds",
                                          "per_setting": entries},
             "onset_lambda": {"description": "smallest lambda whose largest cluster holds half of the kept points",
                              "value": onsets}}
    parts = []
    for threshold in ctx.params["thresholds"]:
        mine = [o for o in onsets if o["threshold"] == threshold]
        defined = [o["onset"] for o in mine if o["onset"] is not None]
        trend = ("falls as sigma grows" if len(defined) > 1 and all(a >= b for a, b in zip(defined, defined[1:]))
                 and defined[0] > defined[-1] else "does not fall with sigma" if len(defined) > 1 else "one sigma only")
        text = ", ".join(f"sigma {o['sigma']:g}: {fmt(o['onset'])}" for o in mine)
        parts.append(f"overlap >= {threshold:g}: onset {trend} ({text})" if defined else
                     f"overlap >= {threshold:g}: {NOT_REACHED} ({text})")
    figures = save_figure(ctx, "percolation: largest cluster of overlapping bumps against lambda (band: subsample seeds)", [
        (lambda th: lambda ax: (plot_seed_bands(
            ax, [series([e for e in entries if e["setting"]["data.sigma"] == s and e["setting"]["threshold"] == th],
                        lambda e: e["setting"]["data.keep_fraction"], f"sigma {s:g}") for s in ctx.params["sigmas"]],
            "data fraction lambda", f"largest cluster (overlap >= {th:g})"), ax.set_ylim(0, 1.02)))(th)
        for th in ctx.params["thresholds"]
    ])
    return {"statistics": stats, "verdict": "; ".join(parts), "figures": figures}


# ----------------------------------------------------------------------------
# ablation: which architecture choices move the phases, and do x and y factorize?

ABLATION_KEYS = ("model.attention_resolutions", "model.widths", "model.skips", "model.label_encoding")


def variant_label(row: dict, base: Config) -> str:
    """The settings of ABLATION_KEYS where a run differs from the base config, or 'baseline'."""
    base_flat = {"model.attention_resolutions": json.dumps(base.model.attention_resolutions),
                 "model.widths": json.dumps(base.model.widths), "model.skips": base.model.skips,
                 "model.label_encoding": base.model.label_encoding}
    changed = [f"{short(k)}={row[k]}" for k in ABLATION_KEYS if _same(row[k]) != _same(base_flat[k])]
    return ", ".join(changed) or "baseline"


def _same(value):
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


def analyze_ablation(rows: list[dict], ctx: Context) -> dict:
    """Per architecture variant: steps to phase C at each probed layer, accuracy, transfer R^2.

    Verdict: per variant, phase C at the first probed layer 'earlier' / 'later' than the baseline
    when every seed is before / after every baseline seed (`earlier_or_later`), else 'no clear
    change'; 'factorized' when the mean over seeds of min(x_transfer_r2, y_transfer_r2) at the last
    checkpoint is >= FACTORIZED_TRANSFER, else 'coupled'; and in how many runs the second probed
    layer reaches phase C before the first.
    """
    label = lambda r: variant_label(r, ctx.base)  # noqa: E731
    layers = ctx.base.probe.layers
    to_c = {layer: steps_to_enter(rows, layer, "C") for layer in layers}
    stats = {f"steps_to_phase_C_{layer}": {"description": f"first checkpoint that entered phase C ({layer}; steps_to_enter)",
                                           "per_setting": per_setting(rows, to_c[layer], label)} for layer in layers}
    stats["final_accuracy"] = {"description": "in-distribution accuracy at the last checkpoint",
                               "per_setting": per_setting(rows, final_value(rows, ACCURACY_KEY), label)}
    first = layers[0]
    x_tr, y_tr = (final_value(rows, f"probe.{first}.{k}") for k in ("x_transfer_r2", "y_transfer_r2"))
    min_tr = {r: (min(x_tr[r], y_tr[r]) if x_tr[r] is not None and y_tr[r] is not None else None) for r in x_tr}
    stats["final_min_transfer_r2"] = {"description": f"min(x_transfer_r2, y_transfer_r2) of {first} at the last checkpoint",
                                      "per_setting": per_setting(rows, min_tr, label)}
    timing = stats[f"steps_to_phase_C_{first}"]["per_setting"]
    baseline = next((e for e in timing if e["label"] == "baseline"), None)
    parts = []
    for e in timing:
        if e["label"] == "baseline":
            continue
        change = earlier_or_later(e["values"], baseline["values"]) if baseline else NOT_REACHED
        parts.append(f"{e['label']}: phase C {change}")
    for e in stats["final_min_transfer_r2"]["per_setting"]:
        word = NOT_REACHED if e["mean"] is None else "factorized" if e["mean"] >= FACTORIZED_TRANSFER else "coupled"
        parts.append(f"{e['label']}: {word} (min transfer R^2 {fmt(e['mean'], 2)})")
    if len(layers) > 1:
        second = layers[1]
        both = [r for r in to_c[first] if to_c[first][r] is not None and to_c[second][r] is not None]
        sooner = sum(to_c[second][r] < to_c[first][r] for r in both)
        parts.append(f"{second} reaches phase C before {first} in {sooner} of {len(both)} runs where both reach it"
                     if both else f"{first} vs {second}: {NOT_REACHED}")
    labels = [e["label"] for e in timing]

    def by_variant(ax):
        plot_seed_bands(ax, [{"label": layer, "x": list(range(len(labels))),
                              "values": [e["values"] for e in stats[f"steps_to_phase_C_{layer}"]["per_setting"]]}
                             for layer in layers], "variant", "steps to phase C")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=6)

    figures = save_figure(ctx, "ablation: steps to phase C per variant and layer, accuracy (band: seeds)", [
        by_variant, lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, label), "in-distribution accuracy"),
    ])
    return {"statistics": stats, "verdict": "; ".join(parts), "figures": figures}
