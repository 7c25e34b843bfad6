"""The report of a sweep: its runs per setting and, for an experiment, its finding (claim, verdict,
figures and every statistic). Reads the sweep's aggregated rows and findings only."""

from __future__ import annotations

import json
from pathlib import Path

from ..experiments.common import fmt
from ..plots import save_setting_curves
from ..rundir import atomic_write
from ..sweep.tables import by_setting, curve, time_to
from .page import escape, img, page


def write_sweep_report(sweep_dir: Path, rows: list[dict], layer: str = "layer4",
                       findings: dict | None = None) -> tuple[Path, list[str]]:
    """Compare the runs of a sweep (aggregate rows): accuracy per setting with seeds as bands, and
    per setting the steps to 90% accuracy and to phase C. Writes report.html and summary.json.
    With an experiment's `findings` (diffrep/experiments.py) the page opens with the finding: the
    claim, the scale it was run at, the verdict, the figures and every statistic; a sweep without
    runs (percolation) has the finding only."""
    sweep_dir = Path(sweep_dir)
    e = escape
    lines, sections = [], []
    if findings:
        lines.append(f"{findings['experiment']} ({findings['scale']} scale): {findings['verdict']}")
        sections.append(_finding_html(sweep_dir, findings))
    if rows:
        to_accuracy = time_to(rows, "score.train.accuracy", 0.9)
        to_c = time_to(rows, f"phase.{layer}", "C")
        summary, groups, items = [], [], []
        for g in by_setting(rows, to_accuracy):
            label = ", ".join(f"{k}={v}" for k, v in g["setting"].items()) or "all runs"
            c_steps = [to_c.get(run) for run in g["runs"]]
            summary.append({"setting": g["setting"], "runs": g["runs"], "steps_to_accuracy_0.9": g["values"],
                            "steps_to_phase_C": c_steps})
            items.append(f"{label}: steps to 90% accuracy {g['values']}, to phase C {c_steps} (per seed)")
            curves = [curve(rows, run, "score.train.accuracy") for run in g["runs"]]
            groups.append({"label": label, "runs": [c for c in curves if c]})
        atomic_write(sweep_dir / "summary.json", json.dumps(summary, indent=1).encode())
        picture = sweep_dir / "accuracy.png"
        save_setting_curves(groups, "score.train.accuracy", picture, f"{sweep_dir.name}: accuracy per setting (band: seeds)")
        sections.append("<h2>Runs per setting</h2><ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>"
                        + img(picture, "accuracy per setting"))
        lines = items + lines
    path = sweep_dir / "report.html"
    atomic_write(path, page(f"diffrep sweep {sweep_dir.name}", "".join(sections)).encode())
    return path, lines


def _finding_html(sweep_dir: Path, findings: dict) -> str:
    """The finding of an experiment: claim, scale, verdict, figures, and a table per statistic."""
    e = escape
    parts = [f"<h2>Finding: {e(findings['experiment'])}</h2>",
             f"<p><b>Claim.</b> {e(findings['claim'])}</p>",
             f"<p><b>Measured.</b> {e(findings['measures'])}</p>",
             f"<p><b>Run at.</b> {e(findings['run_at'])}</p>",
             f"<p><b>Verdict.</b> {e(findings['verdict'])}</p>"]
    if findings.get("predictions"):
        parts.append("<table><tr><th class='text'>prediction</th><th class='text'>verdict</th>"
                     "<th class='text'>why</th></tr>" + "".join(
                         f"<tr><td class='text'>{e(p['prediction'])}</td><td class='text'>{e(p['verdict'])}</td>"
                         f"<td class='text'>{e(p['reason'])}</td></tr>" for p in findings["predictions"]) + "</table>")
    parts += [img(sweep_dir / name, name) for name in findings["figures"]]
    for name, stat in findings["statistics"].items():
        parts.append(f"<h3>{e(name)}</h3><p>{e(stat['description'])}</p>")
        if "per_setting" in stat:
            parts.append("<table><tr><th>setting</th><th>mean</th><th>min</th><th>max</th><th>reached</th>"
                         "<th>per seed</th></tr>")
            for entry in stat["per_setting"]:
                seeds = ", ".join(fmt(v) for v in entry["values"])
                parts.append(f"<tr><td class='text'>{e(entry['label'])}</td><td>{e(fmt(entry['mean']))}</td>"
                             f"<td>{e(fmt(entry['min']))}</td><td>{e(fmt(entry['max']))}</td>"
                             f"<td>{entry['n_reached']} of {entry['n']}</td><td class='text'>{e(seeds)}</td></tr>")
            parts.append("</table>")
        else:
            value = {k: v for k, v in stat.items() if k != "description"}
            parts.append(f"<pre>{e(json.dumps(value, indent=1))}</pre>")
    return "".join(parts)
