"""The papers' experiments and their open questions as named sweeps, each ending in a finding.

    diffrep sweep EXPERIMENT [--scale laptop|full|tiny] [--sweep-dir D] [--seeds ...] [--set ...]

An experiment is a sweep (a base config, a grid and seeds; diffrep.sweep) at one of three scales,
and the analysis (a module of this package per experiment) that turns its aggregated rows into
statistics per setting over seeds, a figure with seeds as bands, and a verdict computed from the
numbers:

  laptop  (the default) a reduced scale that a 2-core CPU affords: the `default` preset as it is (its
          1,200-step cosine), fewer grid values; holes, stripes and digits with a checkpoint every 250
          steps, stripes and digits on seeds 0 and 1, holes on 6-8; the timing experiments (density,
          sigma, imbalance, ablation) with a checkpoint every 50 steps and seeds 6-10 (density 6-13);
          `phases` eight seeds (6-13) with a checkpoint every 25 steps; `families` its DiT runs on a
          2,400-step cosine, a checkpoint every 100 steps. `estimate_seconds` gives the wall time.
  full    the paper's scale: the `paper` preset (widths 64/128/256), the full grids, the laptop scale's
          seeds (stripes, digits: 0-4; holes 6-10); for a GPU (training.device=auto picks it) or a Ray
          cluster (--backend ray)
  tiny    seconds per run (the `tiny` preset, 12 steps): the tests run every experiment end to end at
          this scale; its findings mean nothing

SWEEP_DIR (default runs/EXPERIMENT-SCALE) holds the sweep (sweep.json, runs/, table.csv,
report.html) and:

  experiment.json   {"experiment", "scale", "params"}: `diffrep sweep --resume SWEEP_DIR` finishes the
                    sweep and analyzes it again
  findings.json     the claim tested, the scale run, every statistic, the verdict, the figures
  EXPERIMENT.png    the figure

`percolation` trains nothing: it measures clusters of overlapping bumps (diffrep/percolation.py)
and writes the same files without runs. The experiments and what each measures: `EXPERIMENTS`.

Laptop scale on this 2-core CPU (`estimate_seconds`, fitted to the runs of all eight sweeps; `diffrep sweep
EXPERIMENT` prints it before starting; tests/test_experiments.py keeps this table true):

    experiment   runs   estimated wall time
    phases          8   ~37 min
    density        24   ~61 min
    sigma          30   ~76 min
    imbalance      45   ~104 min
    torus          15   ~38 min
    holes          21   ~83 min
    stripes        36   ~92 min
    percolation     -   ~40 s (no training; measured 38 s beside a sweep)
    ablation       35   ~112 min
    families       24   ~100 min
    digits          4   ~10 min

The estimate counts a DiT run as 1.48x the default UNet's run of the same schedule (DIT_STEP_RATIO). The
families experiment trains its DiT runs twice as long as its UNet runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import Config, ConfigError, make_config, parse_override
from ..evaluation.phases import rule_id
from ..evaluation.scoring import evaluation_set
from ..rundir import atomic_write, read_json
from ..sweep.grid import expand_grid
from ..sweep.runner import load_sweep, prepare_sweep_dir, run_sweep
from ..sweep.tables import aggregate, read_table, write_table
from ..training import checkpoint_schedule
from . import ablation, density, families, holes, imbalance, percolation, phases, sigma, stripes, torus
from .common import Context

SCALES = ("laptop", "full", "tiny")
EXPERIMENT_VERSION = 1

# Wall time on this 2-core CPU (bench/fit_estimate.py fits them to measured sweeps; each run's time
# halved, since a sweep trains two one-thread runs side by side): seconds per training step (batch 32,
# 32 x 32 images, widths 16 / 32 / 64), seconds per checkpoint for scoring its 64 evaluation conditions
# and probing, and the part of a run's cost that does not grow with image area x first-level width^2.
STEP_SECONDS = 0.067
CHECKPOINT_SECONDS = 2.9
FIXED_COST = 0.19
# The final DDPM scoring of a finished run (scoring.final_ddpm): 1,000 steps on the 64 conditions took
# 113 s with one thread on this CPU (the default preset's model, measured alone), halved like the
# constants above.
FINAL_DDPM_SECONDS = 56.5
# A DiT training step (model.arch = dit, its defaults) against the default UNet's: the median per run in
# the families sweep, side by side, 0.20 s against 0.135 s (bench/bench_train.py back to back: 1.45x, the
# median of three pairs); a DiT run's cost scales with the image's area only.
DIT_STEP_RATIO = 1.48

# lambda from 0.01 to 0.2 in steps of 0.01, then to 1 in steps of 0.05
PERCOLATION_LAMBDAS = [round(0.01 * k, 2) for k in range(1, 21)] + [round(0.05 * k, 2) for k in range(5, 21)]

# Run settings of the scales (on the named presets; an experiment adds its own).
TINY_RUN = {"training.steps": 12, "training.checkpoint_log_points": 2, "training.checkpoint_every": 6,
            "probe.cv_folds": 3}
# The laptop scale trains the `default` preset as it is, to the end of its 1,200-step cosine (a longer
# cosine keeps the rate high after phase C, which loosens the code again: docs/tuning.md).
LAPTOP_RUN = {"training.checkpoint_every": 250}
FULL_SEEDS = [0, 1, 2, 3, 4]
# The timing experiments (density, sigma, imbalance, ablation) compare times to an event across settings
# with rank tests (experiments/stats.py), which need runs: 5 seeds a setting (density, the main claim, 8),
# none of them a seed any default was chosen on (0-5), and a checkpoint every 50 steps to resolve the
# transitions; their final DDPM scoring is left out (their statistics read the curves' sampler).
TIMING_SEEDS = list(range(6, 11))
DENSITY_SEEDS = list(range(6, 14))
TIMING_RUN = {"training.checkpoint_every": 50, "scoring.final_ddpm": False}
# holes tests a trend of the held-out / in-distribution accuracy with the width of the region, per region
# family over 3 widths (experiments/holes.py): 3 seeds a setting give 9 runs a trend, on seeds that chose
# no default.
HOLES_SEEDS = list(range(6, 9))
# phases: a checkpoint every 25 steps, to time phase B (50-100 steps long in seeds 0-3), and UMAP at every
# one, to set the paper's UMAP R^2 beside the rule's metrics.
PHASES_RUN = {"probe.umap": True, "probe.keep_every": 1, "training.checkpoint_every": 25}


@dataclass(frozen=True)
class Scale:
    preset: str  # the config preset (config.PRESETS)
    overrides: dict  # on top of the preset
    grid: dict  # the sweep's grid (sweep.expand_grid: linked keys "a+b" allowed)
    seeds: list[int]  # training seeds (percolation: subsample seeds)
    params: dict = field(default_factory=dict)  # the analysis's own parameters


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # what the papers claim (docs/conventions.md), which the finding is set against
    measures: str  # one line: what it measures
    scales: dict[str, Scale]
    analyze: Callable[[list[dict], Context], dict]
    trains: bool = True


# ----------------------------------------------------------------------------
# Grids that are lists of points (linked keys).


def holdout_grid(size: float, widths: list[float], cross_width: float, band_widths: list[float]) -> list[list[dict]]:
    """Held-out region sets: per W an interior square (centred) with an edge square (touching x = 0)
    in the same run (they are disjoint for W <= size / 4 and scored apart), the cross, and each band."""
    c = size / 2
    regions = [[{"kind": "square", "width": w, "x": c, "y": c}, {"kind": "square", "width": w, "x": w / 2, "y": c}]
               for w in widths]
    regions.append([{"kind": "cross", "width": cross_width, "x": c, "y": c}])
    regions += [[{"kind": "band", "width": b, "x": c, "y": c, "axis": "x"}] for b in band_widths]
    return regions


STRIPES_KEYS = ("data.image_size", "data.latent_size", "data.kind", "data.rim_examples", "data.keep_fraction",
                "data.x_min", "data.x_max", "data.y_min", "data.y_max")


def stripes_grid(points: list[tuple[str, int, int, float]]) -> dict:
    """One linked grid key over STRIPES_KEYS from (kind, rim examples, N, lambda) points. The frame
    sits in a latent square 12 N / 32 larger (the follow-up's 44 for N = 32); bumps live on the
    frame's lattice, stripes on the whole latent square."""
    values = []
    for kind, rim, size, lam in points:
        margin = 6 * size / 32
        latent = size + 2 * margin
        lo, hi = (margin, margin + size) if kind == "bumps" else (0.0, latent)
        values.append([size, latent, kind, rim, lam, lo, hi, lo, hi])
    return {"+".join(STRIPES_KEYS): values}


def stripes_points(lambdas: list[float], every_arm: list[int], two_arms: list[int], rim: int) -> list:
    """All four arms at the sizes `every_arm`, bumps and bumps + stripes also at `two_arms`."""
    arms = [("bumps", 0), ("bumps+stripes", 0), ("stripes", 0), ("stripes", rim)]
    return ([(k, r, n, lam) for n in every_arm for k, r in arms for lam in lambdas]
            + [(k, r, n, lam) for n in two_arms for k, r in arms[:2] for lam in lambdas])


ABLATION_KEY = "+".join(ablation.ABLATION_KEYS)


def ablation_grid(attention: list[int], more_attention: list[int], widths: list[int], only=None) -> dict:
    """The baseline and one change at a time (values of ABLATION_KEY, in the order of
    ablation.ABLATION_KEYS): attention only in the bottleneck, attention at more levels, half and
    double widths, no long skip connections, a trainable MLP label encoder. `only`: these names."""
    variants = {
        "baseline": [attention, widths, True, "sinusoidal"],
        "bottleneck attention": [[], widths, True, "sinusoidal"],
        "more attention": [more_attention, widths, True, "sinusoidal"],
        "half widths": [attention, [w // 2 for w in widths], True, "sinusoidal"],
        "double widths": [attention, [w * 2 for w in widths], True, "sinusoidal"],
        "no skips": [attention, widths, False, "sinusoidal"],
        "mlp labels": [attention, widths, True, "mlp"],
    }
    return {ABLATION_KEY: [v for name, v in variants.items() if only is None or name in only]}


def digits_lattice(lo: float, hi: float, step: float) -> dict:
    return {"data.kind": "digits", "data.x_min": lo, "data.x_max": hi, "data.y_min": lo, "data.y_max": hi,
            "data.dx": step, "data.dy": step}


TINY_STRIPES = {"training.checkpoint_every": 12}  # frame group + 8 runs: fewer checkpoints keep the test short
TINY_DIGITS = {**digits_lattice(4.0, 12.0, 2.0), "data.glyph_scale": 0.75}  # a 6 px glyph in the 16 px frame
TWO_LAYERS = {"probe.layers": ["layer4", "bottleneck"]}

# families: backbone x objective, with the sampler and loss weighting each objective takes
FAMILY_KEYS = "model.arch+diffusion.objective+scoring.sampler+training.loss_weighting"
# six seeds a family: each family's phase predictions need stats.MIN_MEASURED_RUNS runs
FAMILY_SEEDS = list(range(6, 12))
FAMILIES = [[arch, objective, sampler, weighting] for arch in ("unet", "dit")
            for objective, sampler, weighting in (("epsilon", "ddim", "min_snr"), ("flow", "euler", "uniform"))]
# the laptop scale gives each backbone its horizon: the DiT places the bump later than the UNet, so it
# trains a 2,400-step cosine (chosen on seeds 0-1, docs/tuning.md, "Where the DiT keeps its code, and
# its horizon") with a checkpoint every 100 steps, the UNet's 24 checkpoints over its run
FAMILY_HORIZONS = {"unet": [1200, 50], "dit": [2400, 100]}
LAPTOP_FAMILIES = {f"{FAMILY_KEYS}+training.steps+training.checkpoint_every":
                   [family + FAMILY_HORIZONS[family[0]] for family in FAMILIES]}


def torus_lattice(size: float, step: float) -> dict:
    """A lattice that covers the torus of circumference `size` once: x = size is x = 0 there."""
    return {"data.x_max": size - step, "data.y_max": size - step, "data.dx": step, "data.dy": step}


# torus: the periodic lattice with FiLM conditioning, the same unwrapped, and periodic with the axes bias
# (model.conditioning); the probe shares one noise draw between conditions (experiments/torus.py says why)
TORUS_GRID = {"data.periodic+model.conditioning": [[True, "film"], [False, "film"], [True, "axes"]]}
SHARED_PROBE = {"probe.input": "shared"}


# imbalance: 2D lattices (dx, dy) and 1D controls (bumps along y only, at the frame's centre; not probed:
# a probe grid needs two axes), each with a conditioning (model.conditioning), as one linked grid key
IMBALANCE_KEYS = "data.x_min+data.x_max+data.dx+data.dy+probe.during_training+model.conditioning"


def imbalance_grid(size: float, lattices: list[tuple[float, float]], controls: list[float],
                   conditioning: str = "film") -> list[list]:
    """The values of IMBALANCE_KEYS: each 2D lattice over [0, size], then each 1D control's dy."""
    return ([[0.0, size, dx, dy, True, conditioning] for dx, dy in lattices]
            + [[size / 2, size / 2, 1.0, dy, False, conditioning] for dy in controls])


# ----------------------------------------------------------------------------
# The experiments.

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment(
        "phases",
        claim="Over training the representation goes A (no structure) -> B (disordered 2D manifold) -> C (ordered), "
              "and generation goes several bumps -> one wrong bump -> one accurate bump (claim 1, 2, docs/conventions.md).",
        measures="on the default dataset, per seed: the onset of each phase, of each generation outcome and of "
                 "accuracy >= 0.5, the lag from phase C to accurate generation with its bootstrap interval, the "
                 "agreement of phase and outcome against its permutation null, the paper's UMAP R^2 per phase; "
                 "three predictions (order, agreement, lag) with computed verdicts",
        # Seeds 6-13: the phase rule's thresholds were checked on seeds 0-3 and the default recipe was
        # chosen on seeds 0-5, so these eight judge both without having shaped either.
        scales={"laptop": Scale("default", PHASES_RUN, {}, list(range(6, 14))),
                "full": Scale("paper", PHASES_RUN, {}, list(range(6, 14))),
                "tiny": Scale("tiny", TINY_RUN, {}, [0, 1])},
        analyze=phases.analyze_phases),
    Experiment(
        "density",
        claim="Denser datasets (smaller increments between bump centres) reach the ordered representation faster "
              "(claim 3, docs/conventions.md).",
        measures="steps to phase C and to 90% accuracy against the increment dx = dy at sigma 1",
        scales={"laptop": Scale("default", TIMING_RUN, {"data.dx+data.dy": [[0.25, 0.25], [0.5, 0.5], [1.0, 1.0]]},
                                DENSITY_SEEDS),
                "full": Scale("paper", {}, {"data.dx+data.dy": [[0.1, 0.1], [0.25, 0.25], [0.5, 0.5], [1.0, 1.0]]},
                              DENSITY_SEEDS),
                "tiny": Scale("tiny", TINY_RUN, {"data.dx+data.dy": [[1.0, 1.0], [2.0, 2.0]]}, [0])},
        analyze=density.analyze_density),
    Experiment(
        "sigma",
        claim="The spread sigma matters less than the density (claim 3, docs/conventions.md); the follow-up ties the onset to "
              "the overlap of neighbouring bumps.",
        # sigma >= 1: at the detector's default threshold a bump narrower than ~0.85 lights one pixel and
        # is dropped as a speck (detect.py), so sigma 0.5 would score "none" whatever the model draws.
        measures="steps to phase C and to 90% accuracy over sigma x increment, against the overlap of neighbouring "
                 "bumps, to separate density from overlap",
        scales={"laptop": Scale("default", TIMING_RUN, {"data.sigma": [1.0, 1.5, 2.0],
                                                        "data.dx+data.dy": [[0.5, 0.5], [1.0, 1.0]]}, TIMING_SEEDS),
                "full": Scale("paper", {}, {"data.sigma": [1.0, 1.5, 2.0, 3.0],
                                            "data.dx+data.dy": [[0.25, 0.25], [0.5, 0.5], [1.0, 1.0]]}, TIMING_SEEDS),
                "tiny": Scale("tiny", TINY_RUN, {"data.sigma": [1.0, 2.0], "data.dx+data.dy": [[1.0, 1.0], [2.0, 2.0]]},
                              [0])},
        analyze=sigma.analyze_sigma),
    Experiment(
        "imbalance",
        claim="With skewed increments (e.g. dx = 0.1, dy = 1) x and y are still learned together (coupled), not as "
              "two separate 1D tasks (claim 4, docs/conventions.md).",
        measures="x-only and y-only accuracy onsets per seed (steps and epochs) in 2D lattices with dense x and sparse y "
                 "(the paper's 0.1:1, its mirror, 0.1:4) beside 1D controls (y only) at the same increments: is the "
                 "sparse y learned sooner in 2D than alone (coupled), once 1D density is shown to slow y alone; "
                 "with the axes bias (model.conditioning = axes) at 0.1:4 and y alone: does the sparse y pay less for "
                 "the 2D lattice than with FiLM; additive_share against step 0 beside",
        scales={"laptop": Scale("default", TIMING_RUN, {IMBALANCE_KEYS: imbalance_grid(32.0, [(1.0, 1.0), (0.1, 1.0),
                                                                                               (1.0, 0.1), (0.1, 4.0)],
                                                                                [0.1, 1.0, 4.0])
                                                                 + imbalance_grid(32.0, [(0.1, 4.0)], [4.0], "axes")},
                                TIMING_SEEDS, {"axis_threshold": imbalance.AXIS_ACCURACY_THRESHOLD}),
                "full": Scale("paper", {}, {IMBALANCE_KEYS: imbalance_grid(32.0, [(1.0, 1.0), (0.1, 1.0), (1.0, 0.1),
                                                                                  (0.01, 1.0), (0.1, 4.0)],
                                                                           [0.01, 0.1, 1.0, 4.0])
                                                            + imbalance_grid(32.0, [(0.1, 1.0), (0.1, 4.0)], [1.0, 4.0], "axes")},
                              TIMING_SEEDS, {"axis_threshold": imbalance.AXIS_ACCURACY_THRESHOLD}),
                "tiny": Scale("tiny", TINY_RUN, {IMBALANCE_KEYS: imbalance_grid(16.0, [(2.0, 2.0), (1.0, 4.0)], [1.0, 4.0])
                                                 + imbalance_grid(16.0, [(1.0, 4.0)], [4.0], "axes")},
                              [0], {"axis_threshold": imbalance.AXIS_ACCURACY_THRESHOLD})},
        analyze=imbalance.analyze_imbalance),
    Experiment(
        "torus",
        claim="On bumps with periodic boundaries the code of (x, y) is factorized: x and y coded by separate parts of "
              "the representation, a Clifford-torus-like code (follow-up, claim 5 of docs/conventions.md).",
        measures="additive_share of layer4 at the last checkpoint against the same run at step 0 and against chance "
                 "(shuffled labels), on a periodic lattice, beside the same lattice without periodic boundaries and "
                 "the periodic one with conditioning biased towards a factorized code (model.conditioning = axes)",
        scales={"laptop": Scale("default", {**TIMING_RUN, **SHARED_PROBE, **torus_lattice(32.0, 0.5)}, TORUS_GRID,
                                TIMING_SEEDS),
                "full": Scale("paper", {**SHARED_PROBE, **torus_lattice(32.0, 0.5)}, TORUS_GRID, TIMING_SEEDS),
                "tiny": Scale("tiny", {**TINY_RUN, **SHARED_PROBE, **torus_lattice(16.0, 2.0)}, TORUS_GRID, [0])},
        analyze=torus.analyze_torus),
    Experiment(
        "holes",
        claim="Models compose well but interpolate poorly over held-out regions, worse as they grow (follow-up, "
              "claim 5 of docs/conventions.md).",
        measures="in-distribution vs held-out accuracy for interior and edge W x W squares of growing W, the cross "
                 "(x or y in [13, 19]) and bands of width 1.0, 3.5 and 8.0; the held-out denoising loss over training",
        scales={"laptop": Scale("default", LAPTOP_RUN, {"data.holdout": holdout_grid(32, [2, 4, 8], 6, [1.0, 3.5, 8.0])},
                                HOLES_SEEDS),
                "full": Scale("paper", {}, {"data.holdout": holdout_grid(32, [2, 4, 6, 8], 6, [1.0, 3.5, 8.0])},
                              TIMING_SEEDS),
                "tiny": Scale("tiny", {**TINY_RUN, "data.dx": 1.0, "data.dy": 1.0},
                              {"data.holdout": holdout_grid(16, [2, 4], 2, [3.5])}, [0])},
        analyze=holes.analyze_holes),
    Experiment(
        "stripes",
        claim="Training on 1D stripes plus bumps is far more data efficient than bumps alone, and a few 2D "
              "examples suffice for composition (follow-up, claim 5 of docs/conventions.md).",
        measures="accuracy on the frame's 2D conditions against the data fraction lambda for bumps only, bumps + "
                 "1D stripes, and stripes with and without 2D examples on the rim; the 2D data needed for 60% "
                 "accuracy against the image size N; percolation of the same lattice beside it",
        scales={"laptop": Scale("default", {**LAPTOP_RUN, "scoring.frame_grid": True},
                                stripes_grid(stripes_points([0.1, 0.3, 1.0], [16], [32], rim=8)), [0, 1],
                                {"percolation_thresholds": [0.005, 0.05, 0.5]}),
                "full": Scale("paper", {"scoring.frame_grid": True},
                              stripes_grid(stripes_points([0.05, 0.1, 0.2, 0.3, 0.5, 1.0], [32], [16, 64], rim=8)),
                              FULL_SEEDS, {"percolation_thresholds": [0.005, 0.05, 0.5]}),
                "tiny": Scale("tiny", {**TINY_RUN, **TINY_STRIPES, "scoring.frame_grid": True},
                              stripes_grid([(k, r, 16, lam) for k, r in [("bumps", 0), ("bumps+stripes", 0)] for lam in (0.5, 1.0)]
                                           + [("stripes", 0, 16, 1.0), ("stripes", 4, 16, 1.0),
                                              ("bumps", 0, 8, 1.0), ("bumps+stripes", 0, 8, 1.0)]),
                              [0], {"percolation_thresholds": [0.5]})},
        analyze=stripes.analyze_stripes),
    Experiment(
        "percolation",
        claim="The sudden onset of manifold formation follows percolation of the overlap between neighbouring bumps "
              "as the data fraction lambda grows (follow-up, claim 5 of docs/conventions.md).",
        measures="the largest cluster of overlapping kept bumps against lambda for several sigma and overlap "
                 "thresholds, and its onset (no training)",
        # The follow-up's overlap thresholds (0.005, 0.05) beside 0.5; lambda finely from 0.01 to 0.2, where
        # those thresholds percolate; sigma from 1, the narrowest bump the detector scores (a narrower one
        # lights one pixel and is dropped as a speck, detect.py), so that a training sweep can test the onsets.
        scales={"laptop": Scale("default", {}, {}, [0, 1, 2, 3, 4],
                                {"lambdas": PERCOLATION_LAMBDAS, "sigmas": [1.0, 1.5, 2.0],
                                 "thresholds": [0.005, 0.05, 0.5]}),
                "full": Scale("default", {"data.dx": 0.25, "data.dy": 0.25}, {}, list(range(10)),
                              {"lambdas": PERCOLATION_LAMBDAS, "sigmas": [1.0, 1.25, 1.5, 2.0, 3.0],
                               "thresholds": [0.005, 0.05, 0.5]}),
                "tiny": Scale("tiny", {}, {}, [0, 1], {"lambdas": [0.25, 0.5, 1.0], "sigmas": [1.0, 2.0],
                                                      "thresholds": [0.5, 0.8]})},
        analyze=percolation.analyze_percolation, trains=False),
    Experiment(
        "ablation",
        claim="Open question: which architecture choices change when the phases come (whether x and y factorize is "
              "the torus experiment's question).",
        measures="attention placement, widths, skip connections, sinusoidal vs trainable label encoders; steps to "
                 "phase C at layer4 and at the bottleneck, and the final accuracy, per variant against the baseline",
        scales={"laptop": Scale("default", {**TIMING_RUN, **TWO_LAYERS}, ablation_grid([8], [16, 8], [16, 32, 64]),
                                TIMING_SEEDS),
                "full": Scale("paper", TWO_LAYERS, ablation_grid([16, 8], [32, 16, 8], [64, 128, 256]), TIMING_SEEDS),
                "tiny": Scale("tiny", {**TINY_RUN, **TWO_LAYERS},
                              ablation_grid([8], [16, 8], [8, 16, 16], only=("baseline", "bottleneck attention",
                                                                            "no skips", "mlp labels")), [0])},
        analyze=ablation.analyze_ablation),
    Experiment(
        "families",
        claim="Open question: are the phases a property of the UNet trained with DDPM's loss, or of diffusion training "
              "in general (transformer backbones, flow matching)?",
        measures="the phases experiment's onsets, lag and three predictions for four families: UNet and DiT "
                 "(model.arch), each with the noise objective and with flow matching (diffusion.objective)",
        scales={"laptop": Scale("default", TIMING_RUN, LAPTOP_FAMILIES, FAMILY_SEEDS),
                "full": Scale("paper", {}, {FAMILY_KEYS: FAMILIES}, FAMILY_SEEDS),
                "tiny": Scale("tiny", {**TINY_RUN, "model.patch_size": 2, "model.dit_width": 16, "model.dit_depth": 2,
                                       "model.dit_heads": 2},
                              {FAMILY_KEYS: [[a, o, s, "uniform"] for a, o, s, _ in FAMILIES]},  # tiny: unweighted
                              [0])},
        analyze=families.analyze_families),
    Experiment(
        "digits",
        claim="Open question: do the same phases appear on images no one rendered as bumps?",
        measures="real glyphs (scikit-learn's 8 x 8 digits, scaled 1.5x, placed at sub-pixel (x, y) by their "
                 "centroid) conditioned on (x, y) only: the phases per glyph",
        scales={"laptop": Scale("default", {**LAPTOP_RUN, **digits_lattice(8.0, 24.0, 0.5)}, {"data.glyph": [0, 1]}, [0, 1]),
                "full": Scale("paper", digits_lattice(8.0, 24.0, 0.5), {"data.glyph": list(range(10))}, FULL_SEEDS),
                "tiny": Scale("tiny", {**TINY_RUN, **TINY_DIGITS}, {"data.glyph": [0, 1]}, [0])},
        analyze=phases.analyze_digits),
]}


# ----------------------------------------------------------------------------
# Resolving, estimating and running an experiment.


@dataclass
class Plan:
    experiment: Experiment
    scale: str
    base: Config
    grid: dict
    seeds: list[int]
    params: dict


def plan(name: str, scale: str = "laptop", overrides=(), seeds: list[int] | None = None) -> Plan:
    """The experiment `name` at `scale`: its base config (with `overrides`, "key=value" strings or a
    dict, on top), grid, seeds (`seeds` replaces the scale's) and analysis parameters."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: unknown experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ConfigError(f"--scale: must be one of {', '.join(SCALES)} (got {scale!r})")
    experiment = EXPERIMENTS[name]
    s = experiment.scales[scale]
    items = dict(overrides) if isinstance(overrides, dict) else dict(map(parse_override, overrides))
    base = make_config(s.preset, {**s.overrides, **items})
    params = dict(s.params)
    if not experiment.trains:
        params["seeds"] = list(seeds if seeds is not None else s.seeds)
    return Plan(experiment, scale, base, s.grid, list(seeds if seeds is not None else s.seeds), params)


def run_seconds(cfg: Config, step_s: float = STEP_SECONDS, checkpoint_s: float = CHECKPOINT_SECONDS,
                fixed_cost: float = FIXED_COST) -> float:
    """Wall time of training, scoring and probing one run on this 2-core CPU: its steps (in batches
    of 32) and its checkpoints (weighted by the evaluation set's size against the default's 64
    conditions) at step_s and checkpoint_s, scaled by a fixed part plus image area x first-level
    width^2 (the convolutions' cost; a DiT's, DIT_STEP_RATIO x image area), plus the final DDPM scoring
    (FINAL_DDPM_SECONDS, measured).
    bench/fit_estimate.py fits the three to measured runs."""
    d, t = cfg.data, cfg.training
    if cfg.model.arch == "dit":
        cost = DIT_STEP_RATIO * (d.image_size / 32) ** 2
    else:
        cost = fixed_cost + (1 - fixed_cost) * (d.image_size / 32) ** 2 * (cfg.model.widths[0] / 16) ** 2
    checkpoints = len(checkpoint_schedule(t.steps, t.checkpoint_log_points, t.checkpoint_every))
    scoring = len(evaluation_set(cfg).conditions) / 64 if cfg.scoring.during_training else 0.0
    final = FINAL_DDPM_SECONDS * scoring * cfg.diffusion.timesteps / 1000 if cfg.scoring.final_ddpm else 0.0
    return (t.steps * step_s * t.batch_size / 32 + checkpoints * checkpoint_s * (scoring + 1) / 2 + final) * cost


def estimate_seconds(configs: list[Config]) -> float:
    """Wall time of these runs on this 2-core CPU (`run_seconds`, with the constants fitted above)."""
    return sum(run_seconds(cfg) for cfg in configs)


def describe(p: Plan, runs: int) -> str:
    """One line for findings.json and the report: what was run at this scale."""
    if not p.experiment.trains:
        q = p.params
        return (f"{p.scale} scale: no training; lattice dx {p.base.data.dx:g}, dy {p.base.data.dy:g}; "
                f"{len(q['lambdas'])} lambdas, sigma {q['sigmas']}, overlap thresholds {q['thresholds']}, "
                f"subsample seeds {q['seeds']}")
    t, m = p.base.training, p.base.model
    s, q = p.base.scoring, p.base.probe
    in_grid = {key for keys in p.grid for key in keys.split("+")}
    steps = "the grid's steps" if "training.steps" in in_grid else f"{t.steps} steps"
    every = ("checkpoints as the grid sets" if "training.checkpoint_every" in in_grid
             else f"a checkpoint every {t.checkpoint_every} steps")
    return (f"{p.scale} scale: {runs} runs ({runs // len(p.seeds)} settings x seeds {p.seeds}), preset "
            f"{p.base.preset} (widths {m.widths}), {steps} of batch {t.batch_size} at lr {t.lr:g} "
            f"({t.lr_decay}), {every}, scoring {s.sampler}{s.sampler_steps} on a {s.grid}^2 grid"
            f"{', the last checkpoint with ddpm' if s.final_ddpm else ''}, probe grid {q.grid}^2 ({q.input} noise, "
            f"t = {q.timestep}, {q.draws} draws) at {', '.join(q.layers)}, phase rule {rule_id(p.base.phase)}")


@dataclass
class Outcome:
    sweep_dir: Path
    results: list[dict]  # one per run (sweep.runner.run_one): status, error, seconds
    rows: list[dict]  # the runs' aggregated table (sweep.tables.aggregate); none for an experiment without runs
    findings: dict  # as written to findings.json


def run_experiment(name: str, scale: str = "laptop", sweep_dir=None, overrides=(), seeds: list[int] | None = None,
                   quiet: bool = False, **backend) -> Outcome:
    """Run (or finish) an experiment into SWEEP_DIR (default runs/NAME-SCALE) and analyze it: writes
    table.csv, findings.json and the figure (diffrep.report writes its page). `backend` goes to
    `sweep.runner.run_sweep` (backend, workers, address, cpus_per_run, gpus_per_run, max_retries)."""
    p = plan(name, scale, overrides, seeds)
    root = Path(sweep_dir or f"runs/{name}-{scale}")
    if not p.experiment.trains:
        _prepare_untrained_dir(root, p)
        rows = percolation.percolation_rows(_context(root, p))
        write_table(rows, root / "table.csv")
        return Outcome(root, [], [], _analyze(root, p, rows, runs=0))
    points = expand_grid(p.base, p.grid, p.seeds)
    if not quiet:
        minutes = estimate_seconds([cfg for _, cfg in points]) / 60
        print(f"{name}, {scale} scale: {len(points)} runs; estimated {minutes:.0f} min on a 2-core CPU", flush=True)
    prepare_sweep_dir(root, p.base, p.grid, p.seeds, [n for n, _ in points])
    _write_marker(root, p)
    results = run_sweep(root, p.base, p.grid, p.seeds, quiet=quiet, **backend)
    rows = aggregate([str(root)])
    write_table(rows, root / "table.csv")
    return Outcome(root, results, rows, _analyze(root, p, rows, runs=len(points)))


def analyze_sweep(sweep_dir, rows: list[dict]) -> dict | None:
    """The finding of an experiment's sweep directory (its experiment.json), or None for a plain sweep."""
    root = Path(sweep_dir)
    if not (root / "experiment.json").is_file():
        return None
    record = read_json(root / "experiment.json")
    try:
        name, scale, params = record["experiment"], record["scale"], record["params"]
        experiment = EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{root / 'experiment.json'}: not an experiment record of this diffrep; remove it") from None
    if not experiment.trains:  # no sweep.json: the scale's plan, with the parameters it ran with
        return _analyze(root, Plan(**{**plan(name, scale).__dict__, "params": params}), rows, runs=0)
    base, grid, seeds = load_sweep(root)
    p = Plan(experiment, scale, base, grid, seeds, params)
    return _analyze(root, p, rows, runs=len(expand_grid(base, grid, seeds)))


def recompute_findings(folder) -> dict:
    """The finding of a kept experiment folder (experiment.json, the sweep's table.csv and, for an
    experiment that trains, sweep.json; no runs), recomputed from its table: findings.json and the
    figure written again, no training."""
    root = Path(folder)
    for name in ("experiment.json", "table.csv"):
        if not (root / name).is_file():
            raise ConfigError(f"{root}: not a kept experiment (no {name}); keep a sweep's experiment.json, sweep.json "
                              f"and table.csv there")
    return analyze_sweep(root, read_table(root / "table.csv"))


def _context(root: Path, p: Plan) -> Context:
    return Context(out=root, base=p.base, params=p.params, name=p.experiment.name, layer=p.base.probe.layers[0])


def _analyze(root: Path, p: Plan, rows: list[dict], runs: int) -> dict:
    result = p.experiment.analyze(rows, _context(root, p))
    findings = {"version": EXPERIMENT_VERSION, "experiment": p.experiment.name, "scale": p.scale,
                "claim": p.experiment.claim, "measures": p.experiment.measures, "run_at": describe(p, runs), **result}
    atomic_write(root / "findings.json", (json.dumps(findings, indent=1, default=_json_default) + "\n").encode())
    return findings


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _marker(p: Plan) -> dict:
    return {"version": EXPERIMENT_VERSION, "experiment": p.experiment.name, "scale": p.scale, "params": p.params,
            **({} if p.experiment.trains else {"base": p.base.to_dict()})}


def _write_marker(root: Path, p: Plan) -> None:
    atomic_write(root / "experiment.json", (json.dumps(_marker(p), indent=1) + "\n").encode())


def _prepare_untrained_dir(root: Path, p: Plan) -> None:
    """An empty (or new) folder, or one holding the same untrained experiment: its outputs are rewritten."""
    marker = root / "experiment.json"
    if marker.is_file():
        if read_json(marker) != json.loads(json.dumps(_marker(p))):
            raise ConfigError(f"{root}: holds another experiment or scale (experiment.json); choose another --sweep-dir")
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root}: exists and is not an empty folder or a {p.experiment.name} directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{root}: cannot create the directory ({e.strerror})") from None
    _write_marker(root, p)
