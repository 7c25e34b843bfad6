"""The ablation experiment: which architecture choices move the phases?

Whether x and y factorize is the torus experiment's question, not this one's: additive_share is a
measurement only with one noise draw shared by every condition (probe.input = shared), and the
phase rule this experiment times reads the independent-noise probe, on which an untrained
network's additive_share already spreads over 0.59-1.42 (FINDINGS.md, torus)."""

from __future__ import annotations

import json

from ..config import Config
from ..plots import plot_seed_bands, plot_setting_curves
from ..sweep.tables import final_value, time_to
from .common import ACCURACY_KEY, NOT_REACHED, Context, per_setting, save_figure, setting_curves, short
from .stats import shift_test, shift_word

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
    """Per architecture variant: steps to phase C at each probed layer, and the final accuracy.

    Verdict: per variant, phase C at the first probed layer 'sooner' / 'later' than the baseline
    where the permutation test of their ranks resolves it (`stats.shift_test`, two-sided p < 0.05;
    with 2 seeds against 2 it cannot), else 'not resolved'; and in how many runs the second probed
    layer reaches phase C before the first.
    """
    label = lambda r: variant_label(r, ctx.base)  # noqa: E731
    layers = ctx.base.probe.layers
    to_c = {layer: time_to(rows, f"phase.{layer}", "C") for layer in layers}
    stats = {f"steps_to_phase_C_{layer}": {"description": f"first checkpoint labelled phase C ({layer})",
                                           "per_setting": per_setting(rows, to_c[layer], label)} for layer in layers}
    stats["final_accuracy"] = {"description": "in-distribution accuracy at the last checkpoint",
                               "per_setting": per_setting(rows, final_value(rows, ACCURACY_KEY), label)}
    first = layers[0]
    timing = stats[f"steps_to_phase_C_{first}"]["per_setting"]
    baseline = next((e for e in timing if e["label"] == "baseline"), None)
    parts = []
    for e in timing:
        if e["label"] == "baseline":
            continue
        test = shift_test(e["values"], baseline["values"]) if baseline else None
        e["shift_against_baseline"] = test
        parts.append(f"{e['label']}: phase C {shift_word(test) if test else NOT_REACHED + ' (no baseline)'}")
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
