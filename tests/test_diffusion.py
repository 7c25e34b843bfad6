"""Noise schedule and samplers, checked against closed forms and an oracle denoiser."""

import math

import pytest
import torch

from diffrep.config import ConfigError, DiffusionConfig, make_config
from diffrep.data import render
from diffrep.diffusion import (DDIMSampler, DDPMSampler, EulerSampler, HeunSampler, NoiseSchedule, make_sampler,
                               make_schedule, min_snr_weights, sample)
from diffrep.model import build_model

SCHEDULE = NoiseSchedule(DiffusionConfig())


def test_linear_schedule_values():
    s = SCHEDULE
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)
    assert s.alphas_cumprod[1].item() == pytest.approx((1 - 1e-4) * (1 - (1e-4 + (0.02 - 1e-4) / 999)))
    # prod(1 - beta) over the linear schedule: essentially pure noise at t = T - 1.
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)


def test_add_noise_is_the_closed_form_of_q():
    x0 = torch.full((2, 1, 4, 4), 0.5)
    noise = torch.full((2, 1, 4, 4), -1.0)
    t = torch.tensor([0, 500])
    out = SCHEDULE.add_noise(x0, noise, t)
    for i, ti in enumerate(t):
        ab = SCHEDULE.alphas_cumprod[ti].item()
        assert out[i, 0, 0, 0].item() == pytest.approx(math.sqrt(ab) * 0.5 - math.sqrt(1 - ab), abs=1e-6)


def test_ddim_timesteps_are_evenly_spaced_from_T_minus_1_to_0():
    assert DDIMSampler(SCHEDULE, 5).timesteps == [999, 749, 500, 250, 0]
    assert DDPMSampler(SCHEDULE).timesteps == list(range(999, -1, -1))


class Oracle(torch.nn.Module):
    """The exact noise predictor when the data is a single image x0: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""

    def __init__(self, x0, schedule):
        super().__init__()
        self.x0, self.schedule = x0, schedule
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the sampler a device to read

    def forward(self, x, t, labels):
        ab = self.schedule.alpha_bar(t.cpu(), x)
        return (x - ab.sqrt() * self.x0) / (1 - ab).sqrt()


@pytest.mark.parametrize("sampler", [DDPMSampler(SCHEDULE), DDIMSampler(SCHEDULE, 20), DDIMSampler(SCHEDULE, 20, eta=1.0)],
                         ids=["ddpm", "ddim20", "ddim20_eta1"])
def test_samplers_recover_the_data_under_an_oracle_denoiser(sampler):
    x0 = render(torch.tensor([[10.0, 20.0], [20.0, 5.5]]))
    images = sample(Oracle(x0, SCHEDULE), sampler, torch.zeros(2, 2), image_size=32, seed=3)
    assert (images - x0).abs().max().item() < 1e-3


def test_sampling_is_deterministic_for_a_seed():
    cfg = make_config("tiny")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    schedule = NoiseSchedule(cfg.diffusion)
    labels = torch.tensor([[4.0, 4.0], [10.0, 6.0]])
    for sampler in (DDPMSampler(schedule), DDIMSampler(schedule, 10), DDIMSampler(schedule, 10, eta=1.0)):
        a = sample(model, sampler, labels, 16, seed=7)
        b = sample(model, sampler, labels, 16, seed=7)
        c = sample(model, sampler, labels, 16, seed=8)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_make_sampler_rejects_bad_choices():
    with pytest.raises(ConfigError, match="--steps"):
        make_sampler("ddim", SCHEDULE, 0)
    with pytest.raises(ConfigError, match="--sampler: diffusion.objective epsilon samples with ddim, ddpm"):
        make_sampler("euler", SCHEDULE)
    with pytest.raises(ConfigError, match="--sampler: diffusion.objective flow samples with euler, heun"):
        make_sampler("ddim", FLOW, 10)


V_SCHEDULE = NoiseSchedule(DiffusionConfig(objective="v"))
FLOW = make_schedule(DiffusionConfig(objective="flow"))


class VOracle(Oracle):
    """The exact v predictor for a single image x0: v = sqrt(ab) eps - sqrt(1 - ab) x0."""

    def forward(self, x, t, labels):
        ab = self.schedule.alpha_bar(t.cpu(), x)
        return ab.sqrt() * super().forward(x, t, labels) - (1 - ab).sqrt() * self.x0


class FlowOracle(Oracle):
    """The exact velocity for a single image x0 on x_s = (1 - s) x0 + s noise: (x_s - x0) / s."""

    def forward(self, x, t, labels):
        return (x - self.x0) / self.schedule.level(t.cpu(), x)


@pytest.mark.parametrize("oracle, sampler", [
    (VOracle, DDPMSampler(V_SCHEDULE)), (VOracle, DDIMSampler(V_SCHEDULE, 20)), (VOracle, DDIMSampler(V_SCHEDULE, 20, eta=1.0)),
    (FlowOracle, EulerSampler(FLOW, 20)), (FlowOracle, EulerSampler(FLOW, 3)), (FlowOracle, HeunSampler(FLOW, 3)),
], ids=["v-ddpm", "v-ddim20", "v-ddim20_eta1", "flow-euler20", "flow-euler3", "flow-heun3"])
def test_v_and_flow_samplers_recover_the_data_under_their_oracles(oracle, sampler):
    x0 = render(torch.tensor([[10.0, 20.0], [20.0, 5.5]]))
    images = sample(oracle(x0, sampler.schedule), sampler, torch.zeros(2, 2), image_size=32, seed=3)
    assert (images - x0).abs().max().item() < 1e-3


class GaussianFlowOracle(torch.nn.Module):
    """The exact velocity when every pixel of the data is N(mean, scale^2), independently: on x_s = (1 - s)
    x0 + s noise, E[x0 | x_s] = mean + (1 - s) scale^2 (x_s - (1 - s) mean) / ((1 - s)^2 scale^2 + s^2) and
    the velocity is (x_s - E[x0 | x_s]) / s. Its paths curve, and the exact flow takes noise n at s = 1
    to mean + scale n at s = 0."""

    def __init__(self, mean: float, scale: float):
        super().__init__()
        self.mean, self.scale = mean, scale
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels):
        s = FLOW.level(t.cpu(), x)
        var = (1 - s) ** 2 * self.scale**2 + s**2
        x0 = self.mean + (1 - s) * self.scale**2 * (x - (1 - s) * self.mean) / var
        return (x - x0) / s


def test_heun_is_second_order_where_euler_is_first_on_curved_paths():
    oracle = GaussianFlowOracle(mean=0.3, scale=0.2)
    labels = torch.zeros(4, 2)
    exact = 0.3 + 0.2 * torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(5))

    def error(sampler):
        return (sample(oracle, sampler, labels, image_size=8, seed=5) - exact).abs().max().item()

    euler = [error(EulerSampler(FLOW, k)) for k in (10, 20)]
    heun = [error(HeunSampler(FLOW, k)) for k in (10, 20)]
    assert 1.6 < euler[0] / euler[1] < 2.5  # halving the step halves Euler's error
    assert heun[0] / heun[1] > 3.0  # and quarters Heun's
    assert heun[1] < euler[1] / 5
    sampler = HeunSampler(FLOW, 10)
    assert len(sampler.timesteps) == 19 and sampler.timesteps[:3] == [999, 888, 888]
    assert error(sampler) == error(sampler)  # a second run of the same sampler starts afresh


def test_each_objective_learns_what_its_sampler_reads():
    """The training target at x_t is what the oracle predicts there, and the DDPM samplers read v back
    as the noise; flow's path is linear from the data (s = 0) to the noise (s = 1)."""
    x0 = render(torch.tensor([[10.0, 20.0], [20.0, 5.5]]))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 700])
    for schedule, oracle in ((SCHEDULE, Oracle), (V_SCHEDULE, VOracle), (FLOW, FlowOracle)):
        x_t = schedule.add_noise(x0, noise, t)
        target = schedule.target(x0, noise, t)
        assert torch.allclose(oracle(x0, schedule)(x_t, t, None), target, atol=1e-4)
    v = V_SCHEDULE.target(x0, noise, t)
    assert torch.allclose(V_SCHEDULE.to_epsilon(v, V_SCHEDULE.add_noise(x0, noise, t), t), noise, atol=1e-5)
    assert torch.equal(FLOW.add_noise(x0, noise, torch.tensor([-1, FLOW.timesteps - 1])), torch.stack([x0[0], noise[1]]))


def test_min_snr_weights_of_v_prediction():
    timesteps = torch.arange(1000)
    snr = V_SCHEDULE.snr(timesteps)
    assert torch.allclose(min_snr_weights(V_SCHEDULE, timesteps, 5.0), snr.clamp(max=5.0) / (snr + 1))


def test_min_snr_weights_only_the_nearly_clean_timesteps():
    cfg = make_config("default", {"training.loss_weighting": "min_snr", "training.min_snr_gamma": 5.0})
    schedule = NoiseSchedule(cfg.diffusion)
    timesteps = torch.arange(cfg.diffusion.timesteps)
    weights = min_snr_weights(schedule, timesteps, cfg.training.min_snr_gamma).double()
    snr = schedule.snr(timesteps)
    noisy = snr <= 5.0
    assert 0 < noisy.sum() < len(timesteps)  # both regimes occur on the linear schedule
    assert torch.all(weights[noisy] == 1)
    assert torch.allclose(weights[~noisy], 5.0 / snr[~noisy])
    assert weights[0] < 0.01 and torch.all(weights[1:] >= weights[:-1])  # t = 0 (SNR ~ 1e4) barely counts
