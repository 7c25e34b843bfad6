"""Noise schedule and samplers, kept apart from the model.

`NoiseSchedule` holds the forward process (T = 1000, linear beta from 1e-4 to 0.02 by default)
and `add_noise`; the model predicts the noise epsilon, and `noise_loss` is the training loss on that
prediction (plain or min-SNR weighted). A sampler walks its own list of
`timesteps` and maps (model output, t, x_t) to the next, less noisy x with `step`, like
diffusers' schedulers. `sample` runs the loop; all of its randomness comes from one seeded
generator, so a seed and a list of conditions fix the images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, DiffusionConfig


class NoiseSchedule:
    def __init__(self, cfg: DiffusionConfig):
        self.timesteps = cfg.timesteps
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


class DDPMSampler:
    """Ancestral sampling over all T steps, posterior variance beta_tilde."""

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule
        self.timesteps = list(range(schedule.timesteps - 1, -1, -1))

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        ab, ab_prev = s.alpha_bar(t, x_t), s.alpha_bar(t - 1, x_t)
        beta = 1 - ab / ab_prev
        x0 = s.predict_x0(x_t, eps, t)
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
        steps = np.unique(np.linspace(schedule.timesteps - 1, 0, num_steps).round().astype(int))[::-1]
        self.timesteps = [int(t) for t in steps]
        self._prev = dict(zip(self.timesteps, self.timesteps[1:] + [-1]))

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.schedule
        ab, ab_prev = s.alpha_bar(t, x_t), s.alpha_bar(self._prev[t], x_t)
        x0 = s.predict_x0(x_t, eps, t)
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clipped x_0
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        if self.eta > 0 and self._prev[t] >= 0:
            x_prev = x_prev + sigma * randn_like(x_t, generator)
        return x_prev


# ----------------------------------------------------------------------------
# The training loss, beside the schedule it weights by.


def min_snr_weights(schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023) of noise-prediction losses, float64: min(SNR_t, gamma) /
    SNR_t, 1 wherever SNR_t <= gamma (the noisy timesteps that place the bump), < 1 on the nearly clean ones."""
    snr = schedule.snr(timesteps)
    return snr.clamp(max=gamma) / snr


def noise_loss(eps: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, schedule: NoiseSchedule,
               weighting: str = "uniform", gamma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per_sample): each sample's mean squared error of the predicted noise, and the loss to
    minimize, their mean, plain (weighting "uniform", DDPM's simple loss) or weighted by
    `min_snr_weights` ("min_snr")."""
    per_sample = F.mse_loss(eps, noise, reduction="none").mean(dim=tuple(range(1, eps.dim())))
    if weighting == "min_snr":
        return (per_sample * min_snr_weights(schedule, timesteps, gamma).to(per_sample)).mean(), per_sample
    if weighting == "uniform":
        return per_sample.mean(), per_sample
    raise ConfigError(f"training.loss_weighting: must be one of uniform, min_snr (got {weighting!r})")


def make_sampler(name: str, schedule: NoiseSchedule, steps: int | None = None, eta: float = 0.0):
    """'ddpm' (all T steps) or 'ddim' with `steps` steps and noise level `eta`."""
    if name == "ddpm":
        return DDPMSampler(schedule)
    if name == "ddim":
        if steps is None or not 1 <= steps <= schedule.timesteps:
            raise ConfigError(f"--steps: DDIM needs 1 <= steps <= {schedule.timesteps} (got {steps})")
        return DDIMSampler(schedule, steps, eta)
    raise ConfigError(f"--sampler: must be one of ddpm, ddim (got {name!r})")


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
