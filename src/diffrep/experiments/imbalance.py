"""The imbalance experiment: are x and y learned together (coupled) or apart (factorized)?

Claim 4: with skewed increments (dense x, sparse y) the sparse axis is still learned together with
the dense one, not as a separate 1D task. The test needs two kinds of runs beside the 2D lattices:
1D controls, bumps that move along y only (x fixed at the frame's centre), one per increment of y.

  control   1D density slows an axis trained alone: y at the sparse increment, alone, reaches its
            accuracy later than y at the densest 1D increment (`stats.shift_test`, p < ALPHA).
            Without it, coupled and factorized learners predict the same timing: not measurable.
  coupled   in a 2D lattice with that sparse y, y reaches its accuracy sooner than y alone at the
            same increment (it rides on the dense x): reproduced. Contradicted when it is not
            sooner and lags x in the same runs (y on its own clock, as a factorized learner would).
            Both read the FiLM runs (the papers' network).

Prediction 2, axes bias (when the sweep has a 2D lattice and the 1D control at its dy with both
model.conditioning = film and axes; axes adds x along the feature maps' columns and y along their
rows, model.AxisShift): with the axes bias, the sparse y pays less for sharing the lattice with x.
Its 2D penalty, a run's y onset minus the median y onset of the 1D control of the same conditioning,
is smaller for axes than for FiLM (`stats.shift_test` of the penalties, p < ALPHA): reproduced;
larger: contradicted; otherwise not measurable. The test ranks runs around each control's median and
does not resample the controls, so it is a test of the 2D runs given those medians.

Times are the first checkpoint with x-only (y-only) accuracy >= AXIS_ACCURACY_THRESHOLD, in steps and
in epochs (`common.epochs`). The representation's factorization is reported beside, never as a
verdict: `additive_share` (the share of the code's condition-driven variation that x and y explain
additively, probes.py) at the last checkpoint against the same run's step 0 and its chance level.
"""

from __future__ import annotations

import numpy as np

from ..plots import plot_setting_curves
from ..sweep.tables import final_value, time_to
from .common import Context, additive_share_gain, epochs, first_rows, per_setting, save_figure, setting_curves, short
from .stats import CONTRADICTED, NOT_MEASURABLE, REPRODUCED, overall, shift_direction, shift_test, shift_word, verdict

AXIS_ACCURACY_THRESHOLD = 0.5  # x-only / y-only accuracy that counts as "learned"


def is_1d(row: dict) -> bool:
    """A 1D control: every bump at one x (x_min = x_max)."""
    return float(row["data.x_min"]) == float(row["data.x_max"])


def has_axes(row: dict) -> bool:
    return row.get("model.conditioning") == "axes"


AXES = ", axes"  # the label suffix of an axes-conditioned setting


def setting_label(row: dict) -> str:
    dy = float(row["data.dy"])
    label = f"y only, dy {dy:g}" if is_1d(row) else f"dx {float(row['data.dx']):g}, dy {dy:g}"
    return label + AXES if has_axes(row) else label


def runs_by_setting(firsts: dict) -> dict[str, list[str]]:
    """{setting_label: [run, ...]} of one row per run."""
    runs_of: dict[str, list[str]] = {}
    for run, row in firsts.items():
        runs_of.setdefault(setting_label(row), []).append(run)
    return runs_of


def imbalance_predictions(t_x: dict, t_y: dict, firsts: dict) -> list[dict]:
    """The control and the coupled prediction (module docstring) for every FiLM 2D lattice with dx < dy
    that has a 1D control at its dy and a denser 1D control to compare that one with."""
    runs_of = runs_by_setting(firsts)
    one_d = sorted({float(r["data.dy"]) for r in firsts.values() if is_1d(r) and not has_axes(r)})
    out = []
    for label in sorted(runs_of):
        row = firsts[runs_of[label][0]]
        dx, dy = float(row["data.dx"]), float(row["data.dy"])
        if is_1d(row) or not dx < dy or has_axes(row):
            continue
        alone, densest = f"y only, dy {dy:g}", f"y only, dy {one_d[0]:g}" if one_d else None
        if alone not in runs_of or densest is None or one_d[0] >= dy:
            out.append({"name": f"coupled ({label})", "prediction": "y learned sooner than y alone at the same dy",
                        **verdict(NOT_MEASURABLE, f"no 1D control at dy {dy:g} and a denser one in the sweep")})
            continue
        control = shift_test([t_y[r] for r in runs_of[alone]], [t_y[r] for r in runs_of[densest]])
        together = shift_test([t_y[r] for r in runs_of[label]], [t_y[r] for r in runs_of[alone]])
        lag = shift_test([t_y[r] for r in runs_of[label]], [t_x[r] for r in runs_of[label]])
        evidence = (f"control: y alone at dy {dy:g} against dy {one_d[0]:g}: {shift_word(control)}; {label}: y against "
                    f"y alone: {shift_word(together)}; y against x in the same runs: {shift_word(lag)}")
        if shift_direction(control) <= 0:
            decided = verdict(NOT_MEASURABLE, f"1D density does not demonstrably slow y alone at this scale, so coupled "
                                              f"and factorized learners predict the same ({evidence})")
        elif shift_direction(together) < 0:
            decided = verdict(REPRODUCED, evidence)
        elif shift_direction(lag) > 0:
            decided = verdict(CONTRADICTED, evidence)
        else:
            decided = verdict(NOT_MEASURABLE, evidence)
        out.append({"name": f"coupled ({label})", "prediction": f"y (dy {dy:g}) is learned sooner in the 2D lattice "
                                                                f"than alone, riding on the dense x", **decided})
    return out


def axes_predictions(t_y: dict, firsts: dict) -> list[dict]:
    """Prediction 2 (module docstring) for every axes-conditioned 2D lattice whose FiLM twin and
    whose 1D controls (dy, both conditionings) are in the sweep."""
    runs_of = runs_by_setting(firsts)
    out = []
    for label in sorted(runs_of):
        row = firsts[runs_of[label][0]]
        if is_1d(row) or not has_axes(row):
            continue
        film, dy = label.removesuffix(AXES), float(row["data.dy"])
        alone = {AXES: f"y only, dy {dy:g}{AXES}", "": f"y only, dy {dy:g}"}
        name = f"axes bias ({film})"
        prediction = f"with the axes bias, y (dy {dy:g}) pays less than with FiLM for sharing the lattice with x"
        missing = [s for s in (film, *alone.values()) if s not in runs_of]
        reached = {s: [t_y[r] for r in runs_of.get(s, []) if t_y[r] is not None] for s in alone.values()}
        if missing or not all(reached.values()):
            why = f"no {'; '.join(missing)} in the sweep" if missing else "a 1D control never reached its y onset"
            out.append({"name": name, "prediction": prediction, **verdict(NOT_MEASURABLE, why)})
            continue

        def penalty(setting: str, control: str) -> list:
            median = float(np.median(reached[control]))
            return [None if t_y[r] is None else t_y[r] - median for r in runs_of[setting]]

        def against(setting: str, control: str) -> str:
            return shift_word(shift_test([t_y[r] for r in runs_of[setting]], [t_y[r] for r in runs_of[control]]))

        test = shift_test(penalty(label, alone[AXES]), penalty(film, alone[""]))
        outcome = {-1: REPRODUCED, 1: CONTRADICTED, 0: NOT_MEASURABLE}[shift_direction(test)]
        out.append({"name": name, "prediction": prediction, **verdict(outcome, (
            f"2D penalty of axes against FiLM's: {shift_word(test, ('smaller', 'larger'))}; y in 2D against y alone: "
            f"axes {against(label, alone[AXES])}, FiLM {against(film, alone[''])}"))})
    return out


def analyze_imbalance(rows: list[dict], ctx: Context) -> dict:
    """x-only and y-only accuracy onsets per run (steps and epochs), the control and coupled
    predictions, and additive_share at the end against step 0 (module docstring)."""
    threshold = ctx.params.get("axis_threshold", AXIS_ACCURACY_THRESHOLD)
    firsts = first_rows(rows)
    t_x = time_to(rows, "score.train.x_accuracy", threshold)
    t_y = time_to(rows, "score.train.y_accuracy", threshold)
    stats = {}
    for axis, times in (("x", t_x), ("y", t_y)):
        stats[f"steps_to_{axis}_accuracy_{threshold}"] = {
            "description": f"first checkpoint with {axis}-only accuracy >= {threshold}",
            "per_setting": per_setting(rows, times, setting_label)}
        stats[f"epochs_to_{axis}_accuracy_{threshold}"] = {
            "description": "the same in epochs (passes over the run's training set)",
            "per_setting": per_setting(rows, epochs(rows, times), setting_label)}
    probe = f"probe.{ctx.layer}"
    two_d = [r for r in rows if not is_1d(r)]
    if two_d:
        final, gain = additive_share_gain(two_d, ctx.layer)
        stats["additive_share_gain"] = {
            "description": f"{ctx.layer} additive_share at the last checkpoint minus at step 0 (the same network "
                           f"untrained): > 0 where training made the code more additive in x and y",
            "per_setting": per_setting(two_d, gain, setting_label)}
        stats["final_additive_share"] = {"description": f"{ctx.layer} additive_share at the last checkpoint",
                                         "per_setting": per_setting(two_d, final, setting_label)}
        stats["additive_share_chance"] = {"description": "additive_share of random codes on the probe grid",
                                          "per_setting": per_setting(two_d, final_value(two_d, f"{probe}.additive_share_chance"),
                                                                     setting_label)}
    predictions = imbalance_predictions(t_x, t_y, firsts) + axes_predictions(t_y, firsts)
    word = overall(predictions)
    text = "; ".join(f"{p['name']}: {p['verdict']} ({p['reason']})" for p in predictions) or "no 2D lattice with dx < dy"
    curves = lambda key: lambda ax: plot_setting_curves(ax, setting_curves(rows, key, setting_label), short(key))  # noqa: E731
    figures = save_figure(ctx, "imbalance: x-only and y-only accuracy over training, and additive_share (band: seeds)", [
        curves("score.train.x_accuracy"), curves("score.train.y_accuracy"), curves(f"{probe}.additive_share"),
    ])
    return {"statistics": stats, "predictions": predictions, "verdict": f"{word}: {text}", "figures": figures}
