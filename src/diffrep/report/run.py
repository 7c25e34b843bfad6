"""The story of one run: pictures from its scores and probes, and a self-contained report.html.

Everything here reads the run directory only (config.json, metrics.jsonl, scores/, probes/), so it
works on any run, finished or not, wherever it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import Config
from ..evaluation.evaluate import analyze_run
from ..evaluation.probes import load_probes
from ..evaluation.scoring import load_scores, sampler_tag
from ..plots import save_metric_curves, save_score_curve, save_story, save_umap_grid
from ..rundir import RunDir, atomic_write
from .explorer import aligned, explorer_data, explorer_html, representation_embeddings
from .page import escape, figure, page

CURVE_METRICS = ["condition_share", "knn_overlap", "trustworthiness", "participation_ratio", "mle_dim", "decode_r2_x"]


def write_score_curve(run: RunDir, cfg: Config) -> Path | None:
    """Outcome fractions over training for the scoring sampler of `cfg`: scores/curve_TAG.png."""
    tag = sampler_tag(cfg)
    scores = load_scores(run, tag)
    if not scores:
        return None
    path = run.score_curve_path(tag)
    save_score_curve(scores, "train", path, f"{run.path.name}: in-distribution samples, {tag}")
    return path


def write_pictures(run: RunDir, cfg: Config, analysis: dict,
                   embeddings: dict[str, dict] | None = None) -> list[tuple[Path, str, str]]:
    """Score curve, and per probed layer the story, the metric curves and UMAP panels; returns the
    files written, each with a title and a one-line caption. `embeddings`: per layer, the
    `explorer.representation_embeddings` of the run (read here when not given)."""
    curve = write_score_curve(run, cfg)
    tag = sampler_tag(cfg)
    written = [(curve, "Generation over training",
                f"Outcome of each in-distribution sample ({tag}): no bump, several bumps, one bump at a wrong "
                f"place, one accurate bump.")] if curve else []
    probed = load_probes(run, cfg)
    for layer, summary in analysis["layers"].items():
        rows = summary["checkpoints"]
        if not rows:
            continue
        path = run.probe_picture_path(cfg.probe, "story", layer)
        save_story(rows, cfg.phase, path, f"{run.path.name}: {layer}, phases and generation on one time axis")
        written.append((path, f"Phases and generation on one time axis ({layer})",
                        "Above: the outcome fractions; below: the two numbers the phase rule reads, with its "
                        "thresholds; background: the phase."))
        path = run.probe_picture_path(cfg.probe, "metrics", layer)
        save_metric_curves(rows, [r for r in probed if layer in r["layers"]], layer, CURVE_METRICS, path,
                           f"{run.path.name}: {layer}")
        written.append((path, f"Representation metrics over training ({layer})",
                        "Each metric of the probe (diffrep/evaluation/probes.py) at every checkpoint, the phase as "
                        "background."))
        panels, conditions = [], None
        found = embeddings[layer] if embeddings is not None else representation_embeddings(run, cfg, layer)
        shown = per_phase([r for r in rows if (found.get(r["step"]) or {}).get("umap") is not None])
        for r, embedding in zip(shown, aligned([found[r["step"]]["umap"] for r in shown])):
            conditions = found[r["step"]]["conditions"]
            panels.append((r["step"], r["phase"], np.asarray(embedding)))
        if panels:
            path = run.probe_picture_path(cfg.probe, "umap", layer)
            save_umap_grid(panels, conditions, path, f"{run.path.name}: 3D UMAP of {layer} (first two coordinates)")
            written.append((path, f"The paper's picture: UMAP of {layer}",
                            "3D UMAP of the first noise draw's activations at the first and last checkpoint of each "
                            "phase that has one, coloured by x (top) and by y (bottom), each rotated onto the "
                            "previous panel's."))
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
        labelled = [r for r in s["checkpoints"] if r["phase"] is not None]
        phases = (f"phases A from step {first['A']}, B from {first['B']}, C from {first['C']} "
                  f"({'in order' if s['in_order'] else 'not in order'}, rule {analysis['rule']})" if labelled or not s["checkpoints"]
                  else f"no phases ({s['checkpoints'][0]['reasons'][0]})")
        lines.append(f"{layer}: {phases}; accuracy >= 0.5 from {s['first_accurate']} (lag after C: {s['lag_c_to_accurate']})")
        lines.append("  most frequent outcome first: " + ", ".join(f"{k} at {v}" for k, v in outcome.items() if v is not None)
                     + f"; agreement of phase and outcome {'-' if agree is None else f'{agree:.2f}'}; "
                     f"Spearman rho(knn_overlap, accuracy) {'-' if rho is None else f'{rho:.2f}'} (n = {s['rank_correlation']['n']})")
    return lines


PROVENANCE_COLUMNS = ["started", "ended", "resumed_from_step", "ended_at_step", "outcome", "device", "torch_threads",
                      "diffrep", "git", "torch", "python", "numpy", "cpu", "platform"]


def provenance_html(run: RunDir) -> str:
    """The run's training sessions (provenance.json): when, where and with what each ran."""
    sessions = run.provenance().get("sessions", [])
    if not sessions:
        return "<h2>Provenance</h2><p>Not recorded (a run trained before diffrep recorded provenance.json).</p>"

    def cell(value) -> str:
        if isinstance(value, dict):  # git: {"commit", "dirty"}
            value = f"{str(value.get('commit', ''))[:12]}{' (dirty)' if value.get('dirty') else ''}"
        return escape("-" if value is None else str(value))

    head = "".join(f"<th class='text'>{escape(c.replace('_', ' '))}</th>" for c in PROVENANCE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td class='text'>{cell(s.get(c))}</td>" for c in PROVENANCE_COLUMNS) + "</tr>"
                   for s in sessions)
    return ("<h2>Provenance</h2><p class='caption'>Each training session of the run: the first start and every "
            "resume (provenance.json).</p><div class='wide'><table><tr>" + head + "</tr>" + body + "</table></div>")


def write_report(run: RunDir, cfg: Config | None = None) -> tuple[Path, list[str]]:
    """Analyze the run's phases, draw its pictures and write RUN_DIR/report.html (images embedded).
    Returns the report's path and its text summary."""
    cfg = cfg or run.config()
    analysis = analyze_run(run, cfg)
    embeddings = {layer: representation_embeddings(run, cfg, layer) for layer in cfg.probe.layers}
    pictures = write_pictures(run, cfg, analysis, embeddings)
    summary = summary_lines(run, cfg, analysis)
    e = escape
    parts = ["<h2>Summary</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in summary) + "</ul>",
             explorer_html(explorer_data(run, cfg, analysis, embeddings[cfg.probe.layers[0]]))]
    parts += [figure(path, title, caption) for path, title, caption in pictures]
    for layer, s in analysis["layers"].items():
        parts.append(f"<h2>Phases and generation, checkpoint by checkpoint ({e(layer)})</h2><table><tr><th>step</th>"
                     "<th>phase</th><th>most frequent outcome</th><th>accuracy</th><th>condition_share</th>"
                     "<th>order gain</th><th class='text'>why</th></tr>")
        for r in s["checkpoints"]:
            numbers = ["-" if r[k] is None else f"{r[k]:.3f}" for k in ("accuracy", "condition_share", "order_gain")]
            parts.append(f"<tr><td>{r['step']}</td><td>{e(r['phase'] or '-')}</td><td>{e(str(r['outcome']))}</td>"
                         + "".join(f"<td>{n}</td>" for n in numbers)
                         + f"<td class='text'>{e('; '.join(r['reasons']))}</td></tr>")
        parts.append("</table>")
    parts.append(provenance_html(run))
    parts.append(f"<h2>Config</h2><pre>{e(json.dumps(cfg.to_dict(), indent=2))}</pre>")
    atomic_write(run.report_path, page(f"diffrep run {run.path.name}", "\n".join(parts)).encode())
    return run.report_path, summary

