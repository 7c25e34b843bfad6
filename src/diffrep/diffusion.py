"""Noise schedules, training objectives and samplers, kept apart from the model.

`NoiseSchedule` holds the DDPM forward process (T = 1000, linear beta from 1e-4 to 0.02 by default)
and `add_noise`; `FlowSchedule` the straight path of flow matching (rectified flow). Each schedule
knows its objective (`diffusion.objective`): what the model learns to predict (`target`) and, for
the DDPM samplers, how its output gives the noise (`to_epsilon`):

    epsilon  the noise, as in DDPM
    v        v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x_0 (Salimans and Ho's v-prediction)
    flow     the velocity noise - x_0 along x_s = (1 - s) x_0 + s noise, s = (t + 1) / T

`noise_loss` is the training loss on that prediction (plain, or min-SNR weighted for epsilon and v).
A sampler walks its own list of `timesteps` and maps (model output, t, x_t) to the next, less noisy
x with `step`, like diffusers' schedulers: DDPM and DDIM for epsilon and v, Euler for flow. `sample`
runs the loop; all of its randomness comes from one seeded generator, so a seed and a list of
conditions fix the images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import SAMPLERS, ConfigError, DiffusionConfig


class NoiseSchedule:
    def __init__(self, cfg: DiffusionConfig):
        self.timesteps = cfg.timesteps
        self.objective = cfg.objective  # epsilon or v
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.timesteps, dtype=torch.float64)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)

    def alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t, shaped to broadcast over `like` ([B, ...]); t = -1 means alpha_bar = 1."""
        t = torch.as_tensor(t)
        ab = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        ab = ab.to(like.device, like.dtype)
        return ab.reshape(ab.shape + (1,) * (like.dim() - ab.dim()))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0): sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        ab = self.alpha_bar(t.cpu(), x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at timesteps t [B] (float64)."""
        ab = self.alphas_cumprod[t.cpu()]
        return ab / (1 - ab)

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        ab = self.alpha_bar(t, x_t)
        return ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the model learns to predict at x_t = add_noise(x0, noise, t): the noise, or v."""
        if self.objective == "epsilon":
            return noise
        ab = self.alpha_bar(t.cpu(), x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def to_epsilon(self, out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The noise that a model output at (x_t, t) stands for: the output itself, or from v."""
        if self.objective == "epsilon":
            return out
        ab = self.alpha_bar(t, x_t)
        return ab.sqrt() * out + (1 - ab).sqrt() * x_t


class FlowSchedule:
    """Flow matching on the straight path from data to noise (rectified flow): x_s = (1 - s) x_0 +
    s noise at the level s = (t + 1) / T of the integer timestep t the model is conditioned on (the
    same t embedding as DDPM's, so that every backbone runs unchanged); the model predicts the
    velocity noise - x_0, which `EulerSampler` integrates from s = 1 back to 0."""

    objective = "flow"

    def __init__(self, cfg: DiffusionConfig):
        self.timesteps = cfg.timesteps

    def level(self, t, like: torch.Tensor) -> torch.Tensor:
        """s = (t + 1) / T shaped to broadcast over `like`; t = -1 is s = 0, the data."""
        s = (torch.as_tensor(t, dtype=torch.float64) + 1) / self.timesteps
        s = s.to(like.device, like.dtype)
        return s.reshape(s.shape + (1,) * (like.dim() - s.dim()))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.level(t.cpu(), x0)
        return (1 - s) * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - x0


def make_schedule(cfg: DiffusionConfig) -> NoiseSchedule | FlowSchedule:
    """The forward process of `diffusion.objective`: DDPM's for epsilon and v, the straight path for flow."""
    return FlowSchedule(cfg) if cfg.objective == "flow" else NoiseSchedule(cfg)


class DDPMSampler:
    """Ancestral sampling over all T steps, posterior variance beta_tilde."""

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule
        self.timesteps = list(range(schedule.timesteps - 1, -1, -1))

    def step(self, out: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        ab, ab_prev = s.alpha_bar(t, x_t), s.alpha_bar(t - 1, x_t)
        beta = 1 - ab / ab_prev
        x0 = s.predict_x0(x_t, s.to_epsilon(out, x_t, t), t)
        # Mean of q(x_{t-1} | x_t, x_0), from the clipped x_0 estimate.
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
        if t == 0:
            return mean
        var = beta * (1 - ab_prev) / (1 - ab)
        return mean + var.sqrt() * randn_like(x_t, generator)


class DDIMSampler:
    """DDIM with `num_steps` evenly spaced steps from T - 1 down to 0; eta = 0 is deterministic,
    eta = 1 adds the ancestral (DDPM-like) noise at every step."""

    def __init__(self, schedule: NoiseSchedule, num_steps: int, eta: float = 0.0):
        self.schedule = schedule
        self.eta = eta
        self.timesteps = evenly_spaced_timesteps(schedule.timesteps, num_steps)
        self._prev = dict(zip(self.timesteps, self.timesteps[1:] + [-1]))

    def step(self, out: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        ab, ab_prev = s.alpha_bar(t, x_t), s.alpha_bar(self._prev[t], x_t)
        x0 = s.predict_x0(x_t, s.to_epsilon(out, x_t, t), t)
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clipped x_0
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        if self.eta > 0 and self._prev[t] >= 0:
            x_prev = x_prev + sigma * randn_like(x_t, generator)
        return x_prev


def evenly_spaced_timesteps(timesteps: int, num_steps: int) -> list[int]:
    """`num_steps` integer timesteps evenly spaced from T - 1 down to 0 (fewer where they coincide)."""
    return [int(t) for t in np.unique(np.linspace(timesteps - 1, 0, num_steps).round().astype(int))[::-1]]


class EulerSampler:
    """Flow matching's sampler: Euler steps of dx/ds = velocity from s = 1 (noise) to s = 0 (data)
    over `num_steps` levels evenly spaced like DDIM's timesteps; deterministic."""

    def __init__(self, schedule: FlowSchedule, num_steps: int):
        self.schedule = schedule
        self.timesteps = evenly_spaced_timesteps(schedule.timesteps, num_steps)
        self._next = dict(zip(self.timesteps, self.timesteps[1:] + [-1]))

    def step(self, velocity: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        return x_t + (s.level(self._next[t], x_t) - s.level(t, x_t)) * velocity


class HeunSampler:
    """Flow matching's second-order sampler (Heun's method, as in Karras et al.'s EDM): over the levels
    of `num_steps` Euler steps, each step's Euler move is corrected with the velocity at its end,
    x_next = x + ds (v(x, s) + v(x_euler, s_next)) / 2, except the last step to the data (s = 0), where
    the model is not defined and the step stays Euler: 2 num_steps - 1 model calls. `sample` calls the
    model once per entry of `timesteps`, so the end of a step appears twice there (its correction, then
    the next step's start), and `step` keeps the pending Euler move between the two calls, as diffusers'
    HeunDiscreteScheduler does; deterministic."""

    def __init__(self, schedule: FlowSchedule, num_steps: int):
        self.schedule = schedule
        levels = evenly_spaced_timesteps(schedule.timesteps, num_steps)
        self._next = dict(zip(levels, levels[1:] + [-1]))
        self.timesteps = [t for start in levels for t in ([start, self._next[start]] if self._next[start] >= 0 else [start])]
        self._pending: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (start, x at the start, its velocity)

    def step(self, velocity: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        if t == self.timesteps[0]:
            self._pending = None  # a new sampling run
        if self._pending is None:  # the start of a step: its Euler move
            end = self._next[t]
            x_euler = x_t + (s.level(end, x_t) - s.level(t, x_t)) * velocity
            if end >= 0:
                self._pending = (t, x_t, velocity)
            return x_euler
        start, x_start, v_start = self._pending  # the end of a step: the correction
        self._pending = None
        return x_start + (s.level(t, x_t) - s.level(start, x_t)) * (v_start + velocity) / 2


# ----------------------------------------------------------------------------
# The training loss, beside the schedule it weights by.


def min_snr_weights(schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023), float64. For noise prediction min(SNR_t, gamma) / SNR_t:
    1 wherever SNR_t <= gamma (the noisy timesteps that place the bump), < 1 on the nearly clean ones;
    for v-prediction, whose loss is the noise loss times SNR_t + 1, min(SNR_t, gamma) / (SNR_t + 1)."""
    snr = schedule.snr(timesteps)
    return snr.clamp(max=gamma) / (snr + 1 if schedule.objective == "v" else snr)


def noise_loss(pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor, schedule: NoiseSchedule | FlowSchedule,
               weighting: str = "uniform", gamma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per_sample): each sample's mean squared error of the prediction (the schedule's `target`:
    the noise, v or the velocity), and the loss to minimize, their mean, plain (weighting "uniform",
    DDPM's simple loss) or weighted by `min_snr_weights` ("min_snr", epsilon and v)."""
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=tuple(range(1, pred.dim())))
    if weighting == "min_snr":
        return (per_sample * min_snr_weights(schedule, timesteps, gamma).to(per_sample)).mean(), per_sample
    if weighting == "uniform":
        return per_sample.mean(), per_sample
    raise ConfigError(f"training.loss_weighting: must be one of uniform, min_snr (got {weighting!r})")


def make_sampler(name: str, schedule: NoiseSchedule | FlowSchedule, steps: int | None = None, eta: float = 0.0):
    """'ddpm' (all T steps) or 'ddim' with `steps` steps and noise level `eta` (objectives epsilon and
    v); 'euler' or 'heun' with `steps` steps (flow)."""
    allowed = SAMPLERS[schedule.objective]
    if name not in allowed:
        raise ConfigError(f"--sampler: diffusion.objective {schedule.objective} samples with {', '.join(allowed)} "
                          f"(got {name!r})")
    if name == "ddpm":
        return DDPMSampler(schedule)
    if steps is None or not 1 <= steps <= schedule.timesteps:
        raise ConfigError(f"--steps: {name} needs 1 <= steps <= {schedule.timesteps} (got {steps})")
    if name == "ddim":
        return DDIMSampler(schedule, steps, eta)
    return EulerSampler(schedule, steps) if name == "euler" else HeunSampler(schedule, steps)


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Drawn on the generator's device (the CPU) and moved, so CPU and GPU runs see the same noise.
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


@torch.no_grad()  # not inference_mode: the images stay usable as ordinary tensors (e.g. fed back to the model)
def sample(model, sampler, labels: torch.Tensor, image_size: int, seed: int = 0) -> torch.Tensor:
    """Images [B, 1, N, N] for conditions `labels` [B, 2]; the same seed gives the same images."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels, dtype=torch.float32).to(device)
    x = torch.randn((len(labels), 1, image_size, image_size), generator=generator).to(device)
    for t in sampler.timesteps:
        t_batch = torch.full((len(labels),), t, device=device, dtype=torch.long)
        x = sampler.step(model(x, t_batch, labels), t, x, generator)
    return x.clamp(-1, 1)
