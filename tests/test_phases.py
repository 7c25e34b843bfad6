"""Phase labels from representation metrics, and their comparison with generation."""

import math

import pytest

from diffrep.config import ConfigError
from diffrep.phases import PhaseConfig, agreement, classify, dominant_outcome, explain, rank_correlation, validate_phase_config

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


def test_initialization_is_never_ordered_by_itself():
    assert classify(REAL_INIT, REAL_INIT) == "A"  # no gain over step 0
    # The same order without the comparison passes the absolute bars only if high enough.
    assert classify({**REAL_INIT, "knn_overlap": 0.9, "trustworthiness": 0.99}, REAL_INIT) == "C"
    assert classify({**REAL_INIT, "knn_overlap": 0.76, "trustworthiness": 0.99}, REAL_INIT) == "A"


def test_high_decoding_counts_only_above_initialization():
    decodable = {**UNRELATED, "decode_r2_x": 0.97, "decode_r2_y": 0.96}
    assert classify(decodable, {**UNRELATED, "decode_r2_x": 0.91, "decode_r2_y": 0.9}) == "B"
    assert classify(decodable, {**UNRELATED, "decode_r2_x": 0.95, "decode_r2_y": 0.95}) == "A"


def test_dimension_collapse_relative_to_initialization():
    collapsed = {**UNRELATED, "participation_ratio": 20.0}
    assert classify(collapsed, UNRELATED) == "B"  # 20 <= 0.5 x 51
    assert classify(collapsed, None) == "A"  # no init: relative criteria do not fire


def test_missing_metrics_never_satisfy_a_criterion():
    assert classify({"knn_overlap": None, "trustworthiness": 0.99}, None) == "A"
    assert classify({}, {}) == "A"
    assert classify({"knn_overlap": 0.9, "trustworthiness": 0.99}, {}) == "A"  # init lacks knn_overlap


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


def test_default_phase_config_is_valid():
    validate_phase_config(PhaseConfig())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"c_min_knn_overlap": 0.0}, r"^phase\.c_min_knn_overlap: must be in \(0, 1\] \(got 0\.0\)"),
        ({"c_min_trustworthiness": 0.4}, r"^phase\.c_min_trustworthiness: must be in \(0\.5, 1\]"),
        ({"c_min_gain": 1.0}, r"^phase\.c_min_gain: must be in \[0, 1\)"),
        ({"b_max_dim": float("nan")}, r"^phase\.b_max_dim: must be a number > 0"),
        ({"b_max_pr": 0.5}, r"^phase\.b_max_pr: must be a number >= 1"),
        ({"b_pr_fraction": 1.5}, r"^phase\.b_pr_fraction: must be in \(0, 1\]"),
        ({"b_min_decode": "high"}, r"^phase\.b_min_decode: must be in \(0, 1\] \(got 'high'\)"),
        ({"b_min_decode_gain": -0.1}, r"^phase\.b_min_decode_gain: must be in \[0, 1\)"),
    ],
)
def test_phase_config_errors_name_the_setting(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_phase_config(PhaseConfig(**change))
