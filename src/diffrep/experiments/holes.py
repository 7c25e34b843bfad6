"""The holes experiment: held-out regions of growing size, in-distribution against held-out accuracy."""

from __future__ import annotations

from ..plots import plot_seed_bands, plot_setting_curves
from ..sweep.tables import config_from_row, curve, final_value
from .common import ACCURACY_KEY, NOT_REACHED, Context, first_rows, save_figure, seed_stats, series
from .stats import NOT_MEASURABLE, overall, trend_test, trend_verdict, verdict

MIN_TRAIN_ACCURACY = 0.2  # below this in-distribution accuracy a held-out ratio means nothing
INTERPOLATES = 0.8  # held-out / in-distribution accuracy at least this: "interpolates" ...
FAILS = 0.5  # ... below this: "fails", between: "partly"

def region_family(region, data) -> str:
    """'interior square', 'edge square' (it reaches the lattice's edge), 'band' or 'cross'."""
    if region.kind != "square":
        return region.kind
    half = region.width / 2
    at_edge = (region.x - half <= data.x_min + 1e-9 or region.x + half >= data.x_max - 1e-9
               or region.y - half <= data.y_min + 1e-9 or region.y + half >= data.y_max - 1e-9)
    return "edge square" if at_edge else "interior square"


def analyze_holes(rows: list[dict], ctx: Context) -> dict:
    """In-distribution vs held-out accuracy per held-out region family and width W.

    Per run and region: the held-out to in-distribution accuracy ratio at the last checkpoint (None
    when the in-distribution accuracy is below MIN_TRAIN_ACCURACY: nothing is learned to generalize)
    and the held-out to in-distribution denoising-loss ratio (sampling-free). Each family and W is
    described by the mean ratio over seeds: >= INTERPOLATES 'interpolates', < FAILS 'fails', else
    'partly'; NOT_REACHED when no seed learned the in-distribution set.

    The prediction, per family held out at two widths or more ("worse as they grow"): the ratio falls
    as W grows, decided by `stats.trend_verdict` on the Spearman rho of W with the ratio over the
    runs that learned the in-distribution set, predicted < 0. The verdict is the overall one of the
    families (`stats.overall`).
    """
    firsts = first_rows(rows)
    train_acc = final_value(rows, ACCURACY_KEY)
    train_loss = final_value(rows, "score.train.denoise_loss")
    groups: dict[tuple[str, float], dict] = {}
    loss_curves: dict[tuple[str, float], list] = {}
    for run, row in firsts.items():
        data = config_from_row(row).data
        for i, region in enumerate(data.holdout):
            key = (region_family(region, data), region.width)
            g = groups.setdefault(key, {"runs": [], "train": [], "heldout": [], "ratio": [], "loss_ratio": []})
            held = final_value([r for r in rows if r["run"] == run], f"score.heldout_{i}.accuracy")[run]
            held_loss = final_value([r for r in rows if r["run"] == run], f"score.heldout_{i}.denoise_loss")[run]
            learned = train_acc[run] is not None and train_acc[run] >= MIN_TRAIN_ACCURACY and held is not None
            g["runs"].append(run)
            g["train"].append(train_acc[run])
            g["heldout"].append(held)
            g["ratio"].append(held / train_acc[run] if learned else None)
            g["loss_ratio"].append(held_loss / train_loss[run] if held_loss is not None and train_loss[run] else None)
            loss_curves.setdefault(key, []).append(
                [(s, h / t) for (s, h), (s2, t) in zip(curve(rows, run, f"score.heldout_{i}.denoise_loss"),
                                                        curve(rows, run, "score.train.denoise_loss")) if s == s2 and t])
    order = sorted(groups)
    entries = {name: [] for name in ("train", "heldout", "ratio", "loss_ratio")}
    for family, width in order:
        g = groups[(family, width)]
        for name in entries:
            entries[name].append({"label": f"{family} W={width:g}", "setting": {"family": family, "width": width},
                                  "runs": g["runs"], **seed_stats(g[name])})
    stats = {
        "final_train_accuracy": {"description": "in-distribution accuracy at the last checkpoint", "per_setting": entries["train"]},
        "final_heldout_accuracy": {"description": "held-out accuracy of the region at the last checkpoint",
                                   "per_setting": entries["heldout"]},
        "heldout_to_train_accuracy": {"description": f"held-out / in-distribution accuracy (in-distribution >= {MIN_TRAIN_ACCURACY})",
                                      "per_setting": entries["ratio"]},
        "heldout_to_train_denoise_loss": {"description": "held-out / in-distribution denoising loss at the last checkpoint",
                                          "per_setting": entries["loss_ratio"]},
    }
    families = sorted({f for f, _ in order})
    predictions = []
    for family in families:
        family_widths = [w for f, w in order if f == family]
        if len(family_widths) < 2:
            continue
        learned = [(w, r) for w in family_widths for r in groups[(family, w)]["ratio"] if r is not None]
        test = stats[f"trend_ratio_{family.replace(' ', '_')}"] = {
            "description": f"{family}: Spearman rho of W with the held-out / in-distribution accuracy over the runs "
                           f"whose in-distribution accuracy is >= {MIN_TRAIN_ACCURACY}, permutation p-values and a "
                           "bootstrap interval over runs",
            **trend_test([w for w, _ in learned], [r for _, r in learned])}
        decided = trend_verdict(test, -1, f"in-distribution accuracy {MIN_TRAIN_ACCURACY}") \
            if test["n_settings"] >= 2 else verdict(NOT_MEASURABLE, f"the in-distribution set is learned (accuracy >= "
                                                                    f"{MIN_TRAIN_ACCURACY}) at fewer than two widths")
        predictions.append({"name": family, "prediction": f"{family}s: the held-out / in-distribution accuracy falls "
                                                          "as W grows (rho of W with the ratio < 0)", **decided})
    words = []
    for e in entries["ratio"]:
        word = NOT_REACHED if e["mean"] is None else "interpolates" if e["mean"] >= INTERPOLATES else \
            "fails" if e["mean"] < FAILS else "partly"
        words.append(f"{e['label']}: {word}" + ("" if e["mean"] is None else f" ({e['mean']:.2f})"))
    trend_words = "; ".join(f"{p['name']}s: {p['verdict']} ({p['reason']})" for p in predictions)
    summary = (f"{overall(predictions)}: {trend_words}. " if predictions else "") + (
        "held-out / in-distribution accuracy: " + "; ".join(words) if words else f"{NOT_REACHED}: no held-out region")
    width_of = lambda e: e["setting"]["width"]  # noqa: E731
    by_width = [{"setting": {"width": w}, "values": [v for e in entries["train"] if e["setting"]["width"] == w
                                                      for v in e["values"]]} for w in sorted({w for _, w in order})]
    figures = save_figure(ctx, "holes: accuracy against W and held-out / in-distribution denoising loss (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series([e for e in entries["heldout"] if e["setting"]["family"] == f], width_of,
                                               f"held-out, {f}") for f in families]
                                   + [series(by_width, width_of, "in-distribution (all runs)")],
                                   "width W (pixels)", "accuracy at the last checkpoint"),
        lambda ax: plot_setting_curves(ax, [{"label": f"{f} W={w:g}", "runs": [c for c in loss_curves[(f, w)] if c]}
                                            for f, w in order], "held-out / in-distribution denoising loss"),
    ])
    return {"statistics": stats, "predictions": predictions, "verdict": summary, "figures": figures}
