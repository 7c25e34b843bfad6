"""Experiments (diffrep/experiments/): every one end to end at the tiny scale,
and the verdict rules on synthetic sweeps whose answer is known.

End to end: a module fixture trains the tiny runs of every training experiment but `density` with
the sweep's own unit of work (`sweep.run_one`, what a local or Ray worker runs), two worker
processes at once, into each experiment's sweep directory; `run_experiment` then finds them
finished, as a resumed sweep does, and aggregates, analyzes and reports. `density` runs from
scratch through the CLI (`diffrep sweep density --scale tiny`), worker pool included, and
`percolation` (no training) through the CLI too. Tiny runs (12 steps) learn nothing, so these check
that each experiment produces its statistics, figure, findings.json and report, and that its
verdict agrees with its own statistics; what the verdict rules conclude is checked on synthetic
rows built like `sweep.aggregate`'s.
"""

from __future__ import annotations

import html
import json
import multiprocessing
import re
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from diffrep.experiments import ablation, catalog, density, families, holes, imbalance, sigma, stats, stripes, torus
from diffrep.experiments import phases as phases_experiment
from diffrep.experiments import common
from diffrep.experiments.common import Context
from diffrep.cli import main
from diffrep.config import make_config
from diffrep.experiments import EXPERIMENTS, estimate_seconds, plan, run_experiment
from diffrep.percolation import cluster_row, onset
from diffrep.report import write_sweep_report
from diffrep.sweep.grid import expand_grid
from diffrep.sweep.runner import prepare_sweep_dir, run_one
from diffrep.sweep.tables import flatten_config, time_to

EXPECTED_STATISTICS = {
    "phases": {"first_step_A", "first_step_B", "first_step_C", "first_step_wrong", "first_step_accurate",
               "lag_c_to_accurate", "agreement", "agreement_null", "final_accuracy", "runs_in_order", "umap_r2_by_phase"},
    "density": {"steps_to_phase_C", "epochs_to_phase_C", "steps_to_accuracy_0.9", "final_accuracy",
                "trend_steps_to_phase_C", "trend_epochs_to_phase_C", "trend_steps_to_accuracy_0.9",
                "trend_epochs_to_accuracy_0.9"},
    "sigma": {"steps_to_phase_C", "steps_to_accuracy_0.9", "neighbour_overlap", "trend_steps_to_phase_C_increment",
              "trend_steps_to_phase_C_sigma", "trend_steps_to_phase_C_neighbour_overlap", "increment_minus_sigma_abs_rho"},
    "imbalance": {"steps_to_x_accuracy_0.5", "steps_to_y_accuracy_0.5", "epochs_to_x_accuracy_0.5",
                  "epochs_to_y_accuracy_0.5", "additive_share_gain", "final_additive_share", "additive_share_chance"},
    "torus": {"final_additive_share", "additive_share_gain", "additive_share_chance", "final_xy_angle_deg"},
    "holes": {"final_train_accuracy", "final_heldout_accuracy", "heldout_to_train_accuracy",
              "heldout_to_train_denoise_loss", "trend_ratio_interior_square", "trend_ratio_edge_square"},
    "stripes": {"final_frame_accuracy", "data_for_accuracy_0.6", "percolation", "data_efficiency_gain", "composition_gain"},
    "percolation": {"largest_cluster_fraction", "largest_cluster_share", "onset_lambda"},
    "ablation": {"steps_to_phase_C_layer4", "steps_to_phase_C_bottleneck", "final_accuracy"},
    "digits": {"first_step_C", "agreement", "agreement_null", "final_accuracy", "runs_in_order"},
    "families": {"first_step_A", "first_step_B", "first_step_C", "lag_c_to_accurate", "agreement", "runs_in_order",
                 "steps_to_accuracy_0.9", "step_seconds", "training_seconds_to_accuracy_0.9"},
}
# The statistic whose entries are the sweep's settings, and how many settings the tiny grid has.
PRIMARY = {"phases": ("first_step_C", 1), "sigma": ("steps_to_phase_C", 4), "imbalance": ("steps_to_y_accuracy_0.5", 6), "torus": ("final_additive_share", 3), "families": ("first_step_C", 4),
           "stripes": ("final_frame_accuracy", 8), "ablation": ("final_accuracy", 4), "digits": ("first_step_C", 2),
           "holes": ("final_heldout_accuracy", 6)}  # holes: 2 squares x 2 widths, cross, band (per region)
PRETRAINED = [name for name, e in EXPERIMENTS.items() if e.trains and name != "density"]


def test_the_phase_predictions_have_the_runs_they_need_in_each_group():
    """phases and families decide order and lag per group (all runs; each family) only with
    stats.MIN_MEASURED_RUNS runs: their laptop and full scales give each group that many seeds."""
    for name in ("phases", "families"):
        for scale in ("laptop", "full"):
            assert len(EXPERIMENTS[name].scales[scale].seeds) >= stats.MIN_MEASURED_RUNS, (name, scale)


def test_every_experiment_has_three_scales_and_a_claim():
    assert set(EXPERIMENTS) == set(EXPECTED_STATISTICS)
    for name, e in EXPERIMENTS.items():
        assert set(e.scales) == {"laptop", "full", "tiny"} and e.claim and e.measures
        assert plan(name, "laptop").base.preset == "default"
        if e.trains:
            assert plan(name, "full").base.preset == "paper"
            laptop = plan(name, "laptop").base.training
            # the laptop scale ends where the default preset's cosine ends (catalog.LAPTOP_RUN)
            assert laptop.steps == make_config("default").training.steps
            assert plan(name, "full").base.training.steps == make_config("paper").training.steps
            if name == "phases":  # eight seeds that chose nothing, a checkpoint every 25 steps
                assert plan(name, "laptop").seeds == plan(name, "full").seeds == list(range(6, 14))
                assert laptop.checkpoint_every == 25
            elif name in ("density", "sigma", "imbalance", "ablation", "torus", "families"):  # seeds that chose nothing
                seeds = {"density": list(range(6, 14)), "families": list(range(6, 12))}.get(name, list(range(6, 11)))
                assert plan(name, "laptop").seeds == plan(name, "full").seeds == seeds
                assert laptop.checkpoint_every == 50
            elif name == "holes":  # three seeds that chose nothing, for its trend with the width
                assert plan(name, "laptop").seeds == [6, 7, 8] and plan(name, "full").seeds == list(range(6, 11))
                assert laptop.checkpoint_every == 250
            else:
                assert plan(name, "laptop").seeds == [0, 1] and plan(name, "full").seeds == [0, 1, 2, 3, 4]
                assert laptop.checkpoint_every == 250


def test_the_wall_time_table_in_the_docstring_is_the_estimate():
    table = {name: (int(runs), int(minutes)) for name, runs, minutes in
             re.findall(r"^    (\w+) +(\d+) +~(\d+) min$", catalog.__doc__, re.M)}
    assert set(table) == {name for name, e in EXPERIMENTS.items() if e.trains}
    for name, (runs, minutes) in table.items():
        p = plan(name, "laptop")
        points = expand_grid(p.base, p.grid, p.seeds)
        assert (len(points), round(estimate_seconds([cfg for _, cfg in points]) / 60)) == (runs, minutes), name


# -- end to end at the tiny scale -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sweeps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("experiments")
    todo = []
    for name in PRETRAINED:
        p = plan(name, "tiny")
        points = expand_grid(p.base, p.grid, p.seeds)
        prepare_sweep_dir(root / name, p.base, p.grid, p.seeds, [n for n, _ in points])
        todo += [(str(root / name / "runs" / n), cfg.to_dict(), 1) for n, cfg in points]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_one, *zip(*todo)))
    assert [r for r in results if r["status"] != "finished"] == []
    return root


def check_outputs(sweep_dir: Path, findings: dict, name: str) -> None:
    """findings.json, the figure and report.html are written, hold the finding, and agree."""
    assert json.loads((sweep_dir / "findings.json").read_text()) == json.loads(json.dumps(findings))
    assert findings["experiment"] == name and findings["scale"] == "tiny"
    assert findings["claim"] == EXPERIMENTS[name].claim and findings["run_at"].startswith("tiny scale")
    assert EXPECTED_STATISTICS[name] <= set(findings["statistics"])
    for stat in findings["statistics"].values():
        assert stat["description"]
        for entry in stat.get("per_setting", []):
            reached = [v for v in entry["values"] if v is not None]
            assert entry["n"] == len(entry["values"]) and entry["n_reached"] == len(reached)
            assert (entry["mean"] is None) == (not reached)
            if reached:
                assert entry["min"] <= entry["mean"] <= entry["max"]
    assert isinstance(findings["verdict"], str) and findings["verdict"]
    assert findings["figures"] == [f"{name}.png"]
    assert (sweep_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (sweep_dir / "report.html").read_text()
    assert html.escape(findings["verdict"]) in page and html.escape(findings["claim"]) in page
    assert page.count("data:image/png;base64,") >= 1
    assert (sweep_dir / "table.csv").is_file()


@pytest.mark.parametrize("name", PRETRAINED)
def test_experiment_end_to_end_at_tiny_scale(tiny_sweeps, name):
    outcome = run_experiment(name, "tiny", tiny_sweeps / name, quiet=True)
    write_sweep_report(outcome.sweep_dir, outcome.rows, findings=outcome.findings)
    assert outcome.results and all(r["status"] == "skipped" for r in outcome.results)  # trained by the fixture
    findings = outcome.findings
    check_outputs(tiny_sweeps / name, findings, name)
    key, settings = PRIMARY[name]
    entries = findings["statistics"][key]["per_setting"]
    assert len(entries) == settings and len({e["label"] for e in entries}) == settings
    # one value per run (holes: per run and held-out region: 2 runs of 2 squares, the cross, the band)
    assert sum(e["n"] for e in entries) == (len(outcome.results) if name != "holes" else 2 * 2 + 1 + 1)
    if name in ("phases", "digits"):  # the verdict follows the statistics, whatever 12 steps learned
        reached_c = sum(v is not None for e in findings["statistics"]["first_step_C"]["per_setting"] for v in e["values"])
        order = next(p for p in findings["predictions"] if p["name"] == "order")
        assert (order["verdict"] == "not measurable") == (reached_c < stats.MIN_MEASURED_RUNS)
        assert findings["verdict"].split(":")[0] == stats.overall(findings["predictions"])
    if name == "imbalance":  # per FiLM 2D lattice with dx < dy, and per axes lattice; 12 steps resolve nothing
        assert [p["name"] for p in findings["predictions"]] == ["coupled (dx 1, dy 4)", "axes bias (dx 1, dy 4)"]
        assert findings["verdict"].startswith("not measurable")
        assert all(p["verdict"] == "not measurable" for p in findings["predictions"])
        labels = {e["label"] for e in findings["statistics"]["steps_to_y_accuracy_0.5"]["per_setting"]}
        assert labels == {"dx 2, dy 2", "dx 1, dy 4", "y only, dy 1", "y only, dy 4", "dx 1, dy 4, axes",
                          "y only, dy 4, axes"}
    if name == "stripes":
        needed = findings["statistics"]["data_for_accuracy_0.6"]["value"]
        assert {(n["arm"], n["N"]) for n in needed} == {("bumps", 16), ("bumps+stripes", 16), ("stripes", 16),
                                                        ("stripes + 4 rim 2D", 16), ("bumps", 8), ("bumps+stripes", 8)}
    if name == "ablation":
        assert {e["label"] for e in findings["statistics"]["final_accuracy"]["per_setting"]} == {
            "baseline", "attention_resolutions=[]", "skips=False", "label_encoding=mlp"}


def test_density_from_scratch_through_the_cli_then_resumed(tmp_path, capsys):
    sweep_dir = tmp_path / "density"
    args = ["sweep", "density", "--scale", "tiny", "--sweep-dir", str(sweep_dir), "--workers", "2", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    findings = json.loads((sweep_dir / "findings.json").read_text())
    check_outputs(sweep_dir, findings, "density")
    assert f"density (tiny scale): {findings['verdict']}" in out
    assert json.loads((sweep_dir / "experiment.json").read_text())["experiment"] == "density"
    assert len(list((sweep_dir / "runs").iterdir())) == 2
    increments = [e["label"] for e in findings["statistics"]["steps_to_phase_C"]["per_setting"]]
    assert sorted(increments) == ["increment 1", "increment 2"]
    before = (sweep_dir / "findings.json").read_text()
    assert main(["sweep", "--resume", str(sweep_dir), "--quiet"]) == 0  # finished runs skipped, analyzed again
    assert (sweep_dir / "findings.json").read_text() == before
    assert findings["verdict"] in capsys.readouterr().out


def test_percolation_through_the_cli(tmp_path, capsys):
    sweep_dir = tmp_path / "percolation"
    assert main(["sweep", "percolation", "--scale", "tiny", "--sweep-dir", str(sweep_dir)]) == 0
    findings = json.loads((sweep_dir / "findings.json").read_text())
    check_outputs(sweep_dir, findings, "percolation")
    p = plan("percolation", "tiny")
    assert len((sweep_dir / "table.csv").read_text().splitlines()) == 1 + 2 * 2 * 3 * 2  # sigma x threshold x lambda x seed
    for o in findings["statistics"]["onset_lambda"]["value"]:  # the onsets, recomputed here per subsample seed
        per_seed = []
        for s in p.params["seeds"]:
            shares = [cluster_row(p.base.with_overrides({"data.sigma": o["sigma"], "data.keep_fraction": lam,
                                                         "data.subsample_seed": s}).data, o["threshold"])
                      ["largest_cluster_share"] for lam in p.params["lambdas"]]
            per_seed.append(onset(p.params["lambdas"], shares))
        assert o["per_seed"] == per_seed
        if None not in per_seed:
            assert o["median"] == float(np.median(per_seed)) and o["range"] == [min(per_seed), max(per_seed)]
    assert any(o["median"] is not None for o in findings["statistics"]["onset_lambda"]["value"])
    # geometry alone cannot test the claim: the verdict says so rather than one that cannot fail
    assert [pr["verdict"] for pr in findings["predictions"]] == ["not measurable"]
    assert main(["sweep", "percolation", "--scale", "tiny", "--sweep-dir", str(sweep_dir)]) == 0  # rerun: same dir


@pytest.mark.parametrize("args, flag", [
    (["sweep", "density", "--grid", "data.dx=1,2"], "--grid"),
    (["sweep", "tiny", "--scale", "laptop"], "--scale"),
    (["sweep", "phasez"], "PRESET"),
    (["sweep", "density", "--scale", "huge"], "--scale"),
    (["sweep", "density", "--set", "data.sigma=0"], "data.sigma"),
])
def test_bad_experiment_input_is_one_line_and_exit_2(tmp_path, capsys, args, flag):
    assert main(args + ["--sweep-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("diffrep: error:") and flag in err
    assert not (tmp_path / "s").exists()


def test_percolation_refuses_a_folder_that_holds_something_else(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["sweep", "percolation", "--scale", "tiny", "--sweep-dir", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- verdict rules on synthetic sweeps ------------------------------------------------------

STEPS = list(range(0, 4001, 250))


def synthetic(runs: list[tuple[str, dict, dict]]) -> list[dict]:
    """Rows like sweep.aggregate's: per run (name, overrides of the default preset, metrics(step) ->
    dict) and checkpoint step, the run's flattened config and that step's metrics."""
    rows = []
    for run, overrides, metrics in runs:
        config = flatten_config(make_config("default", overrides))
        rows += [{"run": run, "name": run, "step": step, **config, **metrics(step)} for step in STEPS]
    return rows


def phase_track(c_step, b_step=250, layer="layer4", accurate_step="with C"):
    """A at 0, B from b_step, C from c_step (None: never); generation several bumps in A, one wrong bump
    in B, accurate (0.95) from accurate_step (by default with C; None: never)."""
    accurate_step = c_step if accurate_step == "with C" else accurate_step

    def metrics(step):
        phase = "A" if step < b_step else "C" if c_step is not None and step >= c_step else "B"
        accurate = accurate_step is not None and step >= accurate_step
        return {f"phase.{layer}": phase, "score.train.accuracy": 0.95 if accurate else 0.0,
                "score.train.frac_accurate": 0.95 if accurate else 0.0,
                "score.train.frac_several": 1.0 if phase == "A" and not accurate else 0.0,
                "score.train.frac_wrong": 0.0 if phase == "A" and not accurate else 0.05 if accurate else 1.0,
                "score.train.frac_none": 0.0}
    return metrics


def context(tmp_path, name, **params):
    p = plan(name, "laptop")
    return Context(out=tmp_path, base=p.base, params={**p.params, **params}, name=name)


def test_steps_to_phase_c_is_the_first_checkpoint_labelled_c():
    # One definition, used by every report: a run in C from its initialization is in C at step 0.
    rows = [{"run": r, "step": s, "phase.layer4": label} for r, labels in
            [("from_init", "CCBC"), ("trained", "ABCC"), ("never", "ABBB")] for s, label in zip((0, 1, 2, 3), labels)]
    assert time_to(rows, "phase.layer4", "C") == {"from_init": 0, "trained": 2, "never": None}


# Density: per increment, the steps to phase C of 8 seeds (None: never reached).
FASTER_WHEN_DENSER = {0.25: [500, 750, 500, 750, 1000, 500, 750, 500],
                      0.5: [1250, 1000, 1500, 1250, 1000, 1500, 1250, 1250],
                      1.0: [2000, 2500, None, 2250, 2000, 2750, 2500, None]}


@pytest.mark.parametrize("times, verdict", [
    (FASTER_WHEN_DENSER, "reproduced"),
    ({0.25: FASTER_WHEN_DENSER[1.0], 0.5: FASTER_WHEN_DENSER[0.5], 1.0: FASTER_WHEN_DENSER[0.25]}, "contradicted"),
    ({inc: [500, 1000, 1500, 2000, 500, 1000, 1500, 2000] for inc in (0.25, 0.5, 1.0)}, "not measurable"),  # no trend
    ({0.25: [500] * 2 + [None] * 6, 0.5: [1000] * 2 + [None] * 6, 1.0: [None] * 8}, "not measurable"),  # 4 reached C
    ({inc: [None] * 8 for inc in (0.25, 0.5, 1.0)}, "not measurable"),
])
def test_density_verdict_is_computed_from_a_permutation_test_of_the_trend(tmp_path, times, verdict):
    runs = [(f"{inc}-{seed}", {"data.dx": inc, "data.dy": inc, "training.seed": seed}, phase_track(t))
            for inc, seeds in times.items() for seed, t in enumerate(seeds)]
    result = density.analyze_density(synthetic(runs), context(tmp_path, "density"))
    steps = next(p for p in result["predictions"] if p["name"] == "steps")
    assert steps["verdict"] == verdict and result["verdict"].startswith(stats.overall(result["predictions"]))
    entry = {e["label"]: e for e in result["statistics"]["steps_to_phase_C"]["per_setting"]}["increment 1"]
    assert entry["values"] == list(times[1.0]) and entry["n_reached"] == sum(t is not None for t in times[1.0])
    reached = [t for t in times[1.0] if t is not None]
    assert entry["mean"] == (sum(reached) / len(reached) if reached else None)  # a never-reached seed is not averaged
    # epochs: steps x batch 32 / the training images (a lattice of increment 1 over [0, 32]: 33 x 33)
    in_epochs = {e["label"]: e for e in result["statistics"]["epochs_to_phase_C"]["per_setting"]}["increment 1"]
    assert in_epochs["values"] == [None if t is None else pytest.approx(t * 32 / 33 ** 2) for t in times[1.0]]
    assert (tmp_path / "density.png").is_file()


def test_trend_verdicts_on_synthetic_tables():
    settings = [x for x in (0.25, 0.5, 1.0) for _ in range(8)]
    rising = [t for x in (0.25, 0.5, 1.0) for t in FASTER_WHEN_DENSER[x]]
    test = stats.trend_test(settings, rising)
    assert test["rho"] > 0.8 and test["p_greater"] < 0.001 and test["p_less"] > 0.99
    assert 0 < test["interval"][0] < test["rho"] < test["interval"][1] <= 1
    assert stats.trend_verdict(test, +1, "C")["verdict"] == stats.REPRODUCED
    assert stats.trend_verdict(test, -1, "C")["verdict"] == stats.CONTRADICTED
    shuffled = [rising[i] for i in np.random.default_rng(0).permutation(len(rising))]  # the same times, no trend
    assert stats.trend_verdict(stats.trend_test(settings, shuffled), +1, "C")["verdict"] == stats.NOT_MEASURABLE
    few = [t if i < 5 else None for i, t in enumerate(rising)]  # 5 reached: fewer than MIN_MEASURED_RUNS
    assert stats.trend_verdict(stats.trend_test(settings, few), +1, "C")["reason"].startswith("5 of 24 runs reached C")
    assert stats.trend_test([1.0, 1.0, 1.0], [1, 2, 3])["rho"] is None  # one setting
    assert stats.trend_verdict(stats.trend_test([1.0] * 8, rising[:8]), +1, "C")["verdict"] == stats.NOT_MEASURABLE


def test_a_shift_between_two_groups_needs_enough_runs_to_be_resolved():
    two = stats.shift_test([3000, 3250], [500, 750])  # every run later, as the earlier rule counted "later"
    assert two["p_value"] == pytest.approx(1 / 3) and stats.shift_word(two).startswith("not resolved")
    five = stats.shift_test([3000, 3250, 2750, None, 3500], [500, 750, 1000, 500, 750])
    assert five["rank_shift"] > 0 and five["p_value"] < 0.05 and stats.shift_word(five).startswith("later")
    assert stats.shift_word(stats.shift_test([500, 750, 1000, 500, 750], [3000, 3250, 2750, None, 3500])).startswith("sooner")
    assert stats.shift_test([None, None], [None, None])["p_value"] == 1.0  # all tied: nothing to resolve


def test_a_paired_difference_needs_enough_pairs_with_a_sign():
    up = stats.paired_test([0.1, 0.2, 0.3, 0.05, 0.4, 0.2])  # 6 of 6 above 0: the smallest sign-flip p, 1/64
    assert up["p_greater"] == pytest.approx(1 / 64) and up["p_less"] == 1.0 and up["interval"][0] > 0
    assert stats.paired_verdict(up, "pairs")["verdict"] == stats.REPRODUCED
    down = stats.paired_test([-v for v in [0.1, 0.2, 0.3, 0.05, 0.4, 0.2]])
    assert stats.paired_verdict(down, "pairs")["verdict"] == stats.CONTRADICTED
    mixed = stats.paired_verdict(stats.paired_test([0.1, -0.1, 0.2, -0.2, 0.0, 0.05]), "pairs")
    assert mixed["verdict"] == stats.NOT_MEASURABLE and mixed["reason"].endswith("neither above nor below 0 is resolved")
    assert stats.paired_test([0.0] * 6)["p_greater"] is None  # no sign to flip
    five = stats.paired_verdict(stats.paired_test([0.1, 0.2, 0.3, 0.05, 0.4]), "pairs")
    assert five == {"verdict": stats.NOT_MEASURABLE, "reason": "5 pairs (fewer than 6)"}


def axis_track(t_x, t_y, additive=None):
    def metrics(step):
        out = {"score.train.x_accuracy": 0.9 if t_x is not None and step >= t_x else 0.0,
               "score.train.y_accuracy": 0.9 if t_y is not None and step >= t_y else 0.0}
        if additive is not None:
            out.update({"probe.layer4.additive_share": additive if step else 0.2, "probe.layer4.additive_share_chance": 0.1})
        return out
    return metrics


ONE_D = {"data.x_min": 16.0, "data.x_max": 16.0, "probe.during_training": False}


@pytest.mark.parametrize("dense_alone, sparse_alone, x_2d, y_2d, verdict", [
    (1500, 1500, 500, 500, "not measurable"),  # y alone at dy 4 is no slower than at dy 0.1: the control fails
    (250, 1500, 500, 500, "reproduced"),  # y rides on the dense x: sooner than alone
    (250, 1500, 500, 1500, "contradicted"),  # y on its own clock: as late as alone, and after x
    (250, 1500, 1500, 1500, "not measurable"),  # neither sooner than alone nor after x
])
def test_imbalance_verdict_needs_the_1d_control_then_the_sparse_axis_sooner_than_alone(
        tmp_path, dense_alone, sparse_alone, x_2d, y_2d, verdict):
    seeds = range(5)  # each seed one checkpoint (250 steps) later than the one before
    runs = ([(f"1d-dense-{s}", {**ONE_D, "data.dy": 0.1, "training.seed": s}, axis_track(0, dense_alone + 250 * s))
             for s in seeds]
            + [(f"1d-sparse-{s}", {**ONE_D, "data.dy": 4.0, "training.seed": s}, axis_track(0, sparse_alone + 250 * s))
               for s in seeds]
            + [(f"2d-{s}", {"data.dx": 0.1, "data.dy": 4.0, "training.seed": s}, axis_track(x_2d + 250 * s, y_2d + 250 * s, 0.6))
               for s in seeds])
    result = imbalance.analyze_imbalance(synthetic(runs), context(tmp_path, "imbalance"))
    (prediction,) = result["predictions"]
    assert prediction["name"] == "coupled (dx 0.1, dy 4)" and prediction["verdict"] == verdict, prediction
    assert result["verdict"].startswith(verdict)
    y = {e["label"]: e["values"] for e in result["statistics"]["steps_to_y_accuracy_0.5"]["per_setting"]}
    assert y["y only, dy 4"] == [sparse_alone + 250 * s for s in seeds]  # every seed's onset
    gain = {e["label"]: e["values"] for e in result["statistics"]["additive_share_gain"]["per_setting"]}
    assert gain == {"dx 0.1, dy 4": [pytest.approx(0.4)] * 5}  # 2D only, against the run's own step 0


@pytest.mark.parametrize("film_2d, axes_alone, axes_2d, verdict", [
    (1500, 250, 500, "reproduced"),  # FiLM's y pays 1250 steps for the 2D lattice, axes' 250
    (500, 250, 1500, "contradicted"),  # axes' y pays more
    (1500, 500, 1750, "not measurable"),  # both pay 1250
])
def test_imbalance_axes_bias_compares_the_sparse_axis_2d_penalty_with_film(tmp_path, film_2d, axes_alone, axes_2d, verdict):
    seeds, axes = range(5), {"model.conditioning": "axes"}
    lattice = {"data.dx": 0.1, "data.dy": 4.0}
    runs = ([(f"1d-film-{s}", {**ONE_D, "data.dy": 4.0, "training.seed": s}, axis_track(0, 250 + 250 * s)) for s in seeds]
            + [(f"1d-axes-{s}", {**ONE_D, **axes, "data.dy": 4.0, "training.seed": s}, axis_track(0, axes_alone + 250 * s))
               for s in seeds]
            + [(f"2d-film-{s}", {**lattice, "training.seed": s}, axis_track(250, film_2d + 250 * s)) for s in seeds]
            + [(f"2d-axes-{s}", {**lattice, **axes, "training.seed": s}, axis_track(250, axes_2d + 250 * s)) for s in seeds])
    result = imbalance.analyze_imbalance(synthetic(runs), context(tmp_path, "imbalance"))
    coupled, bias = result["predictions"]
    assert coupled["name"] == "coupled (dx 0.1, dy 4)" and coupled["verdict"] == "not measurable"  # no denser 1D control
    assert bias["name"] == "axes bias (dx 0.1, dy 4)" and bias["verdict"] == verdict, bias
    y = {e["label"]: e["values"] for e in result["statistics"]["steps_to_y_accuracy_0.5"]["per_setting"]}
    assert y["dx 0.1, dy 4, axes"] == [axes_2d + 250 * s for s in seeds] and set(y) == {
        "y only, dy 4", "y only, dy 4, axes", "dx 0.1, dy 4", "dx 0.1, dy 4, axes"}


def test_imbalance_axes_bias_needs_its_controls(tmp_path):
    runs = [(f"2d-axes-{s}", {"data.dx": 0.1, "data.dy": 4.0, "model.conditioning": "axes", "training.seed": s},
             axis_track(250, 500)) for s in range(5)]
    (bias,) = imbalance.analyze_imbalance(synthetic(runs), context(tmp_path, "imbalance"))["predictions"]
    assert bias["verdict"] == "not measurable" and bias["reason"] == "no dx 0.1, dy 4; y only, dy 4, axes; y only, dy 4 in the sweep"


def test_holes_verdict_per_region_family_and_width(tmp_path):
    squares = [{"kind": "square", "width": 2, "x": 16, "y": 16}, {"kind": "square", "width": 2, "x": 1, "y": 16}]
    band = [{"kind": "band", "width": 8, "x": 16, "y": 16}]

    def scores(train, held, loss=1.0):
        return lambda step: {"score.train.accuracy": train, "score.train.denoise_loss": 0.1,
                             **{f"score.heldout_{i}.accuracy": h for i, h in enumerate(held)},
                             **{f"score.heldout_{i}.denoise_loss": 0.1 * loss for i in range(len(held))}}

    runs = [("sq0", {"data.holdout": squares, "training.seed": 0}, scores(0.9, [0.85, 0.2], 2.0)),
            ("sq1", {"data.holdout": squares, "training.seed": 1}, scores(0.8, [0.8, 0.3], 2.0)),
            ("band", {"data.holdout": band}, scores(0.1, [0.0]))]
    result = holes.analyze_holes(synthetic(runs), context(tmp_path, "holes"))
    words = dict(part.split(": ", 1) for part in result["verdict"].removeprefix(
        "held-out / in-distribution accuracy: ").split("; "))
    assert words["interior square W=2"].startswith("interpolates")  # (0.85 / 0.9 + 0.8 / 0.8) / 2 = 0.97
    assert words["edge square W=2"].startswith("fails")  # (0.22 + 0.375) / 2 = 0.30
    assert words["band W=8"] == "not reached"  # in-distribution accuracy 0.1 < 0.2: nothing learned
    loss = {e["label"]: e["mean"] for e in result["statistics"]["heldout_to_train_denoise_loss"]["per_setting"]}
    assert loss["interior square W=2"] == pytest.approx(2.0)


def band_runs(held_by_width: dict, seeds=range(3), train=0.9):
    """Runs holding out one band each, W -> held-out accuracy per seed."""
    scores = lambda held: lambda step: {"score.train.accuracy": train, "score.train.denoise_loss": 0.1,  # noqa: E731
                                        "score.heldout_0.accuracy": held, "score.heldout_0.denoise_loss": 0.1}
    return [(f"band{w}-{s}", {"data.holdout": [{"kind": "band", "width": w, "x": 16, "y": 16}], "training.seed": s},
             scores(held[i])) for w, held in held_by_width.items() for i, s in enumerate(seeds)]


@pytest.mark.parametrize("held_by_width, expected", [
    # the wider the band, the worse it is filled in, in every seed: the follow-up's claim
    ({1.0: [0.9, 0.85, 0.88], 3.5: [0.7, 0.6, 0.75], 8.0: [0.1, 0.05, 0.2]}, "reproduced"),
    # wider bands filled in better
    ({1.0: [0.1, 0.05, 0.2], 3.5: [0.7, 0.6, 0.75], 8.0: [0.9, 0.85, 0.88]}, "contradicted"),
    # no trend: the ratios interleave across widths
    ({1.0: [0.9, 0.5, 0.7], 3.5: [0.85, 0.55, 0.72], 8.0: [0.88, 0.52, 0.69]}, "not measurable"),
])
def test_holes_trend_with_the_width(tmp_path, held_by_width, expected):
    result = holes.analyze_holes(synthetic(band_runs(held_by_width)), context(tmp_path, "holes"))
    (band,) = result["predictions"]
    assert band["name"] == "band" and band["verdict"] == expected
    assert result["verdict"].startswith(f"{expected}: bands: {expected}")
    assert result["statistics"]["trend_ratio_band"]["n"] == 9


def test_holes_trend_needs_runs_that_learned(tmp_path):
    # the two runs at W = 8 learned nothing in distribution: the runs left hold out one width only
    runs = band_runs({1.0: [0.9, 0.8]}, seeds=range(2)) + band_runs({8.0: [0.0, 0.0]}, seeds=range(2), train=0.1)
    (band,) = holes.analyze_holes(synthetic(runs), context(tmp_path, "holes"))["predictions"]
    assert band["verdict"] == "not measurable" and "fewer than two widths" in band["reason"]
    # learned at two widths, but by 4 runs: fewer than stats.MIN_MEASURED_RUNS
    (band,) = holes.analyze_holes(synthetic(band_runs({1.0: [0.9, 0.8], 8.0: [0.1, 0.2]}, seeds=range(2))),
                                  context(tmp_path, "holes"))["predictions"]
    assert band["verdict"] == "not measurable" and band["reason"].startswith("4 of 4 runs")


@pytest.mark.parametrize("tracks, expected", [
    # eight seeds A -> B -> C, accurate 500 steps after C: the papers' claims hold
    ([dict(c_step=1000, accurate_step=1500)] * 8, {"order": "reproduced", "agreement": "reproduced", "lag": "reproduced"}),
    # accurate generation 500 steps before the ordered code, in every seed
    ([dict(c_step=1500, accurate_step=1000)] * 8, {"order": "reproduced", "lag": "contradicted"}),
    # B skipped (C from the first checkpoint after A) in every seed
    ([dict(c_step=250)] * 8, {"order": "contradicted"}),
    # half the seeds never leave B, the others are accurate before C: the lag spans 0 for too few runs
    ([dict(c_step=None, accurate_step=None)] * 4 + [dict(c_step=2000, accurate_step=1500)] * 4,
     {"order": "not measurable", "lag": "not measurable"}),
    # two seeds: too few runs reach C to decide anything about order or lag
    ([dict(c_step=1000)] * 2, {"order": "not measurable", "lag": "not measurable"}),
    # accurate from step 1000 and never ordered, in every seed: the lag is at most 1000 - 4250 < 0
    ([dict(c_step=None, accurate_step=1000)] * 8, {"order": "not measurable", "lag": "contradicted"}),
    # six seeds accurate 500 steps after C, two accurate without C: no longer reproduced, not contradicted
    ([dict(c_step=1000, accurate_step=1500)] * 6 + [dict(c_step=None, accurate_step=1000)] * 2,
     {"lag": "not measurable"}),
])
def test_phases_predictions_and_their_verdicts(tmp_path, tracks, expected):
    runs = [(f"seed{i}", {"training.seed": i}, phase_track(**t)) for i, t in enumerate(tracks)]
    result = phases_experiment.analyze_phases(synthetic(runs), context(tmp_path, "phases"))
    found = {p["name"]: p["verdict"] for p in result["predictions"]}
    assert {k: found[k] for k in expected} == expected
    assert result["verdict"].split(":")[0] == stats.overall(result["predictions"])
    bounds = [v for e in result["statistics"]["lag_bound_accurate_before_c"]["per_setting"] for v in e["values"]]
    assert bounds == [1000 - (STEPS[-1] + 250) if t.get("c_step", 0) is None and t.get("accurate_step") is not None
                      else None for t in tracks]
    lag = result["statistics"]["lag_c_to_accurate"]
    values = [v for e in lag["per_setting"] for v in e["values"] if v is not None]
    if values:
        median, low, high = lag["median_interval"]
        assert low <= median <= high and median == statistics.median(values)


@pytest.mark.parametrize("follows, verdict", [("increment", "reproduced"), ("sigma", "contradicted"),
                                               ("neither", "not measurable"), ("never reached", "not measurable")])
def test_sigma_verdict_compares_the_two_trends_with_a_bootstrap_interval(tmp_path, follows, verdict):
    def steps(dx, sigma, seed):
        jitter = 250 * (seed % 2)
        return {"increment": int(dx * 2000) + jitter, "sigma": int(2000 / sigma) + jitter,
                "neither": 1000 + 250 * (seed % 4), "never reached": None}[follows]

    runs = [(f"{dx}-{sigma}-{seed}", {"data.dx": dx, "data.dy": dx, "data.sigma": sigma, "training.seed": seed},
             phase_track(steps(dx, sigma, seed))) for dx in (0.5, 1.0) for sigma in (1.0, 2.0) for seed in range(4)]
    result = sigma.analyze_sigma(synthetic(runs), context(tmp_path, "sigma"))
    (prediction,) = result["predictions"]
    assert prediction["verdict"] == verdict and result["verdict"].startswith(verdict)
    rho = {k: result["statistics"][f"trend_steps_to_phase_C_{k}"]["rho"] for k in ("increment", "sigma")}
    if follows == "increment":
        assert rho["increment"] > 0.8 and rho["sigma"] == pytest.approx(0.0)
    if follows == "sigma":
        assert rho["sigma"] < -0.8 and rho["increment"] == pytest.approx(0.0)


def test_ablation_verdict_against_the_baseline(tmp_path):
    def track(c_step):
        return lambda step: {**phase_track(c_step)(step), **phase_track(c_step + 250, layer="bottleneck")(step)}

    base = {"probe.layers": ["layer4", "bottleneck"]}
    runs = [(f"b{seed}", {**base, "training.seed": seed}, track(1000 + 250 * (seed % 2))) for seed in range(5)]
    runs += [(f"s{seed}", {**base, "model.skips": False, "training.seed": seed}, track(3000 + 250 * (seed % 2)))
             for seed in range(5)]
    runs += [(f"m{seed}", {**base, "model.label_encoding": "mlp", "training.seed": seed}, track(500)) for seed in range(5)]
    runs += [("w0", {**base, "model.widths": [8, 16, 32]}, track(3000))]  # one seed against five: never resolved
    ctx = context(tmp_path, "ablation")
    result = ablation.analyze_ablation(synthetic(runs), ctx)
    assert "skips=False: phase C later (p = " in result["verdict"]
    assert "label_encoding=mlp: phase C sooner (p = " in result["verdict"]
    assert "widths=[8, 16, 32]: phase C not resolved" in result["verdict"]
    assert "additive" not in result["verdict"]  # not a measurement on the probe the phase rule reads
    assert "bottleneck reaches phase C before layer4 in 0 of 16 runs" in result["verdict"]


def test_stripes_verdict_on_the_2d_images_needed(tmp_path):
    p = plan("stripes", "tiny")
    key = "+".join(catalog.STRIPES_KEYS)
    accuracy = {("bumps", 0.5): 0.3, ("bumps", 1.0): 0.7, ("bumps+stripes", 0.5): 0.65, ("bumps+stripes", 1.0): 0.9}
    runs = []
    for values in catalog.stripes_grid([(k, 0, 16, lam) for k, lam in accuracy])[key]:
        point = dict(zip(catalog.STRIPES_KEYS, values))
        acc = accuracy[(point["data.kind"], point["data.keep_fraction"])]
        runs.append((f"{point['data.kind']}-{point['data.keep_fraction']}", {**point, "scoring.frame_grid": True},
                     lambda step, a=acc: {"score.frame.accuracy": a}))
    rows = synthetic(runs)
    result = stripes.analyze_stripes(rows, Context(out=tmp_path, base=p.base, params=p.params, name="stripes"))
    needed = {n["arm"]: n for n in result["statistics"]["data_for_accuracy_0.6"]["value"]}
    assert needed["bumps"]["lambda"] == 1.0 and needed["bumps+stripes"]["lambda"] == 0.5
    assert needed["bumps+stripes"]["images_2d"] < needed["bumps"]["images_2d"]
    assert "; N=16: bumps + stripes needs fewer 2D images" in result["verdict"]  # described beside the predictions


def stripes_runs(accuracy, seeds=(0, 1)) -> list[dict]:
    """Rows of the laptop grid's four arms at N = 16, lambda 0.1 / 0.3 / 1, with final frame accuracy
    accuracy[arm] + 0.05 * seed at every lambda."""
    key = "+".join(catalog.STRIPES_KEYS)
    arms = [("bumps", 0), ("bumps+stripes", 0), ("stripes", 0), ("stripes", 8)]
    runs = []
    for values in catalog.stripes_grid([(k, r, 16, lam) for k, r in arms for lam in (0.1, 0.3, 1.0)])[key]:
        point = dict(zip(catalog.STRIPES_KEYS, values))
        arm = stripes.stripes_arm(point)
        runs += [(f"{arm}-{point['data.keep_fraction']}-{seed}", {**point, "scoring.frame_grid": True, "training.seed": seed},
                  lambda step, a=accuracy[arm] + 0.05 * seed: {"score.frame.accuracy": a}) for seed in seeds]
    return synthetic(runs)


@pytest.mark.parametrize("accuracy, seeds, efficiency, composition", [
    ({"bumps": 0.5, "bumps+stripes": 0.7, "stripes": 0.1, "stripes + 8 rim 2D": 0.6}, (0, 1), "reproduced", "reproduced"),
    ({"bumps": 0.9, "bumps+stripes": 0.7, "stripes": 0.6, "stripes + 8 rim 2D": 0.1}, (0, 1), "contradicted", "contradicted"),
    ({"bumps": 0.9, "bumps+stripes": 0.9, "stripes": 0.1, "stripes + 8 rim 2D": 0.6}, (0, 1), "not measurable", "reproduced"),
    ({"bumps": 0.5, "bumps+stripes": 0.7, "stripes": 0.1, "stripes + 8 rim 2D": 0.6}, (0,), "not measurable", "not measurable"),
])
def test_stripes_predictions_are_paired_tests_of_the_arms(tmp_path, accuracy, seeds, efficiency, composition):
    result = stripes.analyze_stripes(stripes_runs(accuracy, seeds), context(tmp_path, "stripes"))
    decided = {p["name"]: p for p in result["predictions"]}
    assert (decided["data efficiency"]["verdict"], decided["composition"]["verdict"]) == (efficiency, composition)
    assert result["verdict"].startswith(stats.overall(result["predictions"]) + ": data efficiency: " + efficiency)
    gain = result["statistics"]["data_efficiency_gain"]
    assert gain["n"] == 3 * len(seeds) and gain["median"] == pytest.approx(accuracy["bumps+stripes"] - accuracy["bumps"])
    if len(seeds) == 1:
        assert decided["composition"]["reason"] == "3 pairs of runs (same N, lambda and seed) (fewer than 6)"
    elif efficiency == "not measurable":
        assert decided["data efficiency"]["reason"].endswith("every difference is 0")


def test_stripes_figure_draws_every_arm_at_every_size_it_ran(tmp_path, monkeypatch):
    # The laptop grid runs the stripes arms at N = 16 only and bumps at 16 and 32: a panel drawn at
    # one N would leave arms out.
    import matplotlib.pyplot as plt

    p = plan("stripes", "tiny")
    key = "+".join(catalog.STRIPES_KEYS)
    accuracy = {("bumps", 16, 0.5): 0.3, ("bumps", 16, 1.0): 0.7, ("stripes", 16, 1.0): 0.4, ("bumps", 8, 1.0): 0.9}
    runs = []
    for values in catalog.stripes_grid([(k, 0, n, lam) for k, n, lam in accuracy])[key]:
        point = dict(zip(catalog.STRIPES_KEYS, values))
        acc = accuracy[(point["data.kind"], point["data.image_size"], point["data.keep_fraction"])]
        runs.append((f"{point['data.kind']}-{point['data.image_size']}-{point['data.keep_fraction']}",
                     {**point, "scoring.frame_grid": True}, lambda step, a=acc: {"score.frame.accuracy": a}))
    drawn = {}
    monkeypatch.setattr(common, "save_panels", lambda path, title, drawers: drawn.setdefault("drawers", drawers))
    stripes.analyze_stripes(synthetic(runs), Context(out=tmp_path, base=p.base, params=p.params, name="stripes"))
    fig, ax = plt.subplots()
    drawn["drawers"][0](ax)
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
             for line in ax.get_lines() if not line.get_label().startswith("_")}
    plt.close(fig)
    assert lines == {"bumps, N=8": ([1.0], [0.9]), "bumps, N=16": ([0.5, 1.0], [0.3, 0.7]), "stripes, N=16": ([1.0], [0.4])}


@pytest.mark.parametrize("final, verdict", [(0.6, "reproduced"), (0.2, "contradicted"), (None, "not measurable")])
def test_torus_verdict_from_additive_share_against_step_0_and_chance(tmp_path, final, verdict):
    """Step 0 at 0.3 and chance at 0.12: a final share of 0.6 is a gain, 0.2 a loss; a run set whose
    final shares straddle the step-0 value decides nothing."""
    def track(end):
        return lambda step: {"probe.layer4.additive_share": 0.3 if step == 0 else end,
                             "probe.layer4.additive_share_chance": 0.12, "score.train.accuracy": 0.5}

    ends = [0.55, 0.1, 0.6, 0.05, 0.5] if final is None else [final + 0.01 * s for s in range(5)]
    runs = [(f"p{s}", {"data.periodic": True, "training.seed": s}, track(end)) for s, end in enumerate(ends)]
    runs += [(f"f{s}", {"data.periodic": False, "training.seed": s}, track(0.3)) for s in range(2)]
    result = torus.analyze_torus(synthetic(runs), context(tmp_path, "torus"))
    (prediction,) = result["predictions"]
    assert prediction["verdict"] == verdict and result["verdict"].startswith(verdict)
    gains = {e["label"]: e["values"] for e in result["statistics"]["additive_share_gain"]["per_setting"]}
    assert gains["periodic"] == [pytest.approx(e - 0.3) for e in ends] and gains["not periodic"] == [0.0, 0.0]
    few = torus.analyze_torus(synthetic(runs[:4]), context(tmp_path, "torus"))  # 4 periodic runs: too few
    assert few["predictions"][0]["verdict"] == "not measurable"


def test_agreement_is_not_measurable_when_no_run_changes_phase(tmp_path):
    """Runs that stay in A throughout (as a network that learns no code) are their own shuffle."""
    runs = [(f"r{s}", {"training.seed": s}, phase_track(None, b_step=10 ** 6, accurate_step=None)) for s in range(8)]
    result = phases_experiment.analyze_phases(synthetic(runs), context(tmp_path, "phases"))
    agreement = next(p for p in result["predictions"] if p["name"] == "agreement")
    assert agreement["verdict"] == "not measurable" and agreement["reason"].startswith("no run changes phase"), agreement


@pytest.mark.parametrize("dit_c, dit_accurate, verdict", [
    (500, 1000, "reproduced"),  # every family: A -> B -> C, accurate after C
    (1000, 500, "contradicted"),  # the DiT families generate accurately before their code is ordered
    (None, None, "not measurable"),  # the DiT families never reach C: nothing to decide there
])
def test_families_verdict_needs_order_and_lag_in_every_family(tmp_path, dit_c, dit_accurate, verdict):
    runs = []
    for arch in ("unet", "dit"):
        for objective, sampler, weighting in (("epsilon", "ddim", "min_snr"), ("flow", "euler", "uniform")):
            for seed in range(8):
                c, accurate = (500, 1000) if arch == "unet" else (dit_c, dit_accurate)
                over = {"model.arch": arch, "diffusion.objective": objective, "scoring.sampler": sampler,
                        "training.loss_weighting": weighting, "training.seed": seed}
                step_time = {"step_time": 0.1 if arch == "unet" else 0.15}
                track = phase_track(c, accurate_step=accurate)
                runs.append((f"{arch}-{objective}-{seed}", over, lambda step, track=track, t=step_time: {**track(step), **t}))
    result = families.analyze_families(synthetic(runs), context(tmp_path, "families"))
    seconds = {e["label"]: e for e in result["statistics"]["training_seconds_to_accuracy_0.9"]["per_setting"]}
    assert seconds["unet, flow"]["values"] == [pytest.approx(1000 * 0.1)] * 8  # accuracy 0.95 from step 1000
    assert seconds["dit, flow"]["values"] == [None if dit_accurate is None else pytest.approx(dit_accurate * 0.15)] * 8
    general, *per_family = result["predictions"]
    assert general["verdict"] == verdict and result["verdict"].startswith(verdict)
    assert {p["name"] for p in per_family} == {f"{k} ({a}, {o})" for k in ("order", "agreement", "lag")
                                               for a in ("dit", "unet") for o in ("epsilon", "flow")}
    assert next(p for p in per_family if p["name"] == "lag (unet, flow)")["verdict"] == "reproduced"


@pytest.mark.parametrize("axes_end, verdict", [(0.9, "reproduced"), (0.4, "contradicted"), (None, "not measurable")])
def test_torus_axes_bias_verdict_compares_final_shares_with_film(tmp_path, axes_end, verdict):
    """FiLM runs end at 0.6-0.64: axes runs ending higher in every seed reproduce, lower contradict,
    interleaved decide nothing."""
    def track(end):
        return lambda step: {"probe.layer4.additive_share": 0.3 if step == 0 else end,
                             "probe.layer4.additive_share_chance": 0.12, "score.train.accuracy": 0.5}

    axes_ends = [0.59, 0.65, 0.61, 0.63, 0.605] if axes_end is None else [axes_end + 0.01 * s for s in range(5)]
    runs = [(f"p{s}", {"data.periodic": True, "model.conditioning": "film", "training.seed": s}, track(0.6 + 0.01 * s))
            for s in range(5)]
    runs += [(f"a{s}", {"data.periodic": True, "model.conditioning": "axes", "training.seed": s}, track(end))
             for s, end in enumerate(axes_ends)]
    result = torus.analyze_torus(synthetic(runs), context(tmp_path, "torus"))
    first, bias = result["predictions"]
    assert first["verdict"] == "reproduced"  # the FiLM runs alone decide the first prediction
    assert bias["name"] == "axes bias" and bias["verdict"] == verdict
    assert f"axes bias: {verdict}" in result["verdict"]
    finals = {e["label"]: e["values"] for e in result["statistics"]["final_additive_share"]["per_setting"]}
    assert finals["periodic, axes conditioning"] == [pytest.approx(e) for e in axes_ends]
