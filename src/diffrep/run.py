"""A run: a config trained into its run directory with every checkpoint evaluated.

    run = new_run("runs/mine", cfg)   # checked before anything is written
    train(cfg, run)                   # training.train, scoring and probing each checkpoint

`diffrep train`, `diffrep demo` and every sweep worker train through here; `training.train` alone
trains without evaluating.
"""

from __future__ import annotations

from .config import Config
from .evaluation.evaluate import Evaluator
from .rundir import RunDir
from .training import new_run, train as train_only

__all__ = ["new_run", "train"]


def train(cfg: Config, run: RunDir, resume: bool = False, quiet: bool = False) -> RunDir:
    """Train `cfg` into `run` (resume=True: continue it), evaluating its checkpoints as cfg says."""
    evaluate = Evaluator(cfg, run) if cfg.scoring.during_training or cfg.probe.during_training else None
    return train_only(cfg, run, resume=resume, quiet=quiet, evaluate=evaluate)
