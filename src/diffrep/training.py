"""Training: the loop, EMA, the checkpoint schedule, exact resume.

One run trains the UNet on its dataset with AdamW and an EMA of the weights. All randomness
of a step (which conditions, which timesteps, the noise, dropped labels) comes from one
generator whose state is checkpointed, so a run resumed from any checkpoint ends with weights
identical, bit for bit on the CPU, to an uninterrupted run of the same config.

Checkpoints are dense early and sparse late (log-spaced, plus every K steps, plus step 0 and
the last step), because the representation changes fastest early in training.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import provenance
from .config import Config, ConfigError, TrainingConfig
from .data import BumpDataset
from .diffusion import make_schedule, noise_loss
from .model import UNet, build_model
from .rundir import STATE_PREFIXES, CheckpointError, RunDir


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM (a scheduler preempting the run): a checkpoint was written at the step reached.
    `signal` is the signal that stopped it; a command exits with 128 + signal."""

    def __init__(self, message: str, signal_number: int = signal.SIGINT):
        super().__init__(message)
        self.signal = signal_number


class Terminated(BaseException):
    """SIGTERM outside the training loop (the command line installs `raise_terminated` for it): like
    KeyboardInterrupt for Ctrl-C, it unwinds what was in flight; every file is written atomically."""


def raise_terminated(signum, frame):
    raise Terminated


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def catch_unless_ignored(signals, handler) -> dict:
    """Install `handler` for each of `signals` that this process does not ignore, and return
    {signal: previous handler} of those. A stop signal the process was started ignoring stays
    ignored: whoever started it asked for that (a shell script's `command &` ignores Ctrl-C)."""
    return {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}


def checkpoint_schedule(steps: int, log_points: int, every: int) -> list[int]:
    """Step 0, `log_points` log-spaced steps in [1, steps], every `every` steps, and the last."""
    log_spaced = np.unique(np.round(np.geomspace(1, steps, log_points)).astype(int)) if log_points else []
    return sorted({0, steps, *map(int, log_spaced), *range(every, steps + 1, every)})


def is_finished(cfg: Config, run: RunDir) -> bool:
    """Derived from the run directory alone: the last step is checkpointed, or (adaptive length)
    the run has checkpointed `stop_after_phase_c` times since its first phase C."""
    return finishes(cfg, run.checkpoint_steps(), run.metrics())


def finishes(cfg: Config, steps: list[int], metrics: list[dict]) -> bool:
    """`is_finished` of a run whose checkpoints are `steps` and whose metrics.jsonl lines are `metrics`
    (an evaluation asks it of the checkpoint it is evaluating, before that checkpoint is saved)."""
    if steps and steps[-1] == cfg.training.steps:
        return True
    n = cfg.training.stop_after_phase_c
    if n is None:
        return False
    key = f"phase.{cfg.probe.layers[0]}"
    labels = [r[key] for r in metrics if key in r and r["step"] in steps]
    return "C" in labels and len(labels) - 1 - labels.index("C") >= n


def new_run(path, cfg: Config) -> RunDir:
    """Create a run directory, once everything that can be rejected up front has been checked."""
    BumpDataset(cfg.data)  # masks that leave no data, lattices too large
    check_memory(cfg, resolve_device(cfg.training.device))  # batches, images or widths too large
    return RunDir.create(path, cfg)


def resolve_device(name: str, setting: str = "training.device") -> torch.device:
    """The torch device of a `config.DEVICES` name (auto: cuda when there is one); ConfigError naming
    `setting` when cuda is asked for and there is none."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}: cuda was asked for but no CUDA device is available; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def training_step_memory(cfg: Config) -> int:
    """Bytes a training step needs: the weights and four copies of them (gradients, EMA, AdamW's two
    moments) plus every tensor autograd keeps for the backward pass of a batch. Measured on PyTorch's
    meta device, which tracks shapes only: nothing is allocated, even for a config needing terabytes."""
    saved = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    b, n = cfg.training.batch_size, cfg.data.image_size
    with torch.device("meta"):
        model = build_model(cfg)
        with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
            model(torch.zeros(b, 1, n, n), torch.zeros(b, dtype=torch.long), torch.zeros(b, 2))
    return 5 * sum(p.numel() * p.element_size() for p in model.parameters()) + saved


def check_memory(cfg: Config, device: torch.device) -> None:
    """Refuse, before anything is written, a run whose training step cannot fit in the memory of
    the device (a GPU's, or this machine's RAM): it would otherwise be killed by the kernel."""
    need = training_step_memory(cfg)
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(
            f"training.batch_size, data.image_size, model.widths, model.emb_dim: a training step needs "
            f"{need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB of {device.type} memory here; make them smaller"
        )


def adamw(parameters, t: TrainingConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with the run's rate, betas (0.9, adam_beta2) and weight decay; `fused` picks torch's
    implementation of the same update (None: torch's default)."""
    return torch.optim.AdamW(parameters, lr=t.lr, betas=(0.9, t.adam_beta2), weight_decay=t.weight_decay, fused=fused)


class EMA:
    """Exponential moving average of the parameters (not buffers), with the usual warm-up."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        names, params = zip(*model.named_parameters())
        # One call over all tensors (124 in the default UNet): ~2x cheaper than a Python loop.
        torch._foreach_lerp_([self.params[k] for k in names], list(params), 1 - decay)


def learning_rate(t: TrainingConfig, step: int) -> float:
    """The learning rate at `step`: linear warm-up, then constant or cosine decay to 0 at `t.steps`.
    A function of the step alone, so that a resumed run follows the same schedule."""
    if t.warmup_steps and step < t.warmup_steps:
        return t.lr * step / t.warmup_steps
    if t.lr_decay == "cosine":
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return t.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return t.lr


@dataclass
class Trainer:
    """The state of a run in memory; `state_tensors` / `load_state` move it to and from checkpoints.

    `evaluate(model, step, status)`, when given, is called at every scheduled checkpoint before it is
    saved, with a model holding the weights to evaluate (diffrep.evaluation.Evaluator scores and probes
    it) and `status`: status(text) says what the evaluation is doing (`train` shows it in the progress
    bar, which stands still meanwhile); status(None) when it is done.
    """

    cfg: Config
    run: RunDir
    device: torch.device
    evaluate: Callable[[UNet, int, Callable[[str | None], None]], None] | None = None
    status: Callable[[str | None], None] = lambda text: None

    def __post_init__(self):
        t = self.cfg.training
        torch.manual_seed(t.seed)  # the weights' initialization
        self.model = build_model(self.cfg).to(self.device)
        self.ema = EMA(self.model, t.ema_decay)
        # fused: one kernel for all parameters, ~3x cheaper than the default per-tensor loop on
        # the CPU (bench/bench_optimizer.py: a few ms of a ~85 ms step); deterministic like it.
        self.optimizer = adamw(self.model.parameters(), t, fused=True)
        self.generator = torch.Generator().manual_seed(t.seed)  # every random draw of training
        self.schedule = make_schedule(self.cfg.diffusion)
        self.dataset = BumpDataset(self.cfg.data)
        self.train_conditions = torch.as_tensor(self.dataset.train_conditions, dtype=torch.float32)
        self.step = 0
        self.eval_model = None  # built on first use: the weights evaluation reads
        # Sums over the current logging interval: loss, count, then per-bucket sums and counts.
        self.accum = torch.zeros(2 + 2 * t.loss_buckets, dtype=torch.float64)

    # -- checkpoint state -----------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.params.items()})
        opt = self.optimizer.state_dict()
        for i, state in opt["state"].items():
            for k, v in state.items():
                tensors[f"optim.{i}.{k}"] = torch.as_tensor(v)
        tensors["rng.train"] = self.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["accum.sums"] = self.accum
        return tensors

    def save(self) -> None:
        meta = {"param_groups": self.optimizer.state_dict()["param_groups"]}
        self.run.save_checkpoint(self.step, self.state_tensors(), meta)
        self.run.drop_resume_state(self.cfg.training.keep_resume_state)

    def checkpoint(self) -> None:
        """A scheduled checkpoint: evaluated first (when the trainer has an `evaluate`), so that a kill
        before the save is undone on resume by dropping the metrics lines of a step that has no checkpoint."""
        if self.evaluate is not None:
            self.evaluate(self.evaluated_model(), self.step, self.status)
            self.status(None)
        self.save()

    def evaluated_model(self) -> UNet:
        """A separate model holding the weights that evaluation reads (scoring.weights: EMA by default)."""
        if self.eval_model is None:
            with torch.random.fork_rng():  # its throwaway initialization leaves the RNG state alone
                self.eval_model = build_model(self.cfg).to(self.device)
        weights = self.ema.params if self.cfg.scoring.weights == "ema" else dict(self.model.named_parameters())
        with torch.no_grad():
            for name, p in self.eval_model.named_parameters():
                p.copy_(weights[name])
        return self.eval_model.eval()

    def load_state(self, step: int) -> bool:
        """Restore everything from a checkpoint; False if it holds weights only (no resume state)."""
        tensors, meta = self.run.load_checkpoint(step)
        if not any(k.startswith(STATE_PREFIXES) for k in tensors):
            return False
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for k in self.ema.params:
            self.ema.params[k].copy_(tensors[f"ema.{k}"])
        params = list(self.model.parameters())
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                # Moments take their parameter's layout (channels-last convolutions): the fused
                # AdamW kernel walks parameter, gradient and moments in memory order.
                state.setdefault(int(i), {})[name] = v if name == "step" else torch.empty_like(params[int(i)]).copy_(v)
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.generator.set_state(tensors["rng.train"])
        torch.set_rng_state(tensors["rng.torch"])
        self.accum = tensors["accum.sums"].clone()
        self.step = step
        return True

    def resume_latest(self, warn) -> None:
        """Load the newest checkpoint that has resume state and passes its checksum.

        A damaged checkpoint is renamed *.corrupt and the one before it is used; with none
        usable (killed before step 0 was saved) the run starts over, which gives the same run.
        """
        self.run.remove_partial_writes()
        for step in reversed(self.run.checkpoint_steps()):
            try:
                if self.load_state(step):
                    return
            except CheckpointError as e:
                warn(f"diffrep: skipping checkpoint at step {step}: {e}")
                bad = self.run.checkpoint_path(step)
                bad.rename(bad.with_name(bad.name + ".corrupt"))
        warn(f"diffrep: {self.run.path} has no usable checkpoint with resume state; starting from step 0")
        self.run.truncate_metrics(-1)  # what a run killed before its first checkpoint logged is logged again
        self.checkpoint()

    # -- one step -------------------------------------------------------------

    def train_step(self) -> float:
        t = self.cfg.training
        g = self.generator
        batch = t.batch_size
        idx = torch.randint(len(self.train_conditions), (batch,), generator=g)
        labels = self.train_conditions[idx]
        timesteps = torch.randint(self.schedule.timesteps, (batch,), generator=g)
        noise = torch.randn((batch, 1, self.cfg.data.image_size, self.cfg.data.image_size), generator=g)
        drop = torch.rand(batch, generator=g) < self.cfg.model.label_dropout

        x0 = self.dataset.render(labels)
        x0, noise, labels, drop, tdev = (v.to(self.device) for v in (x0, noise, labels, drop, timesteps))
        x_t = self.schedule.add_noise(x0, noise, timesteps)
        pred = self.model(x_t, tdev, labels, drop)
        target = self.schedule.target(x0, noise, timesteps)
        loss, per_sample = noise_loss(pred, target, timesteps, self.schedule, t.loss_weighting, t.min_snr_gamma)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at step {self.step + 1}")

        self.step += 1
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg.training, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)

        k = t.loss_buckets
        bucket = timesteps * k // self.schedule.timesteps
        per_sample = per_sample.detach().double().cpu()
        self.accum[0] += per_sample.sum()
        self.accum[1] += batch
        self.accum[2 : 2 + k] += torch.zeros(k, dtype=torch.float64).index_add_(0, bucket, per_sample)
        self.accum[2 + k :] += torch.bincount(bucket, minlength=k).double()
        return loss.item()

    def metrics_record(self, step_time: float) -> dict:
        """The line for metrics.jsonl over the interval since the last one; resets the sums."""
        k, T = self.cfg.training.loss_buckets, self.schedule.timesteps
        a = self.accum
        record = {"step": self.step, "loss": a[0].item() / a[1].item(), "lr": learning_rate(self.cfg.training, self.step)}
        for b in range(k):
            lo, hi = b * T // k, (b + 1) * T // k - 1
            record[f"loss_t{lo}_{hi}"] = a[2 + b].item() / a[2 + k + b].item() if a[2 + k + b] else None
        record["step_time"] = step_time
        record["images_per_s"] = self.cfg.training.batch_size / step_time if step_time else None
        self.accum.zero_()
        return record


def train(cfg: Config, run: RunDir, resume: bool = False, quiet: bool = False, evaluate=None) -> RunDir:
    """Train `cfg` into `run` (a fresh run, or continue it with resume=True), calling `evaluate` at
    every checkpoint (`Trainer`); diffrep.run.train passes the run's evaluation. A session that trains
    (a fresh run, or a resume with steps left) is recorded in the run's provenance.json (provenance.py)."""
    t = cfg.training
    def warn(msg: str) -> None:
        print(msg, file=sys.stderr)

    log = (lambda _msg: None) if quiet else warn  # quiet silences progress, never warnings
    device = resolve_device(t.device)
    check_memory(cfg, device)  # e.g. a config.json edited by hand since the run was created
    with run.lock():
        history = run.provenance()  # read before anything is written: a damaged file stops the command here
        started = provenance.now()
        trainer = Trainer(cfg, run, device, evaluate)
        schedule = set(checkpoint_schedule(t.steps, t.checkpoint_log_points, t.checkpoint_every))
        # Ctrl-C and SIGTERM (a scheduler's notice before it kills the job) only raise a flag: the step
        # in flight finishes, so the checkpoint is consistent.
        received: list[int] = []
        main_thread = threading.current_thread() is threading.main_thread()
        previous = catch_unless_ignored(STOP_SIGNALS, lambda signum, _frame: received.append(signum)) if main_thread else {}
        bar, record, outcome = None, None, "failed"  # the outcome unless training ends in one of the ways below
        try:
            if resume:
                trainer.resume_latest(warn)
                run.truncate_metrics(trainer.step)
                # A kill between a checkpoint's save and the stripping of older ones' resume state (the run
                # may even be finished) left that stripping undone.
                run.drop_resume_state(t.keep_resume_state)
            # checked again after each checkpoint, the only time it can change
            finished = resume and is_finished(cfg, run)
            if resume and not finished:
                log(f"diffrep: resuming {run.path} from step {trainer.step}")
            if not finished:
                record = provenance.start_session(run, history, started, device, trainer.step if resume else None)
            bar = tqdm(total=t.steps, initial=trainer.step, disable=quiet, desc="train", unit="step", dynamic_ncols=True)
            if not quiet:  # while a checkpoint is evaluated, the bar says what is being done
                trainer.status = lambda text: bar.set_description_str(text or "train")
            if not resume:
                trainer.checkpoint()  # step 0: the initialization
                finished = is_finished(cfg, run)
            interval_start, interval_steps = time.perf_counter(), 0
            while not finished:
                loss = trainer.train_step()
                interval_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if trainer.step % t.log_every == 0 or trainer.step == t.steps:
                    elapsed = time.perf_counter() - interval_start
                    run.append_metrics(trainer.metrics_record(elapsed / interval_steps))
                    interval_start, interval_steps = time.perf_counter(), 0
                if trainer.step in schedule:
                    trainer.checkpoint()
                    finished = is_finished(cfg, run)
                elif received:
                    trainer.save()  # not scored: an off-schedule step must not add a score line
                if received and not finished:
                    outcome = "interrupted"
                    raise TrainingInterrupted(
                        f"{signal.Signals(received[0]).name} at step {trainer.step}, checkpoint written; "
                        f"resume with: diffrep train --resume {run.path}", received[0])
            outcome = "finished"
        except TrainingDiverged as e:
            outcome = "diverged"
            last = run.checkpoint_steps()[-1]
            raise TrainingDiverged(
                f"{e}; training stopped, the last good checkpoint is step {last}; "
                f"try a lower training.lr (now {t.lr})"
            ) from None
        finally:
            if bar is not None:
                bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if record is not None:
                try:
                    provenance.end_session(run, record, trainer.step, outcome)
                except OSError:  # a full disk: when an error stopped training, that error is the one to report
                    if outcome == "finished":
                        raise
    return run


def load_model(run: RunDir, step: int, ema: bool = True, device: str | torch.device = "cpu") -> UNet:
    """The model of a checkpoint, EMA weights by default, on `device`, in eval mode."""
    cfg = run.config()
    tensors, _ = run.load_checkpoint(step)
    prefix = "ema." if ema else "model."
    model = build_model(cfg)
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return model.to(device).eval()
