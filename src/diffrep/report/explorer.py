"""The checkpoint explorer of a run's report: every checkpoint behind one slider (explorer.js).

The page carries the run's numbers as JSON (`explorer_data`) and one script that draws, for the
chosen checkpoint, the in-distribution samples (each tile's target marked, its outcome as a border),
the representation of the first probed layer (PCA and UMAP, each aligned to the previous checkpoint
so that orientation does not jump), the outcome of every evaluation condition on the (x, y) plane,
and a cursor on the curves over training. Nothing is fetched: the samples are the scores' own PNGs
as data URIs, so the page opens from disk, offline, with no server.
"""

from __future__ import annotations

import base64
import json
import math
from importlib import resources

import numpy as np
from scipy.linalg import orthogonal_procrustes

from ..config import Config
from ..evaluation.detect import OUTCOMES
from ..evaluation.probes import pca_embedding, umap_r2
from ..evaluation.scoring import load_scores, sampler_tag
from ..plots import OUTCOME_COLOURS, PHASE_COLOURS
from ..rundir import RunDir, read_npz

TILE_COLUMNS = 8  # scoring.tiled_png's layout of the in-distribution samples
DECIMALS = 3  # coordinates in the page: enough for a picture, and a page small enough to mail


def representation_embeddings(run: RunDir, cfg: Config, layer: str) -> dict[int, dict]:
    """Per probed step, the probe conditions and the first draw's code of `layer` in two views:
    {"conditions", "heldout", "pca" ([K, 3] or None), "umap" ([K, 3] or None)}. Each view is read
    from the probe's npz, or computed from the activations kept there (keep_every), else None."""
    p, found = cfg.probe, {}
    for record in run.probe_files(p):  # step_XXXXXXXX.json beside its .npz (RunDir.probe_path)
        path = record.with_suffix(".npz")
        arrays = read_npz(path) if path.exists() else {}
        if "conditions" not in arrays:
            continue
        acts = arrays.get(f"activations.{layer}")
        pca, umap = arrays.get(f"pca.{layer}"), arrays.get(f"umap.{layer}")
        if pca is None and acts is not None:
            pca = pca_embedding(acts)
        if umap is None and acts is not None:
            umap = umap_r2(acts.astype(np.float64), arrays["conditions"], p.umap_neighbors, p.umap_min_dist,
                           p.umap_seed)[2]
        found[int(path.stem.split("_")[1])] = {"conditions": arrays["conditions"], "heldout": arrays["heldout"],
                                               "pca": pca, "umap": umap}
    return found


def aligned(embeddings: list[np.ndarray | None]) -> list[list | None]:
    """Embeddings in step order, each centred, scaled to unit RMS radius and rotated (or reflected)
    onto the previous one by orthogonal Procrustes, so that a code that did not change looks the
    same; returned as the first two coordinates, rounded, for the page."""
    previous, out = None, []
    for e in embeddings:
        if e is None:
            out.append(None)
            continue
        e = np.asarray(e, dtype=np.float64)
        e = e - e.mean(axis=0)
        e = e / (math.sqrt((e ** 2).sum(axis=1).mean()) or 1.0)
        if previous is not None and previous.shape == e.shape:
            e = e @ orthogonal_procrustes(e, previous)[0]
        previous = e
        out.append(np.round(e[:, :2], DECIMALS).tolist())
    return out


def _png_uri(path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def _rounded(values) -> list:
    """Numbers for JSON: NaN (e.g. the centroid of a sample with no bump) becomes null."""
    a = np.round(np.asarray(values, dtype=np.float64), DECIMALS)
    return [None if isinstance(v, float) and math.isnan(v) else v for v in a.tolist()] if a.ndim == 1 else \
        [_rounded(row) for row in a]


def _curves(run: RunDir, layer: str, analysis_rows: list[dict], scores: list[dict]) -> dict:
    """Series over training steps: the loss per timestep bucket and the learning rate (metrics.jsonl),
    the outcome fractions and accuracy (the scores), the rule's two numbers, knn_overlap and the phase
    (the analysis)."""
    training = [r for r in run.metrics() if "loss" in r]
    buckets = sorted({k for r in training for k in r if k.startswith("loss_t")},
                     key=lambda k: int(k[len("loss_t"):].split("_")[0]))
    return {
        "training_steps": [r["step"] for r in training],
        "loss": {k: [r.get(k) for r in training] for k in ["loss", *buckets]},
        "lr": [r.get("lr") for r in training],
        "score_steps": [r["step"] for r in scores],
        "fractions": {o: [r["groups"]["train"][f"frac_{o}"] for r in scores] for o in OUTCOMES},
        "probe_steps": [r["step"] for r in analysis_rows],
        "phase": [r["phase"] for r in analysis_rows],
        "representation": {k: [r.get(k) for r in analysis_rows] for k in ("condition_share", "order_gain", "knn_overlap")},
        "layer": layer,
    }


def explorer_data(run: RunDir, cfg: Config, analysis: dict,
                  embeddings: dict[int, dict] | None = None) -> dict:
    """Everything the explorer shows, per checkpoint that was scored or probed (the first probed
    layer's phase and code; the scoring sampler's samples and outcomes)."""
    layer = cfg.probe.layers[0]
    tag = sampler_tag(cfg)
    scores = load_scores(run, tag)
    rows = analysis["layers"].get(layer, {"checkpoints": []})["checkpoints"]
    embeddings = representation_embeddings(run, cfg, layer) if embeddings is None else embeddings
    phase_of = {r["step"]: r["phase"] for r in rows}
    accuracy_of = {r["step"]: r["groups"]["train"]["accuracy"] for r in scores}
    steps = sorted(set(phase_of) | set(accuracy_of))
    evaluation, checkpoints = None, []
    for step in steps:
        per_sample = read_npz(run.score_path(step, tag, "npz")) if step in accuracy_of else {}
        if per_sample and evaluation is None:
            evaluation = {"conditions": _rounded(per_sample["conditions"]), "group": per_sample["group"].tolist()}
        checkpoints.append({
            "step": step, "phase": phase_of.get(step), "accuracy": accuracy_of.get(step),
            "samples": _png_uri(run.score_path(step, tag, "png")) if per_sample else None,
            "outcome": per_sample["outcome"].tolist() if per_sample else None,
            "error": _rounded(per_sample["error"]) if per_sample else None,
        })
    probed = [embeddings.get(c["step"]) for c in checkpoints]
    for view in ("pca", "umap"):
        for c, e in zip(checkpoints, aligned([None if p is None else p[view] for p in probed])):
            c[view] = e
    first = next((p for p in probed if p is not None), None)
    group_names = list(scores[0]["groups"]) if scores else []
    d = cfg.data
    return {
        "run": run.path.name, "layer": layer, "sampler": tag,
        "image_size": d.image_size, "latent_size": d.latent_size, "offset": (d.latent_size - d.image_size) / 2,
        "tile_columns": TILE_COLUMNS, "tolerance": cfg.scoring.tolerance,
        "outcomes": list(OUTCOMES), "outcome_colours": [OUTCOME_COLOURS[o] for o in OUTCOMES],
        "phase_colours": PHASE_COLOURS,
        "thresholds": {"condition_share": cfg.phase.min_condition_share, "order_gain": cfg.phase.min_order_gain},
        "evaluation": {**(evaluation or {"conditions": [], "group": []}), "group_names": group_names},
        "probe": None if first is None else {"conditions": _rounded(first["conditions"]),
                                             "heldout": first["heldout"].astype(bool).tolist()},
        "checkpoints": checkpoints,
        "curves": _curves(run, layer, rows, scores),
    }


def script_json(data: dict) -> str:
    """JSON that cannot end its <script> element or open a comment there: <, > and & as \\u escapes
    (JSON.parse reads them back as the same characters)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_html(data: dict) -> str:
    """The explorer's block: its markup, its data and its script (explorer.js)."""
    script = resources.files(__package__).joinpath("explorer.js").read_text()
    markup = resources.files(__package__).joinpath("explorer.html").read_text()
    return (markup + f'<script type="application/json" id="explorer-data">{script_json(data)}</script>'
            f"<script>{script}</script>")
