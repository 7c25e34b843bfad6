"""The `diffrep` command line.

    diffrep train [PRESET] [--set key=value ...] [--run-dir DIR]    a new run
    diffrep train --config FILE [--set key=value ...]               a new run from a config file or run
    diffrep train --resume RUN_DIR                                  continue a run exactly
    diffrep sample RUN_DIR [--checkpoint STEP] [--at X,Y ...]       a PNG grid of samples
    diffrep score RUN_DIR [--checkpoints all|STEP,...]              generation accuracy and failure modes
    diffrep probe RUN_DIR [--checkpoints all|STEP,...]              representation metrics and phases
    diffrep patch RUN_DIR [--checkpoints ...] [--layers L1,L2]      which layer's output places the bump
    diffrep config [PRESET] [--set key=value ...]                   print the resolved config
    diffrep demo                                                    train, score, probe, report.html
    diffrep sweep [PRESET] --grid KEY=V1,V2 --seeds 0,1 --sweep-dir D [--backend local|ray]
    diffrep sweep EXPERIMENT [--scale laptop|full|tiny]                 a paper experiment and its finding
    diffrep aggregate DIR... [--out table.csv]                      one row per run and checkpoint
    diffrep report RUN_DIR | SWEEP_DIR | DIR... [--out FILE]        rewrite a report.html (several: overlaid)
    diffrep findings [DIR ...]                                      recompute kept verdicts from their tables

Bad input gets one line on stderr naming the setting and what is allowed, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from .config import (DEVICES, HOOK_POINTS, PRESETS, SAMPLERS, ConfigError, hook_points, load_config, make_config,
                     resolve_hook)
from .evaluation.evaluate import analyze_run, probe_checkpoints, score_checkpoints
from .evaluation.patching import PAIRS, patch_checkpoints
from .evaluation.probes import load_probes
from .experiments import EXPERIMENTS, SCALES, analyze_sweep, recompute_findings, run_experiment
from .report import (summary_lines, write_comparison_report, write_pictures, write_report, write_score_curve,
                     write_sweep_report)
from .report.samples import default_conditions, write_samples
from .run import new_run, train
from .rundir import RunDir, next_run_dir, read_json
from .sweep.grid import parse_grid, parse_seeds
from .sweep.runner import import_ray, load_sweep, run_sweep
from .sweep.tables import aggregate, write_table
from .training import (Terminated, TrainingDiverged, TrainingInterrupted, catch_unless_ignored, raise_terminated,
                       resolve_device)

DEMO_RUN_DIR = "runs/demo"


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed (each is reported); the others finished."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--at: expected X,Y in pixels, e.g. --at 16,8.5 (got {text!r})") from None
    return x, y


# -- commands -----------------------------------------------------------------


def cmd_train(args) -> None:
    if args.resume:
        if args.overrides or args.preset or args.run_dir or args.config:
            raise ConfigError("--resume: takes no PRESET, --config, --set or --run-dir; the run's config.json is its config")
        run = RunDir.open(args.resume)
        cfg = run.config()
        train(cfg, run, resume=True, quiet=args.quiet)
    else:
        if args.config and args.preset:
            raise ConfigError("--config: takes no PRESET; the file names its preset (key preset; default: default)")
        cfg = load_config(args.config, args.overrides) if args.config else make_config(args.preset or "default", args.overrides)
        run = new_run(args.run_dir or next_run_dir(Path("runs"), cfg.preset), cfg)
        train(cfg, run, quiet=args.quiet)
    print(f"run: {run.path} (step {run.checkpoint_steps()[-1]})")


def cmd_sample(args) -> None:
    run = RunDir.open(args.run_dir)
    cfg = run.config()
    step = run.resolve_step(args.checkpoint)
    if args.at:
        conditions = np.array([parse_point(p) for p in args.at])
        bad = conditions[~((conditions >= 0) & (conditions <= cfg.data.latent_size)).all(1)]  # NaN is bad too
        if len(bad):
            raise ConfigError(f"--at: x and y must be in [0, {cfg.data.latent_size}] (got {tuple(bad[0].tolist())})")
    else:
        conditions = default_conditions(cfg)
    out = Path(args.out) if args.out else None
    if out is not None and (out.exists() or not out.parent.is_dir()):
        raise ConfigError(f"--out: {out} exists or its folder does not; choose a new file in an existing folder")
    device = checkpoint_device(args, cfg)
    s = cfg.scoring  # what is not given is what scoring uses, so that the grid shows what the scores count
    eta = s.eta if args.eta is None else args.eta
    if not 0 <= eta <= 1:
        raise ConfigError(f"--eta: must be in [0, 1] (got {eta:g})")
    path = write_samples(run, step, conditions, args.sampler or s.sampler,
                         s.sampler_steps if args.steps is None else args.steps, eta,
                         s.seed if args.seed is None else args.seed, (args.weights or s.weights) == "ema", out, device)
    print(f"samples: {path}")


def checkpoint_device(args, cfg):
    """--device, else the run's training.device: where a command loads and runs checkpoints."""
    return resolve_device(args.device or cfg.training.device,
                          "--device" if args.device else "--device (default: the run's training.device)")


def cmd_score(args) -> None:
    run = RunDir.open(args.run_dir)
    overrides = {"scoring.sampler": args.sampler, "scoring.sampler_steps": args.steps, "scoring.eta": args.eta,
                 "scoring.tolerance": args.tolerance, "scoring.weights": args.weights, "scoring.seed": args.seed}
    cfg = run.config().with_overrides({k: v for k, v in overrides.items() if v is not None})
    steps = run.resolve_steps(args.checkpoints)
    device = checkpoint_device(args, cfg)
    with run.lock():  # training writes scores/ too
        print(f"{'step':>8} {'group':>10} {'accuracy':>8} {'several':>8} {'wrong':>8} {'none':>8} {'median err':>10}")
        for step, summary in score_checkpoints(run, cfg, steps, device):
            for group, v in summary["groups"].items():
                err = v["median_position_error"]
                print(f"{step:>8} {group:>10} {v['accuracy']:>8.3f} {v['frac_several']:>8.3f} {v['frac_wrong']:>8.3f} "
                      f"{v['frac_none']:>8.3f} {'-' if err is None else f'{err:.2f}':>10}", flush=True)
        print(f"scores: {run.scores_dir} (curve: {write_score_curve(run, cfg)})")


def cmd_probe(args) -> None:
    run = RunDir.open(args.run_dir)
    overrides = {"probe.layers": args.layers.split(",") if args.layers else None, "probe.timestep": args.timestep,
                 "probe.grid": args.grid, "probe.input": args.input, "probe.draws": args.draws,
                 "probe.noise_seed": args.noise_seed}
    cfg = run.config().with_overrides({k: v for k, v in overrides.items() if v is not None})
    steps = run.resolve_steps(args.checkpoints)
    device = checkpoint_device(args, cfg)
    with run.lock():  # training writes probes/ too, and write_probe adds to the files it finds
        for step in probe_checkpoints(run, cfg, steps, device):
            print(f"probed step {step}", file=sys.stderr, flush=True)
        analysis = analyze_run(run, cfg)
        write_pictures(run, cfg, analysis)
    for layer, summary in analysis["layers"].items():
        print(f"layer {layer}")
        print(f"{'step':>8} {'phase':>5} {'outcome':>9} {'accuracy':>8} {'share':>6} {'order':>6}")
        for r in summary["checkpoints"]:
            numbers = ["-" if r[k] is None else f"{r[k]:.3f}" for k in ("accuracy", "condition_share", "order_gain")]
            print(f"{r['step']:>8} {r['phase'] or '-':>5} {r['outcome'] or '-':>9} {numbers[0]:>8} {numbers[1]:>6} {numbers[2]:>6}")
    print("\n".join(summary_lines(run, cfg, analysis)))
    print(f"probes and phases: {run.probe_folder(cfg.probe)}")


def cmd_patch(args) -> None:
    run = RunDir.open(args.run_dir)
    cfg = run.config()
    layers = args.layers.split(",") if args.layers else list(hook_points(cfg.model)[:-1])  # the last: the prediction
    for layer in layers:
        try:
            resolve_hook(layer, cfg.model)
        except ConfigError as e:
            raise ConfigError(f"--layers: {str(e).removeprefix('layer: ')}") from None
    if args.pairs < 1:
        raise ConfigError(f"--pairs: must be >= 1 (got {args.pairs})")
    steps = run.resolve_steps(args.checkpoints)
    device = checkpoint_device(args, cfg)
    phase_of = {r["step"]: r.get("phases", {}).get("layer4") for r in load_probes(run, cfg)}
    print(f"displacement fraction toward the source condition, median over {args.pairs} pairs "
          f"(0: the bump stays, 1: it moves; null: unpatched at the target; ceiling: unpatched at the source; "
          f"-: no sample showed one bump)")
    print(f"{'step':>8} {'phase':>5} {'null':>6} {'ceiling':>7} " + " ".join(f"{layer:>7}" for layer in layers))
    with run.lock():  # one writer of the run's files
        for step, r in patch_checkpoints(run, cfg, steps, layers, args.pairs, device):
            numbers = [r["target"], r["source"], *(r["layers"][layer] for layer in layers)]
            cells = ["-" if n["median_fraction"] is None else f"{n['median_fraction']:.2f}" for n in numbers]
            print(f"{step:>8} {phase_of.get(step) or '-':>5} {cells[0]:>6} {cells[1]:>7} "
                  + " ".join(f"{c:>7}" for c in cells[2:]), flush=True)
    print(f"patching: {run.patching_path}")


def cmd_sweep(args) -> None:
    backend = dict(backend=args.backend, workers=args.workers, address=args.address, cpus_per_run=args.cpus_per_run,
                   gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)
    if args.backend == "ray":
        import_ray()  # an optional extra: its absence is one line, before anything is written
    if args.preset and args.preset not in PRESETS and args.preset not in EXPERIMENTS:
        raise ConfigError(f"PRESET: unknown {args.preset!r}; allowed: config presets {', '.join(PRESETS)} "
                          f"or experiments {', '.join(EXPERIMENTS)}")
    if args.scale and args.preset not in EXPERIMENTS:
        raise ConfigError(f"--scale: only with an experiment ({', '.join(EXPERIMENTS)}); a config preset's sweep "
                          f"is set by --set and --grid")
    if args.resume:
        if args.preset or args.overrides or args.grid or args.seeds:
            raise ConfigError("--resume: takes no PRESET, --set, --grid or --seeds; the sweep's sweep.json holds them")
        base, grid, seeds = load_sweep(args.resume)
        sweep_dir = Path(args.resume)
    elif args.preset in EXPERIMENTS:
        if args.grid:
            raise ConfigError(f"--grid: the experiment {args.preset} has its own grid; change it with --set, --seeds "
                              f"and --scale, or run a plain sweep of a config preset")
        outcome = run_experiment(args.preset, args.scale or "laptop", args.sweep_dir, args.overrides,
                                 None if args.seeds is None else parse_seeds(args.seeds), quiet=args.quiet, **backend)
        report, lines = write_sweep_report(outcome.sweep_dir, outcome.rows, findings=outcome.findings)
        print("\n".join(lines))
        print(f"findings: {outcome.sweep_dir / 'findings.json'}\nreport: {report}")
        report_failures(outcome.results)
        return
    else:
        if not args.sweep_dir:
            raise ConfigError("--sweep-dir: required for a new sweep (where its runs and report go)")
        base = make_config(args.preset or "default", args.overrides)
        grid, seeds, sweep_dir = parse_grid(args.grid), parse_seeds("0" if args.seeds is None else args.seeds), Path(args.sweep_dir)
    results = run_sweep(sweep_dir, base, grid, seeds, quiet=args.quiet, **backend)
    rows = aggregate([str(sweep_dir)])
    table = write_table(rows, sweep_dir / "table.csv")
    report, lines = write_sweep_report(sweep_dir, rows, findings=analyze_sweep(sweep_dir, rows))
    print("\n".join(lines))
    print(f"table: {table}\nreport: {report}")
    report_failures(results)


def report_failures(results: list[dict]) -> None:
    """Name every failed run of a sweep on stderr; SweepFailed (exit 1) if there is one."""
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print(f"diffrep: run {r['name']} failed: {r['error']}", file=sys.stderr)
    if failed:
        raise SweepFailed(f"{len(failed)} of {len(results)} runs failed")


def cmd_aggregate(args) -> None:
    rows = aggregate(args.dirs)
    print(f"table: {write_table(rows, Path(args.out))} ({len(rows)} rows: one per run and checkpoint)")


def cmd_report(args) -> None:
    """The report of one run (RUN_DIR/report.html), of a sweep (SWEEP_DIR/report.html, with its
    experiment's finding) or of several runs overlaid (--out, default report.html in the folder that
    holds them all), written again from the files on disk."""
    dirs = [Path(d) for d in args.dirs]
    one = dirs[0] if len(dirs) == 1 else None
    if one is not None and RunDir.holds_run(one):
        if args.out:
            raise ConfigError("--out: only for several runs; a run's report is RUN_DIR/report.html")
        run = RunDir.open(one)
        with run.lock():  # training writes the files the report reads, and analyze_run writes phases.json
            report, lines = write_report(run)
    elif one is not None and (one / "sweep.json").is_file():
        if args.out:
            raise ConfigError("--out: only for several runs; a sweep's report is SWEEP_DIR/report.html")
        findings = one / "findings.json"
        report, lines = write_sweep_report(one, aggregate([str(one)]),
                                           findings=read_json(findings) if findings.is_file() else None)
    else:
        rows = aggregate(args.dirs)
        runs = sorted({Path(r["run"]).resolve() for r in rows})
        out = Path(args.out) if args.out else Path(os.path.commonpath([r.parent for r in runs])) / "report.html"
        if out.suffix != ".html" or not out.parent.is_dir():
            raise ConfigError(f"--out: must be an .html file in an existing folder (got {out})")
        report, lines = write_comparison_report(rows, out)
    print("\n".join(lines))
    print(f"report: {report}")


def cmd_findings(args) -> None:
    """Recompute the verdict and figure of every kept experiment folder (experiment.json, sweep.json,
    table.csv) at or below the given folders, from its table alone."""
    folders = sorted({p.parent for d in args.dirs for p in Path(d).rglob("experiment.json")})
    if not folders:
        raise ConfigError(f"DIR: no kept experiment (experiment.json) at or below {', '.join(args.dirs)}")
    for folder in folders:
        findings = recompute_findings(folder)
        print(f"{folder}: {findings['experiment']} ({findings['scale']} scale): {findings['verdict']}")


def cmd_config(args) -> None:
    print(make_config(args.preset or "default", args.overrides).to_json())


def cmd_demo(args) -> None:
    """Train the default run (or finish it, if the directory holds one), then write its report."""
    run_dir = Path(args.run_dir)
    if RunDir.holds_run(run_dir):
        if args.overrides:
            raise ConfigError(f"--set: {run_dir} already holds a run; its config.json is its config")
        run = RunDir.open(run_dir)
        train(run.config(), run, resume=True, quiet=args.quiet)
    else:
        # UMAP at every checkpoint (about 15 s in all), so that the report's explorer shows it throughout
        cfg = make_config("default", ["probe.umap=true", *args.overrides])
        run = new_run(run_dir, cfg)
        train(cfg, run, quiet=args.quiet)
    with run.lock():
        report, summary = write_report(run)
    print("\n".join(summary))
    print(f"report: {report}")


# -- parser ---------------------------------------------------------------------


def version_line() -> str:
    """diffrep's version, and those of Python and torch that a number depends on."""
    return (f"diffrep {importlib.metadata.version('diffrep')} (Python {platform.python_version()}, "
            f"torch {torch.__version__})")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="diffrep", description="How diffusion models learn representations of (x, y).")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    presets = ", ".join(PRESETS)
    set_help = "override a setting, e.g. --set training.lr=3e-4 (repeatable; values are JSON)"
    device_help = "where the checkpoints are loaded and run: auto (cuda if there is one), cpu or cuda (default: the run's training.device)"
    sampler_names = list(dict.fromkeys(name for names in SAMPLERS.values() for name in names))  # every objective's

    p = sub.add_parser("train", help="train a conditional DDPM into a run directory",
                       description=f"Train a run. Presets: {presets}.")
    p.add_argument("preset", nargs="?", help=f"one of {presets} (default: default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--config", metavar="FILE", help="start from a file instead of a PRESET: a run directory or its "
                   "config.json, or a TOML (.toml) or JSON file of the settings that differ from the preset it names "
                   "(key preset; default: default); --set applies on top")
    p.add_argument("--run-dir", help="where to write the run (default: runs/NNNNN-PRESET)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest good checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid",
                       description="Sample from a checkpoint of a run and write a PNG grid.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", default="latest", help="a checkpoint step, or latest (default)")
    p.add_argument("--at", action="append", metavar="X,Y", help="a condition in pixels (repeatable; default: 16 spread over the lattice)")
    p.add_argument("--sampler", choices=sampler_names, help="ddim or ddpm (all T steps); euler or heun for "
                   "diffusion.objective flow; default: the run's scoring sampler")
    p.add_argument("--steps", type=int, help="DDIM, Euler or Heun steps (default: the run's scoring.sampler_steps)")
    p.add_argument("--eta", type=float, help="DDIM eta in [0, 1] (default: the run's scoring.eta)")
    p.add_argument("--seed", type=int, help="sampling seed (default: the run's scoring.seed)")
    p.add_argument("--weights", choices=["ema", "raw"], help="EMA or raw weights (default: the run's scoring.weights)")
    p.add_argument("--out", help="PNG path (default: RUN_DIR/samples/step_..._SAMPLER_seedS.png)")
    p.add_argument("--device", choices=DEVICES, help=device_help)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("score", help="score generation at checkpoints: accuracy and failure modes",
                       description="Sample the run's fixed evaluation set at checkpoints and score every image "
                                   "(no bump, several, one wrong, one accurate). Settings default to the run's scoring config.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoints", default="all", help="all (default), latest, or steps like 0,100,500")
    p.add_argument("--sampler", choices=sampler_names, help="ddim (fast, for curves) or ddpm (1000 steps, "
                   "final numbers); euler or heun (its --steps) for diffusion.objective flow")
    p.add_argument("--steps", type=int, help="DDIM steps")
    p.add_argument("--eta", type=float, help="DDIM eta: 1 (default) adds DDPM-like noise at each step, 0 is deterministic")
    p.add_argument("--tolerance", type=float, help="pixels on each axis for 'accurate' (default 0.5)")
    p.add_argument("--weights", choices=["ema", "raw"], help="EMA (default) or raw weights")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--device", choices=DEVICES, help=device_help)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("probe", help="probe representations at checkpoints and label phases A, B, C",
                       description="Capture activations of hook points for the run's fixed probe set at checkpoints, "
                                   "measure them, label each checkpoint's phase from the representation alone, and "
                                   "compare with generation (probes/phases.json, probes/*.png; another --input, "
                                   "--timestep, --grid, --draws or --noise-seed writes to "
                                   "probes-{input}-t{T}-g{G}-r{draws}-n{seed}/).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoints", default="all", help="all (default), latest, or steps like 0,100,500")
    p.add_argument("--layers", help="hook points, comma separated (default: the run's probe.layers, layer4)")
    p.add_argument("--input", help="independent, clean or shared (default: probe.input)")
    p.add_argument("--timestep", type=int, help="timestep of the noisy input (default: probe.timestep)")
    p.add_argument("--grid", type=int, help="probe grid per axis (default: probe.grid)")
    p.add_argument("--draws", type=int, help="noise draws per condition (default: probe.draws)")
    p.add_argument("--noise-seed", type=int, help="seed of the probe's noise (default: probe.noise_seed)")
    p.add_argument("--device", choices=DEVICES, help=device_help)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("patch", help="activation patching: which layer's output places the bump, checkpoint by checkpoint",
                       description="For fixed pairs of training conditions (c1, c2), sample at c2 from the same noise as "
                                   "at c1 while one layer's output is replaced, at every sampling step, by its output at "
                                   "c1; print where the bump lands as the fraction of the way from c2 to c1, per layer "
                                   "and checkpoint, beside the phase (diffrep/evaluation/patching.py). Writes "
                                   "RUN_DIR/patching.json.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoints", default="all", help="all (default), latest, or steps like 0,100,500")
    p.add_argument("--layers", help=f"hook points, comma separated (default: all but the last, the prediction: "
                                    f"{', '.join(HOOK_POINTS[:-1])}; layer4 = down3; a DiT: embed, block1, written1 ..; "
                                    f"layer4 = written at half depth)")
    p.add_argument("--pairs", type=int, default=PAIRS, help=f"condition pairs per checkpoint (default {PAIRS})")
    p.add_argument("--device", choices=DEVICES, help=device_help)
    p.set_defaults(func=cmd_patch)

    p = sub.add_parser("sweep", help="train a grid of settings x seeds, or an experiment, locally or on a Ray cluster",
                       description="Run one run directory per grid point and seed under SWEEP_DIR/runs, skipping "
                                   "finished runs and resuming interrupted ones, then write table.csv and report.html. "
                                   "An experiment (" + ", ".join(EXPERIMENTS) + ") brings its own config, grid and "
                                   "seeds at the chosen --scale and ends in findings.json, a figure and its finding "
                                   "in report.html (diffrep/experiments.py).")
    p.add_argument("preset", nargs="?", metavar="PRESET",
                   help=f"a config preset ({presets}; default: default) or an experiment ({', '.join(EXPERIMENTS)})")
    p.add_argument("--scale", choices=SCALES, help="experiments: laptop (default; a reduced scale a 2-core CPU affords), "
                                                   "full (the paper's scale, for a GPU or a cluster) or tiny (seconds, for tests)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept setting (repeatable); linked settings: 'data.dx+data.dy=[0.5,0.5],[0.1,1]'")
    p.add_argument("--seeds", help="training seeds, e.g. 0,1,2 or 0-4 (default 0; experiments: their own)")
    p.add_argument("--sweep-dir", help="where the sweep goes (experiments: default runs/EXPERIMENT-SCALE)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue this sweep with its own settings")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="local process pool (default) or ray")
    p.add_argument("--workers", type=int, help="local: runs at once (default: cores / --cpus-per-run)")
    p.add_argument("--address", help="ray: the cluster address (default: start a local Ray instance)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="CPU cores per run (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="ray: GPUs per run, fractions allowed (default 0)")
    p.add_argument("--max-retries", type=int, default=2, help="ray: retries of a run whose worker was lost (default 2)")
    p.add_argument("--quiet", action="store_true", help="no line per finished run")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("aggregate", help="one table (CSV) of every run and checkpoint under some directories",
                       description="Read run directories (found recursively) into one pandas-ready CSV: a row per run "
                                   "and checkpoint, with the run's config and that checkpoint's metrics.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", default="table.csv", help="CSV path (default table.csv)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report", help="write the report of a run, a sweep, or several runs overlaid",
                       description="One RUN_DIR: RUN_DIR/report.html with its checkpoint explorer. One SWEEP_DIR: "
                                   "SWEEP_DIR/report.html with its experiment's finding. Several directories (or one "
                                   "holding runs): their curves overlaid in --out. Rewritten when run again.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", help="several runs: the page to write (default report.html in the folder holding them all)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("findings", help="recompute every kept experiment's verdict and figure from its table",
                       description="For each folder holding an experiment's experiment.json, sweep.json and table.csv "
                                   "(a sweep directory, or the copies kept in docs/findings/), analyze the table again and "
                                   "rewrite findings.json and the figure there. Trains nothing.")
    p.add_argument("dirs", nargs="*", default=["docs/findings"], metavar="DIR", help="default docs/findings")
    p.set_defaults(func=cmd_findings)

    p = sub.add_parser("config", help="print the resolved config of a preset and overrides",
                       description=f"Print a resolved config as JSON. Presets: {presets}.")
    p.add_argument("preset", nargs="?", help=f"one of {presets}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("demo", help="train the default run, scoring and probing along the way, and write its report",
                       description="Train the default configuration (resuming it if the run directory exists), "
                                   "scoring and probing every checkpoint, then write report.html.")
    p.add_argument("--run-dir", default=DEMO_RUN_DIR, help=f"run directory (default {DEMO_RUN_DIR})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM ends a command like Ctrl-C does, unless the process was started ignoring it
    previous = catch_unless_ignored([signal.SIGTERM], raise_terminated) if in_main_thread else {}
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except ConfigError as e:
        print(f"diffrep: error: {e}", file=sys.stderr)
        return 2
    except (TrainingDiverged, SweepFailed) as e:
        print(f"diffrep: error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(f"diffrep: {e}", file=sys.stderr)
        return 128 + e.signal
    except (KeyboardInterrupt, Terminated) as e:  # outside the training loop (which checkpoints first, above)
        print(f"diffrep: {'interrupted' if isinstance(e, KeyboardInterrupt) else 'terminated'}; the files written "
              "so far are complete; run the command again to finish (a run: diffrep train --resume RUN_DIR)",
              file=sys.stderr)
        return 128 + (signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
    except OSError as e:
        print(f"diffrep: error: {e}", file=sys.stderr)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
