"""The torus experiment: on periodic bumps, is the code of (x, y) factorized?

The follow-up paper finds factorized, Clifford-torus-like codes for bumps on a torus: x and y coded
by separate, orthogonal parts of the representation. The metric that decides is `additive_share`
(probes.py): the share of the code's condition-driven variation that a sum f(x) + g(y) carries,
1 for a factorized code. tests/test_probes.py shows that it tells a factorized synthetic code from
two coupled ones at any noise level, and that shuffled labels give its chance level
(`additive_share_chance`). Its two nulls here: the same run at step 0 (a random network's smooth map
is partly additive too) and that chance level.

The probe reads the layer with one noise draw shared by every condition (probe.input = shared), so
that every difference between conditions comes from (x, y): with independent noise per condition an
untrained network's condition-driven variation is about 1% of the layer's (condition_share 0.01), and
its additive_share, a ratio of two such small cross-draw terms, is too noisy to serve as the null (it
can exceed 1); with shared noise it is stable. The phase rule reads independent noise only, so these runs have no phase labels
(the finding does not read them).

Prediction 1, factorized (periodic lattice, FiLM conditioning): the median over runs of the gain
(additive_share at the last checkpoint minus at step 0) has a 95% bootstrap interval above 0, and
the median final share's interval lies above the chance level: reproduced. Contradicted when the gain's interval lies below
0 (training made the code less additive); otherwise, or with fewer than MIN_TORUS_RUNS runs
probed at both ends, not measurable. A non-periodic lattice, when the sweep has one, is reported
beside as a contrast, without a verdict.

Prediction 2, axes bias (when the sweep has periodic runs with model.conditioning = axes, which adds
x along the feature maps' columns and y along their rows, model.AxisShift): their final additive_share
is higher than the FiLM runs' on the same lattice (permutation test of ranks, `stats.shift_test`,
p < ALPHA): reproduced; lower: contradicted; otherwise not measurable.
"""

from __future__ import annotations

import numpy as np

from ..plots import plot_setting_curves
from ..sweep.tables import final_value
from .common import Context, additive_share_gain, first_rows, fmt, per_setting, save_figure, setting_curves
from .stats import (CONTRADICTED, NOT_MEASURABLE, REPRODUCED, bootstrap_interval, shift_direction, shift_test,
                    shift_word, verdict)

MIN_TORUS_RUNS = 5  # a median's bootstrap interval over fewer runs is no test


PERIODIC, AXES = "periodic", "periodic, axes conditioning"


def torus_label(row: dict) -> str:
    if str(row["data.periodic"]).lower() != "true":
        return "not periodic"
    return AXES if row.get("model.conditioning") == "axes" else PERIODIC


def analyze_torus(rows: list[dict], ctx: Context) -> dict:
    """additive_share at the end against step 0 and chance, per lattice; the verdict on the periodic one."""
    firsts = first_rows(rows)
    key = f"probe.{ctx.layer}"
    final, gain = additive_share_gain(rows, ctx.layer)
    chance = final_value(rows, f"{key}.additive_share_chance")
    stats = {"final_additive_share": {"description": f"{ctx.layer} additive_share at the last checkpoint",
                                      "per_setting": per_setting(rows, final, torus_label)},
             "additive_share_gain": {"description": "the same minus at step 0 (the untrained network)",
                                     "per_setting": per_setting(rows, gain, torus_label)},
             "additive_share_chance": {"description": "additive_share of activations unrelated to (x, y) (shuffled "
                                                      "labels' expectation)", "per_setting": per_setting(rows, chance, torus_label)},
             "final_xy_angle_deg": {"description": f"{ctx.layer} angle between the x and y coding directions at the "
                                                   "last checkpoint (described, not decisive)",
                                    "per_setting": per_setting(rows, final_value(rows, f"{key}.xy_angle_deg"), torus_label)}}
    periodic = [run for run, row in firsts.items() if torus_label(row) == PERIODIC]
    gains = [gain[r] for r in periodic if gain[r] is not None]
    finals = [final[r] for r in periodic if final[r] is not None and gain[r] is not None]
    levels = [chance[r] for r in periodic if chance[r] is not None]
    if len(gains) < MIN_TORUS_RUNS or not levels:
        decided = verdict(NOT_MEASURABLE, f"{len(gains)} periodic runs probed at step 0 and at the end "
                                          f"(fewer than {MIN_TORUS_RUNS})")
    else:
        g, f = bootstrap_interval(gains), bootstrap_interval(finals)
        level = max(levels)
        text = (f"median gain over step 0 {g[0]:.3f} [{g[1]:.3f}, {g[2]:.3f}], median final share {f[0]:.3f} "
                f"[{f[1]:.3f}, {f[2]:.3f}] against chance {level:.3f}, {len(gains)} runs")
        outcome = (REPRODUCED if g[1] > 0 and f[1] > level else CONTRADICTED if g[2] < 0 else NOT_MEASURABLE)
        decided = verdict(outcome, text)
        stats["periodic_gain_interval"] = {"description": "median gain and its 95% bootstrap interval over runs",
                                           "value": list(g)}
    predictions = [{"name": "factorized", "prediction": "on the torus, training makes the code of (x, y) additive: "
                                                        "more than at step 0 and than chance", **decided}]
    axes = [run for run, row in firsts.items() if torus_label(row) == AXES]
    if axes:
        predictions.append({"name": "axes bias", "prediction": "on the torus, conditioning that adds x along the "
                            "columns and y along the rows ends with a more additive code than FiLM alone",
                            **axes_verdict([final[r] for r in axes], finals)})
    figures = save_figure(ctx, "torus: additive_share over training (band: seeds)", [
        lambda ax: plot_setting_curves(ax, setting_curves(rows, f"{key}.additive_share", torus_label),
                                       f"additive_share ({ctx.layer})"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, "score.train.accuracy", torus_label), "accuracy"),
    ])
    contrast = "; ".join(f"{e['label']}: final additive_share {fmt(e['mean'])}" for e in stats["final_additive_share"]["per_setting"])
    return {"statistics": stats, "predictions": predictions,
            "verdict": f"{decided['verdict']}: {decided['reason']} ({contrast})"
                       + "".join(f"; {p['name']}: {p['verdict']}, {p['reason']}" for p in predictions[1:]),
            "figures": figures}


def axes_verdict(axes_finals: list, film_finals: list) -> dict:
    """Prediction 2 from the final additive_share of the axes-conditioned and of the FiLM runs."""
    axes_finals = [v for v in axes_finals if v is not None]
    test = shift_test(axes_finals, film_finals)
    direction = shift_direction(test)
    outcome = REPRODUCED if direction > 0 else CONTRADICTED if direction < 0 else NOT_MEASURABLE
    medians = " against ".join(fmt(float(np.median(v))) if v else "-" for v in (axes_finals, film_finals))
    return verdict(outcome, f"the axes runs' final share against FiLM's: {shift_word(test, ('lower', 'higher'))}; "
                            f"medians {medians}, {len(axes_finals)} against {len(film_finals)} runs")
