"""Evaluating a run: each checkpoint while it trains (`Evaluator`), the whole run afterwards (`analyze_run`).

At a checkpoint the `Evaluator` scores generation on the run's evaluation set (scoring.py), probes
the representation (probes.py) and labels its phase (phases.py), writing their files and one
metrics.jsonl line each; at the checkpoint that finishes the run it also scores with DDPM over all
T steps (Euler over T steps for flow; `scoring.final_ddpm`: the final numbers, `final.*` in metrics.jsonl, since the fast sampler
of the curves overstates late accuracy). `analyze_run` then reads the probes and scores of every
checkpoint into the run's phases.json: phase beside outcome, the onsets, the lag and the agreement.
"""

from __future__ import annotations

import json
import math

import torch

from ..config import Config
from ..diffusion import make_schedule
from ..rundir import RunDir, atomic_write
from ..training import finishes, load_model
from . import probes, scoring
from .phases import (OUTCOME_NAMES, agreement, dominant_outcome, explain, label_layers, onsets, order_gain,
                     rank_correlation, rule_id)
from .probes import load_probes, probe_checkpoint, write_probe
from .scoring import evaluation_set, load_scores, sampler_tag, score_model, write_scores


class Evaluator:
    """`evaluate(model, step, status)` of `training.train`: scores, probes and labels a checkpoint of
    `run`, saying through status(text) what it is doing ("step 300: probing layer4")."""

    def __init__(self, cfg: Config, run: RunDir):
        self.cfg, self.run = cfg, run
        self.schedule = make_schedule(cfg.diffusion)
        self.evalset = evaluation_set(cfg) if cfg.scoring.during_training else None

    def __call__(self, model, step: int, status=lambda text: None) -> None:
        if self.cfg.scoring.during_training:
            self.score(model, step, self.cfg, "score", status)
        if self.cfg.probe.during_training:
            status(f"step {step}: probing {', '.join(self.cfg.probe.layers)}")
            self.probe(model, step)
        if (self.cfg.scoring.during_training and self.cfg.scoring.final_ddpm
                and finishes(self.cfg, self.run.checkpoint_steps() + [step], self.run.metrics())):
            self.score(model, step, scoring.final_scoring(self.cfg), "final", status)

    def score(self, model, step: int, cfg: Config, prefix: str, status) -> None:
        status(f"step {step}: scoring {len(self.evalset.conditions)} samples ({sampler_tag(cfg)})")
        summary, per_sample, images = score_model(model, cfg, self.evalset)
        write_scores(self.run, step, summary, per_sample, images)
        self.run.append_metrics(scoring.flat_record(step, summary, prefix))

    def probe(self, model, step: int) -> None:
        cfg, every = self.cfg, self.cfg.probe.keep_every
        keep = every > 0 and (step % every == 0 or step == cfg.training.steps)
        result = probe_checkpoint(model, cfg, self.schedule)
        labels = layer_phases(result, cfg)
        write_probe(self.run, step, result, cfg, labels, rule_id(cfg.phase), keep_activations=keep)
        self.run.append_metrics(probes.flat_record(step, result, labels))


def score_checkpoints(run: RunDir, cfg: Config, steps: list[int], device: torch.device):
    """Score the checkpoints `steps` of a run with cfg.scoring, each loaded onto `device` (the files of
    training's scoring, no metrics line), yielding (step, summary) as each is done. The caller holds
    the run's lock."""
    evalset = evaluation_set(cfg)
    for step in steps:
        model = load_model(run, step, ema=cfg.scoring.weights == "ema", device=device)
        summary, per_sample, images = score_model(model, cfg, evalset)
        write_scores(run, step, summary, per_sample, images)
        yield step, summary


def probe_checkpoints(run: RunDir, cfg: Config, steps: list[int], device: torch.device):
    """Probe and label the checkpoints `steps` with cfg.probe, each loaded onto `device` (into
    `RunDir.probe_folder`, activations kept, no metrics line), yielding each step as it is done. The
    caller holds the run's lock."""
    schedule = make_schedule(cfg.diffusion)
    for step in steps:
        result = probe_checkpoint(load_model(run, step, ema=cfg.scoring.weights == "ema", device=device), cfg, schedule)
        write_probe(run, step, result, cfg, layer_phases(result, cfg), rule_id(cfg.phase))
        yield step


def layer_phases(result: dict, cfg: Config) -> dict[str, str]:
    """The phase of each layer of a `probe_checkpoint` result ({} off the rule's probe input)."""
    return label_layers({name: layer["metrics"] for name, layer in result["layers"].items()}, cfg.phase, cfg.probe.input)


QUALITY_METRIC = "knn_overlap"  # representation quality in the rank correlation: order of the (x, y) map


def analyze_run(run, cfg) -> dict:
    """Phase of every probed checkpoint (per layer) beside its dominant generation outcome (the
    scores of the run's scoring sampler), the onsets, the lag from phase C to accurate generation,
    their agreement and the rank correlation of representation quality with accuracy. Written to
    phases.json in the probe set's folder (RUN_DIR/probes/ for the run's own) and returned."""
    tag = sampler_tag(cfg)
    probes = load_probes(run, cfg)
    scores = {r["step"]: r["groups"]["train"] for r in load_scores(run, tag)}
    result = {"sampler": tag, "rule": rule_id(cfg.phase), "quality_metric": QUALITY_METRIC, "layers": {}}
    for layer in cfg.probe.layers:
        rows = []
        for record in probes:
            metrics = record["layers"].get(layer)
            if metrics is None:
                continue
            phase, reasons = explain(metrics, cfg.phase, cfg.probe.input)
            summary = scores.get(record["step"])
            rows.append({"step": record["step"], "phase": phase, "reasons": reasons,
                         "outcome": dominant_outcome(summary) if summary else None,
                         "accuracy": summary["accuracy"] if summary else None,
                         "fractions": {o: summary[f"frac_{o}"] for o in OUTCOME_NAMES} if summary else None,
                         "condition_share": metrics.get("condition_share"), "order_gain": order_gain(metrics),
                         QUALITY_METRIC: metrics.get(QUALITY_METRIC)})
        corr = rank_correlation([r[QUALITY_METRIC] for r in rows], [r["accuracy"] for r in rows])
        agree = agreement([r["phase"] for r in rows], [r["outcome"] for r in rows])
        found = onsets([r["step"] for r in rows], [r["phase"] for r in rows], [r["outcome"] for r in rows],
                       [r["accuracy"] for r in rows])
        lag = None if found.phase["C"] is None or found.accurate is None else found.accurate - found.phase["C"]
        result["layers"][layer] = {
            "checkpoints": rows, "first_step": found.phase, "first_outcome": found.outcome,
            "first_accurate": found.accurate, "lag_c_to_accurate": lag, "in_order": found.in_order,
            "reversals": found.reversals, "agreement": None if math.isnan(agree) else agree,
            "rank_correlation": {"rho": None if math.isnan(corr.rho) else corr.rho,
                                 "p_value": None if math.isnan(corr.p_value) else corr.p_value, "n": corr.n},
        }
    atomic_write(run.phases_path(cfg.probe), json.dumps(result, indent=1).encode())
    return result
