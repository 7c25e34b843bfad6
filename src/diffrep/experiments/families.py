"""The families experiment: are the phases a property of the UNet and DDPM, or of diffusion training?

The papers study one family: a convolutional UNet trained to predict the noise. Here four families
train on the same data with the same conditioning and the same probe: the UNet and a small DiT
(model.arch), each with the noise (epsilon) objective and with flow matching (diffusion.objective),
at least five seeds each. For each family the phases experiment's three predictions (order,
agreement, lag; `phases.phase_predictions`) are computed on its runs alone.

Verdict line: per family its three verdicts. Summary: "the phases hold in every family" when every
family reproduces order and lag; "the phases are not general" when a family contradicts either;
otherwise not measurable at this scale, with the families that did not decide.
"""

from __future__ import annotations

from .common import Context, first_rows
from .phases import analyze_phases, phase_predictions, phase_statistics
from .stats import CONTRADICTED, NOT_MEASURABLE, REPRODUCED, verdict


def family(row: dict) -> str:
    return f"{row['model.arch']}, {row['diffusion.objective']}"


def analyze_families(rows: list[dict], ctx: Context) -> dict:
    """The phases experiment's statistics per family (settings), and its predictions per family."""
    result = analyze_phases(rows, ctx, label=family)  # statistics per family, the figure with every run
    by_family: dict[str, list[dict]] = {}
    for run, row in first_rows(rows).items():
        by_family.setdefault(family(row), []).append(run)
    predictions, decided = [], {}
    for name, runs in sorted(by_family.items()):
        mine = [r for r in rows if r["run"] in set(runs)]
        stats, found = phase_statistics(mine, ctx, family)
        for p in phase_predictions(stats, found):
            predictions.append({**p, "name": f"{p['name']} ({name})"})
            decided[(name, p["name"])] = p["verdict"]
    names = sorted(by_family)
    key = [(n, p) for n in names for p in ("order", "lag")]
    if all(decided[k] == REPRODUCED for k in key):
        summary = verdict(REPRODUCED, "order and lag reproduced in every family: the phases hold beyond the UNet and DDPM")
    elif any(decided[k] == CONTRADICTED for k in key):
        summary = verdict(CONTRADICTED, "a family contradicts order or lag: " + ", ".join(
            f"{p} in {n}" for n, p in key if decided[(n, p)] == CONTRADICTED))
    else:
        summary = verdict(NOT_MEASURABLE, "not decided in " + ", ".join(
            f"{p} of {n}" for n, p in key if decided[(n, p)] != REPRODUCED))
    line = "; ".join(f"{p['name']}: {p['verdict']}" for p in predictions)
    return {**result, "predictions": [{"name": "general", "prediction": "the phases come in order and before accurate "
                                                                         "generation in every family", **summary},
                                      *predictions],
            "verdict": f"{summary['verdict']}: {summary['reason']} ({line})"}
