"""The story of one run: pictures from its scores and probes, and a self-contained report.html.

Everything here reads the run directory only (config.json, scores/, probes/), so it
works on any run, finished or not, wherever it was trained.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .config import Config
from .phases import analyze_run
from .plots import save_metric_curves, save_score_curve, save_story, save_umap_grid
from .probes import load_probes, probe_dir, umap_r2
from .rundir import RunDir, atomic_write, read_npz
from .scoring import load_scores, sampler_tag

CURVE_METRICS = ["condition_share", "knn_overlap", "trustworthiness", "participation_ratio", "mle_dim", "decode_r2_x"]


def write_score_curve(run: RunDir, cfg: Config) -> Path | None:
    """Outcome fractions over training for the scoring sampler of `cfg`: scores/curve_TAG.png."""
    tag = sampler_tag(cfg)
    scores = load_scores(run, tag)
    if not scores:
        return None
    path = run.path / "scores" / f"curve_{tag}.png"
    save_score_curve(scores, "train", path, f"{run.path.name}: in-distribution samples, {tag}")
    return path


def write_pictures(run: RunDir, cfg: Config, analysis: dict) -> list[Path]:
    """Score curve, metric curves and UMAP panels per probed layer; returns the files written."""
    curve = write_score_curve(run, cfg)
    written = [curve] if curve else []
    probed = load_probes(run, cfg)
    folder = probe_dir(run, cfg)
    for layer, summary in analysis["layers"].items():
        rows = summary["checkpoints"]
        if not rows:
            continue
        path = folder / f"metrics_{layer}.png"
        save_metric_curves(rows, [r for r in probed if layer in r["layers"]], layer, CURVE_METRICS, path,
                           f"{run.path.name}: {layer}")
        written.append(path)
        path = folder / f"story_{layer}.png"
        save_story(rows, cfg.phase, path, f"{run.path.name}: {layer}, phases and generation on one time axis")
        written.append(path)
        panels, conditions = [], None
        kept = {}
        for r in rows:
            npz_path = folder / f"step_{r['step']:08d}.npz"
            npz = read_npz(npz_path) if npz_path.exists() else {}
            if f"activations.{layer}" in npz:
                kept[r["step"]] = npz
        for r in per_phase([r for r in rows if r["step"] in kept]):
            npz = kept[r["step"]]
            conditions = npz["conditions"]
            embedding = npz.get(f"umap.{layer}")
            if embedding is None:  # not computed while training: from the kept activations
                p = cfg.probe
                embedding = umap_r2(npz[f"activations.{layer}"].astype(np.float64), conditions, p.umap_neighbors,
                                    p.umap_min_dist, p.umap_seed)[2]
            if embedding is not None:
                panels.append((r["step"], r["phase"], embedding))
        if panels:
            path = folder / f"umap_{layer}.png"
            save_umap_grid(panels, conditions, path, f"{run.path.name}: 3D UMAP of {layer} (first two coordinates)")
            written.append(path)
    return written


def per_phase(rows: list[dict]) -> list[dict]:
    """The first and the last checkpoint of each phase, in step order: the pictures to show per phase."""
    picked = {}
    for phase in "ABC":
        labelled = [r for r in rows if r["phase"] == phase]
        for r in labelled[:1] + labelled[-1:]:
            picked[r["step"]] = r
    return [picked[step] for step in sorted(picked)]


def summary_lines(run: RunDir, cfg: Config, analysis: dict) -> list[str]:
    """A short text summary: final accuracy (DDPM where the run has it), phase and outcome onsets,
    the lag from phase C to accurate generation, agreement, correlation."""
    lines = []
    final = [r for r in run.metrics() if "final.sampler" in r]
    if final:
        f = final[-1]
        lines.append(f"final accuracy (step {f['step']}, {f['final.sampler']}): {f['final.train.accuracy']:.3f} "
                     f"(several {f['final.train.frac_several']:.2f}, wrong {f['final.train.frac_wrong']:.2f}, "
                     f"none {f['final.train.frac_none']:.2f})")
    scores = load_scores(run, sampler_tag(cfg))
    if scores:
        last = scores[-1]
        g = last["groups"]["train"]
        lines.append(f"{'' if final else 'final '}accuracy (step {last['step']}, {last['sampler']}, the curves' sampler): "
                     f"{g['accuracy']:.3f} (several {g['frac_several']:.2f}, wrong {g['frac_wrong']:.2f}, "
                     f"none {g['frac_none']:.2f})")
        for group, h in last["groups"].items():
            if group != "train":
                lines.append(f"  {group}: accuracy {h['accuracy']:.3f}")
    for layer, s in analysis["layers"].items():
        first, outcome = s["first_step"], s["first_outcome"]
        rho, agree = s["rank_correlation"]["rho"], s["agreement"]
        lines.append(f"{layer}: phases A from step {first['A']}, B from {first['B']}, C from {first['C']} "
                     f"({'in order' if s['in_order'] else 'not in order'}, rule {analysis['rule']}); "
                     f"accuracy >= 0.5 from {s['first_accurate']} (lag after C: {s['lag_c_to_accurate']})")
        lines.append(f"  most frequent outcome first: " + ", ".join(f"{k} at {v}" for k, v in outcome.items() if v is not None)
                     + f"; agreement of phase and outcome {'-' if agree is None else f'{agree:.2f}'}; "
                     f"Spearman rho(knn_overlap, accuracy) {'-' if rho is None else f'{rho:.2f}'} (n = {s['rank_correlation']['n']})")
    return lines


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(run: RunDir, cfg: Config | None = None) -> tuple[Path, list[str]]:
    """Analyze the run's phases, draw its pictures and write RUN_DIR/report.html (images embedded).
    Returns the report's path and its text summary."""
    cfg = cfg or run.config()
    analysis = analyze_run(run, cfg)
    pictures = write_pictures(run, cfg, analysis)
    summary = summary_lines(run, cfg, analysis)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>diffrep: {e(run.path.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "td,th{padding:2px 8px;text-align:right}pre{background:#f6f6f6;padding:8px;overflow:auto}</style>",
             f"</head><body><h1>diffrep run {e(run.path.name)}</h1>"]
    parts.append("<h2>Summary</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in summary) + "</ul>")
    for p in pictures:
        parts.append(f"<h2>{e(p.stem)}</h2>{_img(p, p.stem)}")
    for layer, s in analysis["layers"].items():
        parts.append(f"<h2>Phases and generation, {e(layer)}</h2><table><tr><th>step</th><th>phase</th>"
                     "<th>dominant outcome</th><th>accuracy</th><th>knn_overlap</th><th>why</th></tr>")
        for r in s["checkpoints"]:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            knn = "-" if r["knn_overlap"] is None else f"{r['knn_overlap']:.3f}"
            parts.append(f"<tr><td>{r['step']}</td><td>{e(r['phase'])}</td><td>{e(str(r['outcome']))}</td>"
                         f"<td>{acc}</td><td>{knn}</td><td style='text-align:left'>{e('; '.join(r['reasons']))}</td></tr>")
        parts.append("</table>")
    first_layer = analysis["layers"].get(cfg.probe.layers[0], {"checkpoints": []})["checkpoints"]
    if first_layer:
        parts.append(f"<h2>Samples per phase ({e(cfg.probe.layers[0])}; in-distribution evaluation set)</h2>")
    for r in per_phase(first_layer):
        path = run.path / "scores" / f"step_{r['step']:08d}_{sampler_tag(cfg)}.png"
        if path.exists():
            caption = f"phase {r['phase']}, step {r['step']} (dominant outcome: {r['outcome']})"
            parts.append(f"<h3>{e(caption)}</h3>{_img(path, caption)}")
    parts.append(f"<h2>Config</h2><pre>{e(json.dumps(cfg.to_dict(), indent=2))}</pre></body></html>")
    path = run.path / "report.html"
    atomic_write(path, "\n".join(parts).encode())
    return path, summary


def write_sweep_report(sweep_dir: Path, rows: list[dict], layer: str = "layer4",
                       findings: dict | None = None) -> tuple[Path, list[str]]:
    """Compare the runs of a sweep (aggregate rows): accuracy per setting with seeds as bands, and
    per setting the steps to 90% accuracy and to phase C. Writes report.html and summary.json.
    With an experiment's `findings` (diffrep/experiments.py) the page opens with the finding: the
    claim, the scale it was run at, the verdict, the figures and every statistic; a sweep without
    runs (percolation) has the finding only."""
    from .plots import save_setting_curves
    from .sweep import by_setting, curve, time_to

    sweep_dir = Path(sweep_dir)
    e = html.escape
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
                        + _img(picture, "accuracy per setting"))
        lines = items + lines
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>diffrep sweep {e(sweep_dir.name)}</title>"
            f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}img{{max-width:100%}}"
            f"td,th{{padding:2px 8px;text-align:right}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head>"
            f"<body><h1>diffrep sweep {e(sweep_dir.name)}</h1>{''.join(sections)}</body></html>")
    path = sweep_dir / "report.html"
    atomic_write(path, page.encode())
    return path, lines


def _finding_html(sweep_dir: Path, findings: dict) -> str:
    """The finding of an experiment: claim, scale, verdict, figures, and a table per statistic."""
    from .analyses import fmt

    e = html.escape
    parts = [f"<h2>Finding: {e(findings['experiment'])}</h2>",
             f"<p><b>Claim.</b> {e(findings['claim'])}</p>",
             f"<p><b>Measured.</b> {e(findings['measures'])}</p>",
             f"<p><b>Run at.</b> {e(findings['run_at'])}</p>",
             f"<p><b>Verdict.</b> {e(findings['verdict'])}</p>"]
    parts += [_img(sweep_dir / name, name) for name in findings["figures"]]
    for name, stat in findings["statistics"].items():
        parts.append(f"<h3>{e(name)}</h3><p>{e(stat['description'])}</p>")
        if "per_setting" in stat:
            parts.append("<table><tr><th>setting</th><th>mean</th><th>min</th><th>max</th><th>reached</th>"
                         "<th>per seed</th></tr>")
            for entry in stat["per_setting"]:
                seeds = ", ".join(fmt(v) for v in entry["values"])
                parts.append(f"<tr><td style='text-align:left'>{e(entry['label'])}</td><td>{e(fmt(entry['mean']))}</td>"
                             f"<td>{e(fmt(entry['min']))}</td><td>{e(fmt(entry['max']))}</td>"
                             f"<td>{entry['n_reached']} of {entry['n']}</td><td style='text-align:left'>{e(seeds)}</td></tr>")
            parts.append("</table>")
        else:
            value = {k: v for k, v in stat.items() if k != "description"}
            parts.append(f"<pre>{e(json.dumps(value, indent=1))}</pre>")
    return "".join(parts)
