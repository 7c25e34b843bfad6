"""The stripes experiment: accuracy against the data fraction lambda; the data needed against the image size."""

from __future__ import annotations

from ..data import BumpDataset, in_frame
from ..percolation import cluster_row, onset
from ..plots import plot_seed_bands
from ..sweep.tables import config_from_row, final_value
from .common import NOT_REACHED, Context, first_rows, fmt, per_setting, save_figure, series
from .stats import overall, paired_test, paired_verdict

DATA_ACCURACY = 0.6  # "the data needed for 60% accuracy"
PAIRS = "pairs of runs (same N, lambda and seed)"


def stripes_arm(row: dict) -> str:
    kind, rim = row["data.kind"], int(row["data.rim_examples"])
    return f"stripes + {rim} rim 2D" if kind == "stripes" and rim else kind


def training_images(row: dict) -> tuple[int, int]:
    """(2D training images: both labels in the frame, all training images) of a row's dataset."""
    data = config_from_row(row).data
    dataset = BumpDataset(data)
    return int(in_frame(dataset.train_conditions, data.image_size, data.latent_size).sum()), len(dataset)


def paired_gains(firsts: dict, frame: dict, is_arm, is_reference) -> list[float]:
    """Final frame accuracy of a run of one arm minus that of the reference arm's run at the same
    N, lambda and seed, for every such pair where both were scored."""
    def by_point(is_member):
        return {(int(r["data.image_size"]), float(r["data.keep_fraction"]), int(r["training.seed"])): frame[run]
                for run, r in firsts.items() if is_member(stripes_arm(r)) and frame[run] is not None}
    arm, reference = by_point(is_arm), by_point(is_reference)
    return [arm[k] - reference[k] for k in sorted(arm.keys() & reference.keys())]


def analyze_stripes(rows: list[dict], ctx: Context) -> dict:
    """Accuracy on the frame's 2D conditions (group "frame") against lambda, per data arm and size N.

    Two predictions, each decided by `stats.paired_verdict` on the final frame accuracy of one arm
    minus another's at the same N, lambda and seed (a one-sided sign-flip permutation test):
    *data efficiency*, bumps + 1D stripes above bumps alone (both hold the same 2D images); and
    *composition*, 1D stripes with a few 2D examples on the rim above 1D stripes alone. Described
    beside them, without a verdict: per arm and N, the smallest lambda whose mean final frame
    accuracy is >= DATA_ACCURACY, with its number of 2D training images; and the accuracy onset of
    bumps only beside the percolation onset of the same lattice (percolation.onset). NOT_REACHED
    where undefined.
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
    predictions = []
    for name, prediction, is_arm, is_reference in [
            ("data efficiency", "bumps + 1D stripes end more accurate on the frame's 2D conditions than bumps alone, "
             "which hold the same 2D images", lambda a: a == "bumps+stripes", lambda a: a == "bumps"),
            ("composition", "a few 2D examples on the rim make 1D stripes end more accurate on the frame's 2D "
             "conditions", lambda a: a.startswith("stripes + "), lambda a: a == "stripes")]:
        test = paired_test(paired_gains(firsts, frame, is_arm, is_reference))
        stats[f"{name.replace(' ', '_')}_gain"] = {"description": f"{name}: final frame accuracy minus the other arm's "
                                                                  f"over {PAIRS}, sign-flip p-values", **test}
        predictions.append({"name": name, "prediction": prediction, **paired_verdict(test, PAIRS)})
    words = "; ".join(f"{p['name']}: {p['verdict']} ({p['reason']})" for p in predictions)
    verdict = f"{overall(predictions)}: {words}" + "".join(f"; {part}" for part in parts)
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
    return {"statistics": stats, "predictions": predictions, "verdict": verdict, "figures": figures}
