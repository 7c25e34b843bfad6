"""The phases experiment (and digits): the three phases in order, and how generation lines up with them."""

from __future__ import annotations

import math

import numpy as np

from ..evaluation.phases import (ACCURATE_ONSET, OUTCOME_NAMES, PHASES, Onsets, agreement, agreement_null,
                                 dominant_outcome, onsets)
from ..plots import plot_phase_timelines, plot_setting_curves
from ..sweep.tables import config_from_row, final_value
from .common import ACCURACY_KEY, Context, first_rows, per_setting, save_figure, setting_curves
from .stats import (ALPHA, CONTRADICTED, MIN_MEASURED_RUNS, NOT_MEASURABLE, REPRODUCED, binomial_p, bootstrap_interval,
                    overall, verdict)

FINAL_ACCURACY_KEY = "final.train.accuracy"  # the last checkpoint scored with DDPM over all T steps


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
    # A run accurate before any phase C: C would come at the checkpoint after its last at the earliest,
    # so its lag is at most its accuracy onset minus that step (negative: accurate before the order).
    bounds = dict.fromkeys(found)
    for run, o in found.items():
        steps = [r["step"] for r in by_run[run] if r.get(f"phase.{ctx.layer}")]
        if o.accurate is not None and o.phase["C"] is None and steps:
            bounds[run] = o.accurate - (steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1))
    stats["lag_bound_accurate_before_c"] = {
        **per(bounds, f"runs with accuracy >= {ACCURATE_ONSET} and no phase C: first accuracy minus the checkpoint after "
                      "the last (where C would come at the earliest), a bound their lag is at most"),
        "median_interval": bootstrap_interval([*lags.values(), *bounds.values()])}
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
               or below the null's mean, else not measurable; not measurable when no run changes
               phase (its shuffled labels are its labels: nothing to compare).
    lag        accurate generation does not come before the ordered code: reproduced when the 95%
               bootstrap interval of the median lag (first accuracy >= 0.5 minus first C) is >= 0 and
               no run is accurate without ever reaching C; contradicted when the interval of the
               median over the lags and, for the runs accurate without C, the bounds their lags are
               at most (`lag_bound_accurate_before_c`) is < 0 (so the true one is too); not
               measurable otherwise or when fewer than MIN_MEASURED_RUNS runs give a lag or a bound.
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
    elif not null["runs_changing_phase"]:
        agree = verdict(NOT_MEASURABLE, f"no run changes phase (agreement {null['agreement']:.2f} is its own null)")
    elif null["p_value"] < ALPHA:
        agree = verdict(REPRODUCED, f"agreement {null['agreement']:.2f} against the null's {null['null_mean']:.2f} "
                                    f"(p = {null['p_value']:.3g})")
    elif null["agreement"] <= null["null_mean"]:
        agree = verdict(CONTRADICTED, f"agreement {null['agreement']:.2f} at or below the null's {null['null_mean']:.2f}")
    else:
        agree = verdict(NOT_MEASURABLE, f"agreement {null['agreement']:.2f} against the null's {null['null_mean']:.2f} "
                                        f"(p = {null['p_value']:.3g})")
    lags = [v for e in stats["lag_c_to_accurate"]["per_setting"] for v in e["values"] if v is not None]
    bounds = [v for e in stats["lag_bound_accurate_before_c"]["per_setting"] for v in e["values"] if v is not None]
    interval, with_bounds = stats["lag_c_to_accurate"]["median_interval"], stats["lag_bound_accurate_before_c"]["median_interval"]
    if len(lags) + len(bounds) < MIN_MEASURED_RUNS:
        lag = verdict(NOT_MEASURABLE, f"{len(lags)} of {n} runs reached both phase C and accuracy {ACCURATE_ONSET}"
                                      f"{f', {len(bounds)} accuracy without C' if bounds else ''}")
    elif not bounds:
        text = f"median lag {interval[0]:g} steps, 95% interval [{interval[1]:g}, {interval[2]:g}] over {len(lags)} runs"
        lag = verdict(REPRODUCED if interval[1] >= 0 else CONTRADICTED if interval[2] < 0 else NOT_MEASURABLE, text)
    else:
        text = (f"{len(bounds)} of {n} runs accurate without reaching phase C; median lag at most {with_bounds[0]:g} "
                f"steps, 95% interval [{with_bounds[1]:g}, {with_bounds[2]:g}] over {len(lags) + len(bounds)} runs")
        lag = verdict(CONTRADICTED if with_bounds[2] < 0 else NOT_MEASURABLE, text)
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
    timelines = phase_timelines(rows, ctx, label)
    firsts = first_rows(rows)
    accurate = [found[run].accurate for run in firsts]  # in the order of phase_timelines' rows

    def representation_and_accuracy(ax):
        for key, name in ((ACCURACY_KEY, "accuracy"), (f"probe.{ctx.layer}.condition_share", "condition_share")):
            plot_setting_curves(ax, setting_curves(rows, key, lambda row, n=name: f"{label(row)}: {n}"), "", log_x=False)
        ax.set_ylabel("accuracy; condition_share (band: seeds)", fontsize=8)

    figures = save_figure(ctx, f"{ctx.name}: the code's structure and generation on one step axis, and the phases "
                               f"of each run ({ctx.layer})", [
        representation_and_accuracy,
        lambda ax: plot_phase_timelines(ax, timelines, log_x=False, marks=accurate,
                                        mark_label=f"accuracy >= {ACCURATE_ONSET}"),
    ])
    line = "; ".join(f"{p['name']}: {p['verdict']} ({p['reason']})" for p in predictions)
    return {"statistics": stats, "predictions": predictions, "verdict": f"{overall(predictions)}: {line}",
            "figures": figures}


def analyze_digits(rows: list[dict], ctx: Context) -> dict:
    """The phases on real glyphs, per glyph (`analyze_phases`)."""
    return analyze_phases(rows, ctx, label=lambda row: f"glyph {row['data.glyph']}")
