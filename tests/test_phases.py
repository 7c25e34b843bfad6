"""Phase labels from representation metrics, and their comparison with generation."""

import json
import math

import numpy as np
import pytest

from diffrep.config import ConfigError, make_config
from diffrep.phases import agreement, classify, dominant_outcome, explain, rank_correlation

# Metrics as probe_metrics returns them (values measured on the synthetic cases of test_probes.py,
# and, for REAL_INIT, the default preset's layer4 at step 0).
UNRELATED = {"decode_r2_x": -0.47, "decode_r2_y": -0.50, "trustworthiness": 0.51, "knn_overlap": 0.05,
             "mle_dim": 28.5, "participation_ratio": 51.1}
SHUFFLED = {"decode_r2_x": -0.03, "decode_r2_y": -0.02, "trustworthiness": 0.51, "knn_overlap": 0.05,
            "mle_dim": 2.36, "participation_ratio": 1.83}
ORDERED = {"decode_r2_x": 1.0, "decode_r2_y": 1.0, "trustworthiness": 0.999, "knn_overlap": 0.985,
           "mle_dim": 2.44, "participation_ratio": 6.7}
REAL_INIT = {"decode_r2_x": 1.0, "decode_r2_y": 1.0, "trustworthiness": 0.961, "knn_overlap": 0.721,
             "mle_dim": 4.66, "participation_ratio": 6.39}


def test_synthetic_phases():
    assert [classify(m, UNRELATED) for m in (UNRELATED, SHUFFLED, ORDERED)] == ["A", "B", "C"]


def test_the_random_initialization_is_not_an_ordered_2d_manifold():
    assert classify(REAL_INIT, REAL_INIT) == "A"  # ordered-looking, but ~4.7-dimensional
    # The same order on a 2D manifold is C; a 2D manifold without the order is B.
    assert classify({**REAL_INIT, "mle_dim": 2.8}, REAL_INIT) == "C"
    assert classify({**REAL_INIT, "mle_dim": 2.8, "knn_overlap": 0.4}, REAL_INIT) == "B"


def test_measured_checkpoints_of_a_default_run():
    # layer4 of the default preset, seed 0 (README, "Phases"): steps 1,000, 2,500 and 4,000.
    collapsed = {"knn_overlap": 0.336, "trustworthiness": 0.836, "participation_ratio": 2.61, "mle_dim": 5.39}
    ordered = {"knn_overlap": 0.639, "trustworthiness": 0.934, "participation_ratio": 3.50, "mle_dim": 2.72}
    late = {"knn_overlap": 0.442, "trustworthiness": 0.752, "participation_ratio": 6.10, "mle_dim": 4.02}
    assert [classify(m, REAL_INIT) for m in (collapsed, ordered, late)] == ["B", "C", "A"]


def test_high_decoding_counts_only_above_initialization():
    decodable = {**UNRELATED, "decode_r2_x": 0.97, "decode_r2_y": 0.96}
    assert classify(decodable, {**UNRELATED, "decode_r2_x": 0.91, "decode_r2_y": 0.9}) == "B"
    assert classify(decodable, {**UNRELATED, "decode_r2_x": 0.95, "decode_r2_y": 0.95}) == "A"


def test_dimension_collapse_relative_to_initialization():
    collapsed = {**UNRELATED, "participation_ratio": 35.0}
    assert classify(collapsed, UNRELATED) == "B"  # 35 <= 0.7 x 51.1
    assert classify(collapsed, None) == "A"  # no init: relative criteria do not fire


def test_missing_metrics_never_satisfy_a_criterion():
    assert classify({"knn_overlap": None, "trustworthiness": 0.99}, None) == "A"
    assert classify({}, {}) == "A"
    assert classify({"knn_overlap": 0.9, "trustworthiness": 0.99}, {}) == "A"  # no mle_dim: not C


def test_explain_gives_reasons():
    phase, reasons = explain(SHUFFLED, UNRELATED)
    assert phase == "B" and any("mle_dim" in r for r in reasons)
    phase, reasons = explain(ORDERED, UNRELATED)
    assert phase == "C" and any("knn_overlap" in r for r in reasons)


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


def test_rank_correlation_is_nan_safe():
    r = rank_correlation([0.1, 0.5, None, 0.9, float("nan"), 0.7], [0.0, 0.2, 0.5, 0.8, 0.1, 0.6])
    assert r.n == 4 and r.rho == pytest.approx(1.0)
    assert math.isnan(rank_correlation([1, 2], [1, 2]).rho)
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]).rho)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("c_min_knn_overlap", -0.1, r"^phase\.c_min_knn_overlap: must be in \[0, 1\] \(got -0\.1\)"),
        ("c_min_trustworthiness", 0.4, r"^phase\.c_min_trustworthiness: must be in \[0\.5, 1\]"),
        ("c_max_dim", 0, r"^phase\.c_max_dim: must be > 0"),
        ("b_max_dim", 0, r"^phase\.b_max_dim: must be > 0"),
        ("b_max_pr", 0.5, r"^phase\.b_max_pr: must be >= 1"),
        ("b_pr_fraction", 1.5, r"^phase\.b_pr_fraction: must be in \[0, 1\]"),
        ("b_min_decode", "high", r"^phase\.b_min_decode: expected a number"),
        ("b_min_decode_gain", -0.1, r"^phase\.b_min_decode_gain: must be in \[0, 1\]"),
    ],
)
def test_phase_config_errors_name_the_setting(key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_config("default", {f"phase.{key}": value})


# ----------------------------------------------------------------------------
# A whole run: probes during training, `diffrep probe`, probes/phases.json.


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    from diffrep.rundir import RunDir
    from diffrep.training import train

    cfg = make_config("tiny", {"training.steps": 20})
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("p") / "run", cfg), quiet=True)


def test_training_probes_every_checkpoint_with_a_phase(probed_run):
    steps = probed_run.checkpoint_steps()
    lines = [r for r in probed_run.metrics() if "phase.layer4" in r]
    assert [r["step"] for r in lines] == steps
    assert all(r["phase.layer4"] in ("A", "B", "C") for r in lines)
    assert all(isinstance(r["probe.layer4.knn_overlap"], float) for r in lines)
    with np.load(probed_run.path / "probes" / f"step_{steps[-1]:08d}.npz") as npz:
        assert npz["conditions"].shape == (36, 2)  # probe.grid = 6 in the tiny preset
        assert npz["activations.layer4"].shape == (36, 16 * 4 * 4)


def test_probe_command_labels_phases_and_compares_with_generation(probed_run, capsys):
    from diffrep.cli import main

    assert main(["probe", str(probed_run.path), "--layers", "layer4,mid"]) == 0
    out = capsys.readouterr().out
    assert "agreement with outcomes" in out and "Spearman rho" in out
    analysis = json.loads((probed_run.path / "probes" / "phases.json").read_text())
    assert set(analysis["layers"]) == {"layer4", "mid"}
    rows = analysis["layers"]["layer4"]["checkpoints"]
    assert [r["step"] for r in rows] == probed_run.checkpoint_steps()
    assert rows[0]["phase"] != "C"  # step 0 is never ordered by learning
    # Generation at these steps is "several bumps" everywhere: phase A agrees with it.
    assert all(r["outcome"] == "several" for r in rows)
    assert analysis["layers"]["layer4"]["agreement"] == np.mean([r["phase"] == "A" for r in rows])
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
    assert main(["probe", str(probed_run.path), "--timestep", "50", "--checkpoints", f"0,{last}"]) == 0
    other = probed_run.path / "probes-t50-g6-n0"
    assert sorted(p.name for p in other.glob("step_*.json")) == ["step_00000000.json", f"step_{last:08d}.json"]
    assert json.loads((other / f"step_{last:08d}.json").read_text())["timestep"] == 50
    assert own.read_bytes() == before  # the run's own probe set is untouched
    capsys.readouterr()
