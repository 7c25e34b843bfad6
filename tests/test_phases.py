"""Phase labels from representation metrics against their nulls, and their comparison with generation."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from diffrep.config import ConfigError, PhaseConfig, make_config
from diffrep.evaluation.phases import (FROZEN, RULE_VERSION, agreement, agreement_null, classify, dominant_outcome, explain,
                            onsets, order_gain, rank_correlation, rule_id)

CHANCE = 0.046  # knn_overlap_chance of the default 16 x 16 probe grid with k = 10


def metrics(share, knn, chance=CHANCE):
    return {"condition_share": share, "knn_overlap": knn, "knn_overlap_chance": chance}


# ----------------------------------------------------------------------------
# The rule.


def test_structure_decides_a_and_order_decides_b_or_c():
    assert classify(metrics(0.2, 0.9)) == "A"  # ordered-looking, but the noise sets the code
    assert classify(metrics(0.8, 0.10)) == "B"  # the condition sets the code, neighbourhoods near chance
    assert classify(metrics(0.8, 0.75)) == "C"
    assert classify(metrics(0.49, 0.75)) == "A" and classify(metrics(0.5, 0.75)) == "C"


def test_order_is_measured_from_chance_so_the_grid_does_not_matter():
    # knn_overlap 0.6 on a 6 x 6 grid (chance 0.18) is about as far from chance as 0.53 on 16 x 16
    assert order_gain(metrics(1, 0.6, 0.18)) == pytest.approx((0.6 - 0.18) / 0.82)
    assert classify(metrics(0.9, 0.55, 0.18)) == "B" and classify(metrics(0.9, 0.55, CHANCE)) == "C"
    assert order_gain(metrics(1, CHANCE)) == 0


def test_missing_metrics_never_satisfy_a_criterion():
    assert classify({}) == "A"
    assert classify({"condition_share": None, "knn_overlap": 0.9, "knn_overlap_chance": CHANCE}) == "A"
    assert classify({"condition_share": 0.9, "knn_overlap": 0.9}) == "B"  # no chance level: no order gain
    assert classify({"condition_share": float("nan"), "knn_overlap": 0.9, "knn_overlap_chance": CHANCE}) == "A"


def test_explain_gives_the_comparisons():
    phase, reasons = explain(metrics(0.8, 0.1))
    assert phase == "B" and reasons[0].startswith("condition_share 0.800 >= 0.5") and "order_gain" in reasons[1]


def test_the_frozen_rule_has_a_version_and_other_thresholds_say_so():
    assert rule_id(PhaseConfig()) == RULE_VERSION == rule_id(FROZEN)
    custom = rule_id(PhaseConfig(min_condition_share=0.3))
    assert custom.startswith("custom(") and "0.3" in custom
    assert classify(metrics(0.4, 0.9), PhaseConfig(min_condition_share=0.3)) == "C"


@pytest.mark.parametrize("key, value, message", [
    ("min_condition_share", -1.5, r"^phase\.min_condition_share: must be in \[-1, 1\] \(got -1\.5\)"),
    ("min_order_gain", 1.5, r"^phase\.min_order_gain: must be in \[-1, 1\]"),
    ("min_order_gain", "high", r"^phase\.min_order_gain: expected a number"),
    ("c_min_knn_overlap", 0.5, r"^phase\.c_min_knn_overlap: unknown setting"),
])
def test_phase_config_errors_name_the_setting(key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_config("default", {f"phase.{key}": value})


def test_a_version_1_config_reads_as_a_shared_probe_without_its_old_thresholds():
    from diffrep.config import Config

    old = make_config("default").to_dict()
    old.update(version=1, phase={"c_min_knn_overlap": 0.6, "b_max_dim": 3.5})
    old["probe"].pop("input")
    old["probe"].pop("draws")
    cfg = Config.from_dict(old)
    assert (cfg.probe.input, cfg.probe.draws, cfg.phase) == ("shared", 1, PhaseConfig())


# ----------------------------------------------------------------------------
# Phases against generation.


def test_agreement():
    phases = ["A", "A", "B", "C", "C", None]
    outcomes = ["several", "none", "wrong", "wrong", 3, "accurate"]  # 3 = detect.ACCURATE
    assert agreement(phases, outcomes) == pytest.approx(4 / 5)
    assert math.isnan(agreement([None], ["wrong"]))
    with pytest.raises(ValueError):
        agreement(["A"], [])


def test_dominant_outcome():
    summary = {"frac_none": 0.1, "frac_several": 0.2, "frac_wrong": 0.6, "frac_accurate": 0.1}
    assert dominant_outcome(summary) == "wrong"
    assert dominant_outcome({}) is None


def test_onsets_order_and_reversals():
    steps = [0, 50, 100, 150, 200, 250]
    found = onsets(steps, ["A", "A", "B", "C", "C", "C"], ["none", "several", "wrong", "wrong", "accurate", None],
                   [0.0, 0.0, 0.1, 0.4, 0.6, None])
    assert found.phase == {"A": 0, "B": 100, "C": 150}
    assert found.outcome == {"none": 0, "several": 50, "wrong": 100, "accurate": 200}
    assert found.accurate == 200 and found.in_order and found.reversals == 0
    back = onsets(steps, ["A", "B", "C", "B", "C", "C"], [None] * 6, [None] * 6)
    assert back.reversals == 1 and not back.in_order and back.accurate is None
    skipped = onsets(steps, ["A", "A", "C", "C", "C", "C"], [None] * 6, [None] * 6)
    assert skipped.phase["B"] is None and not skipped.in_order
    assert not onsets(steps, ["B", "B", "C", "C", "C", "C"], [None] * 6, [None] * 6).in_order  # never in A


def test_agreement_null_is_the_exact_permutation_distribution():
    phases, outcomes = ["A", "A", "B", "C"], ["none", "several", "wrong", "accurate"]
    result = agreement_null([(phases, outcomes)], permutations=20_000)
    assert result["agreement"] == 1.0 and result["n"] == 4
    # Every distinct arrangement of the labels A, A, B, C over the four checkpoints, equally likely.
    exact = [np.mean([o in {"A": ("several", "none"), "B": ("wrong",), "C": ("accurate",)}[p]
                      for p, o in zip(perm, outcomes)]) for perm in itertools.permutations(phases)]
    assert result["null_mean"] == pytest.approx(np.mean(exact), abs=0.01)
    assert result["p_value"] == pytest.approx(np.mean(np.array(exact) >= 1.0), abs=0.01)  # 2 of 24


def test_agreement_null_says_no_when_phases_and_outcomes_disagree():
    phases = ["A"] * 5 + ["B"] * 5 + ["C"] * 5
    outcomes = ["accurate"] * 5 + ["several"] * 5 + ["wrong"] * 5  # every phase against its outcome
    result = agreement_null([(phases, outcomes)] * 3)
    assert result["agreement"] == 0 and result["agreement"] < result["null_mean"] and result["p_value"] == 1.0
    aligned = agreement_null([(phases, ["several"] * 5 + ["wrong"] * 5 + ["accurate"] * 5)] * 3)
    assert aligned["agreement"] == 1.0 and aligned["p_value"] < 0.001
    assert agreement_null([([None], ["wrong"])])["p_value"] is None
    assert aligned["runs_changing_phase"] == 3
    one_phase = agreement_null([(["A"] * 5, ["none"] * 4 + ["wrong"])] * 2)  # never leaves A: its own null
    assert one_phase["runs_changing_phase"] == 0 and one_phase["agreement"] == pytest.approx(one_phase["null_mean"]) == 0.8


def test_rank_correlation_is_nan_safe():
    r = rank_correlation([0.1, 0.5, None, 0.9, float("nan"), 0.7], [0.0, 0.2, 0.5, 0.8, 0.1, 0.6])
    assert r.n == 4 and r.rho == pytest.approx(1.0)
    assert math.isnan(rank_correlation([1, 2], [1, 2]).rho)
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]).rho)


# ----------------------------------------------------------------------------
# The rule on real networks: controls that must come out A (or never C).


def _phase_at_init(preset, overrides=None):
    from diffrep.diffusion import NoiseSchedule
    from diffrep.model import build_model
    from diffrep.evaluation.probes import probe_checkpoint

    cfg = make_config(preset, {"probe.umap": False, **(overrides or {})})
    torch.manual_seed(0)
    result = probe_checkpoint(build_model(cfg), cfg, NoiseSchedule(cfg.diffusion))
    return classify(result["layers"]["layer4"]["metrics"]), result["layers"]["layer4"]["metrics"]


@pytest.mark.parametrize("preset, overrides", [
    ("default", None),
    ("tiny", None),  # 16 x 16 images, a 6 x 6 probe grid, T = 100
    ("default", {"data.kind": "digits", "data.x_min": 8.0, "data.x_max": 24.0, "data.y_min": 8.0, "data.y_max": 24.0}),
    ("default", {"model.label_encoding": "mlp"}),
])
def test_an_untrained_network_is_phase_a(preset, overrides):
    phase, m = _phase_at_init(preset, overrides)
    assert phase == "A" and m["condition_share"] < 0.1


def test_the_shared_probe_makes_the_untrained_network_look_ordered():
    # The reason the probe gives each condition its own noise: with one shared input, every difference
    # between conditions comes from (x, y), and the random network's smooth map of them looks ordered.
    _, m = _phase_at_init("default", {"probe.input": "shared"})
    assert order_gain(m) > 0.5
    _, m = _phase_at_init("default")
    assert order_gain(m) < 0.1


# 16 x 16 images with the default preset's network and optimizer: phase C within 400 steps (A to
# step 100, B at 125, C from 150 when measured), in about 30 s.
SMALL = {"data.image_size": 16, "data.latent_size": 16.0, "data.x_max": 16.0, "data.y_max": 16.0,
         "data.dx": 1.0, "data.dy": 1.0, "training.steps": 400, "training.checkpoint_every": 50,
         "probe.grid": 8, "probe.knn": 5, "probe.umap": False, "scoring.during_training": False}


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The same small run conditioned (the positive control) and never conditioned (label dropout 1)."""
    from diffrep.rundir import RunDir
    from diffrep.run import train

    runs = {}
    for dropout in (0.0, 1.0):
        cfg = make_config("default", {**SMALL, "model.label_dropout": dropout})
        runs[dropout] = train(cfg, RunDir.create(tmp_path_factory.mktemp("small") / "run", cfg), quiet=True)
    return runs


def _phases(run):
    return [r["phase.layer4"] for r in run.metrics() if "phase.layer4" in r]


@pytest.mark.slow
def test_a_network_never_given_its_condition_never_reaches_phase_c(small_runs):
    conditioned, unconditioned = _phases(small_runs[0.0]), _phases(small_runs[1.0])
    assert conditioned[0] == "A" and conditioned[-1] == "C"
    assert "C" not in unconditioned


@pytest.mark.slow
@pytest.mark.parametrize("fresh, phase", [(True, "A"), (False, "B")])
def test_shuffling_activations_across_conditions(small_runs, fresh, phase):
    """A fresh shuffle per forward pass (the code says nothing about the condition) is A; one fixed
    shuffle (a lookup table: a code of (x, y) with its neighbourhoods scrambled) is B."""
    from diffrep.diffusion import NoiseSchedule
    from diffrep.evaluation.probes import probe_checkpoint
    from diffrep.training import load_model

    run = small_runs[0.0]
    cfg = run.config()
    model = load_model(run, run.checkpoint_steps()[-1])
    generator = torch.Generator().manual_seed(0)
    fixed = torch.randperm(cfg.probe.grid ** 2, generator=generator)
    model.down3.register_forward_hook(
        lambda _m, _i, out: out[torch.randperm(len(out), generator=generator) if fresh else fixed])
    result = probe_checkpoint(model, cfg, NoiseSchedule(cfg.diffusion))
    assert classify(result["layers"]["layer4"]["metrics"]) == phase


# ----------------------------------------------------------------------------
# A whole run: probes during training, `diffrep probe`, probes/phases.json.


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    from diffrep.rundir import RunDir
    from diffrep.run import train

    cfg = make_config("tiny", {"training.steps": 20})
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("p") / "run", cfg), quiet=True)


def test_training_probes_every_checkpoint_with_a_phase_and_the_rule(probed_run):
    steps = probed_run.checkpoint_steps()
    lines = [r for r in probed_run.metrics() if "phase.layer4" in r]
    assert [r["step"] for r in lines] == steps
    assert all(r["phase.layer4"] in ("A", "B", "C") for r in lines)
    assert all(isinstance(r["probe.layer4.knn_overlap"], float) for r in lines)
    record = json.loads((probed_run.path / "probes" / f"step_{steps[-1]:08d}.json").read_text())
    assert record["rule"] == RULE_VERSION and record["input"] == "independent" and record["draws"] == 2
    assert record["phases"]["layer4"] == lines[-1]["phase.layer4"]
    with np.load(probed_run.path / "probes" / f"step_{steps[-1]:08d}.npz") as npz:
        assert npz["conditions"].shape == (36, 2)  # probe.grid = 6 in the tiny preset
        assert npz["activations.layer4"].shape == (36, 16 * 4 * 4)  # the first noise draw


def test_probe_command_labels_phases_and_compares_with_generation(probed_run, capsys):
    from diffrep.cli import main

    assert main(["probe", str(probed_run.path), "--layers", "layer4,mid"]) == 0
    out = capsys.readouterr().out
    assert "agreement of phase and outcome" in out and "Spearman rho" in out
    analysis = json.loads((probed_run.path / "probes" / "phases.json").read_text())
    assert set(analysis["layers"]) == {"layer4", "mid"} and analysis["rule"] == RULE_VERSION
    rows = analysis["layers"]["layer4"]["checkpoints"]
    assert [r["step"] for r in rows] == probed_run.checkpoint_steps()
    assert all(r["phase"] == "A" for r in rows)  # 20 steps of the tiny preset learn no structure
    # Generation at these steps is noise: no bump-shaped component, "none", which phase A predicts.
    assert all(r["outcome"] == "none" for r in rows)
    assert analysis["layers"]["layer4"]["agreement"] == 1.0
    assert (probed_run.path / "probes" / "metrics_mid.png").stat().st_size > 0


def test_reprobing_keeps_what_was_probed_before(probed_run, capsys):
    from diffrep.cli import main

    last = probed_run.checkpoint_steps()[-1]
    own = probed_run.path / "probes" / f"step_{last:08d}.json"
    assert main(["probe", str(probed_run.path), "--layers", "up1", "--checkpoints", "latest"]) == 0
    assert {"layer4", "up1"} <= set(json.loads(own.read_text())["layers"])  # layer4 kept, up1 added
    with np.load(own.with_suffix(".npz")) as npz:
        assert {"activations.layer4", "activations.up1"} <= set(npz.files)
    before = own.read_bytes()
    assert main(["probe", str(probed_run.path), "--timestep", "50", "--input", "shared", "--checkpoints", f"0,{last}"]) == 0
    other = probed_run.path / "probes-shared-t50-g6-r2-n0"
    assert sorted(p.name for p in other.glob("step_*.json")) == ["step_00000000.json", f"step_{last:08d}.json"]
    record = json.loads((other / f"step_{last:08d}.json").read_text())
    assert (record["timestep"], record["input"]) == (50, "shared")
    assert record["phases"] == {}  # the rule reads independent noise only: a shared-noise probe is not labelled
    analysis = json.loads((other / "phases.json").read_text())["layers"]["layer4"]
    assert {r["phase"] for r in analysis["checkpoints"]} == {None} and analysis["first_step"]["C"] is None
    assert own.read_bytes() == before  # the run's own probe set is untouched
    capsys.readouterr()
