"""The stripes experiment: accuracy against the data fraction lambda; the data needed against the image size."""

from __future__ import annotations

from ..data import BumpDataset, in_frame
from ..percolation import cluster_row, onset
from ..plots import plot_seed_bands
from ..sweep.tables import config_from_row, final_value
from .common import NOT_REACHED, Context, first_rows, fmt, per_setting, save_figure, series

DATA_ACCURACY = 0.6  # "the data needed for 60% accuracy"
COMPOSITION_GAIN = 0.1  # rim examples "help" when they raise composition accuracy by this much

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
