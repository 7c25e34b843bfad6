"""Training runs: schedule, determinism, exact resume after SIGKILL / SIGINT, lock, NaN, corruption."""

import os
import subprocess
import sys

import pytest
import torch

from diffrep.config import ConfigError, make_config
from diffrep.data import BumpDataset
from diffrep.rundir import RunDir
from diffrep.run import train
from diffrep.training import Trainer, TrainingDiverged, checkpoint_schedule, learning_rate

TINY = {"training.steps": 40}
TINY_KEEP = 2  # training.keep_resume_state
TIMING_KEYS = {"step_time", "images_per_s"}


def tiny_run(path, **overrides):
    cfg = make_config("tiny", {**TINY, **overrides})
    return train(cfg, RunDir.create(path, cfg), quiet=True)


def final_tensors(run: RunDir) -> dict:
    tensors, _ = run.load_checkpoint(run.checkpoint_steps()[-1])
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema."))}


def assert_resumes_exactly(whole: RunDir, tmp_path) -> None:
    """A copy of a finished run cut back to its previous checkpoint (which keeps its resume state) and
    resumed by `diffrep train --resume` in another process ends as the whole run did."""
    import shutil

    part = RunDir(tmp_path / "part")
    shutil.copytree(whole.path, part.path)
    part.checkpoint_path(whole.checkpoint_steps()[-1]).unlink()
    assert resume(part.path).returncode == 0
    assert_same_run(whole, part)


def deterministic_metrics(run: RunDir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in run.metrics()]


def assert_same_run(a: RunDir, b: RunDir):
    ta, tb = final_tensors(a), final_tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k  # bit for bit
    assert deterministic_metrics(a) == deterministic_metrics(b)
    # At most one line of each kind per step (training, then score, then probe, then the final DDPM
    # score of the last step), in order: nothing duplicated.
    kinds = [(r["step"], 0 if "loss" in r else 1 if "score.sampler" in r else 3 if "final.sampler" in r else 2)
             for r in b.metrics()]
    assert kinds == sorted(set(kinds))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted tiny run that the interrupted ones must reproduce exactly."""
    return tiny_run(tmp_path_factory.mktemp("ref") / "run")


def test_checkpoint_schedule_is_dense_early_and_includes_ends():
    # geomspace(1, 3000, 5) = 1, 7.4, 54.8, 405.4, 3000 -> 1, 7, 55, 405, 3000; every 1000.
    assert checkpoint_schedule(3000, 5, 1000) == [0, 1, 7, 55, 405, 1000, 2000, 3000]
    assert checkpoint_schedule(10, 0, 4) == [0, 4, 8, 10]


def test_learning_rate_warms_up_then_stays_or_decays_to_zero_on_a_cosine():
    constant = make_config("tiny", {"training.lr": 1e-3, "training.steps": 100, "training.warmup_steps": 10}).training
    assert [learning_rate(constant, s) for s in (0, 5, 10, 100)] == pytest.approx([0, 5e-4, 1e-3, 1e-3])
    cosine = make_config("tiny", {"training.lr": 1e-3, "training.steps": 110, "training.warmup_steps": 10,
                                  "training.lr_decay": "cosine"}).training
    assert [learning_rate(cosine, s) for s in (5, 10, 60, 110, 200)] == pytest.approx([5e-4, 1e-3, 5e-4, 0, 0], abs=1e-12)
    lrs = [learning_rate(cosine, s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone after the warm-up


def test_min_snr_changes_the_update_but_logs_the_plain_mse(tmp_path):
    trainers = [Trainer(make_config("tiny", {"training.loss_weighting": w}), RunDir(tmp_path), torch.device("cpu"))
                for w in ("uniform", "min_snr")]
    objectives = [trainer.train_step() for trainer in trainers]  # the same initialization and draws
    logged = [trainer.metrics_record(step_time=1.0)["loss"] for trainer in trainers]
    assert logged[0] == logged[1]  # the logged loss is the unweighted MSE in both
    assert objectives[0] == pytest.approx(logged[0]) and objectives[1] < objectives[0]  # weights <= 1
    head = [dict(trainer.model.named_parameters())["head.2.weight"] for trainer in trainers]
    assert not torch.equal(head[0], head[1])


def test_adam_beta2_reaches_the_optimizer(tmp_path):
    trainers = [Trainer(make_config("tiny", {"training.adam_beta2": b2}), RunDir(tmp_path), torch.device("cpu"))
                for b2 in (0.999, 0.99)]
    weights = lambda trainer: torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    for trainer in trainers:
        trainer.train_step()
    # Adam's bias correction makes the first update independent of beta2 (up to rounding, ~1e-8 here);
    # the later ones are not: two steps on, the weights differ by ~2e-5 (1e-5 after one more step alone
    # was too close to call: 0.77e-5 with one thread on an AMD EPYC, 1.05e-5 with two, 1e-5 the old threshold).
    assert (weights(trainers[0]) - weights(trainers[1])).abs().max() < 1e-6  # steps are 1e-3 (lr)
    for _ in range(2):
        for trainer in trainers:
            trainer.train_step()
    assert (weights(trainers[0]) - weights(trainers[1])).abs().max() > 3e-6
    assert trainers[1].optimizer.param_groups[0]["betas"] == (0.9, 0.99)


def test_resume_follows_the_cosine_schedule_exactly(tmp_path):
    whole = tiny_run(tmp_path / "whole", **{"training.lr_decay": "cosine"})
    logged = {r["step"]: r["lr"] for r in whole.metrics() if "lr" in r}
    assert logged[40] == pytest.approx(0, abs=1e-12) and logged[25] < logged[5]
    assert_resumes_exactly(whole, tmp_path)


def test_run_directory_describes_itself(reference):
    cfg = reference.config()
    assert cfg == make_config("tiny", TINY)
    assert reference.checkpoint_steps() == checkpoint_schedule(40, 3, 10)
    records = [r for r in reference.metrics() if "loss" in r]  # training lines; the others are scores
    assert [r["step"] for r in records] == list(range(5, 41, 5))
    assert {"loss", "lr", "step_time", "loss_t0_24", "loss_t75_99"} <= records[0].keys()
    # The loss goes down over 40 steps of a tiny model (from ~1, the variance of the noise).
    assert records[-1]["loss"] < records[0]["loss"]


def test_same_config_and_seed_give_identical_runs(reference, tmp_path):
    assert_same_run(reference, tiny_run(tmp_path / "again"))


def test_other_seed_gives_other_weights(reference, tmp_path):
    other = final_tensors(tiny_run(tmp_path / "seed1", **{"training.seed": 1}))
    assert not torch.equal(other["model.stem.weight"], final_tensors(reference)["model.stem.weight"])


def test_only_newest_checkpoints_keep_resume_state(reference):
    steps = reference.checkpoint_steps()
    with_state = [s for s in steps if reference.has_resume_state(s)]
    assert with_state == steps[-2:]  # training.keep_resume_state = 2


def resume(run_dir):
    cmd = [sys.executable, "-m", "diffrep", "train", "--resume", str(run_dir), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_corrupt_latest_checkpoint_falls_back_to_previous(reference, tmp_path):
    run_dir = tmp_path / "run"
    tiny_run(run_dir)
    run = RunDir(run_dir)
    last = run.checkpoint_path(40)
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    last.write_bytes(bytes(data))
    done = resume(run_dir)
    assert done.returncode == 0, done.stderr
    assert "checksum" in done.stderr and "step 40" in done.stderr
    assert (run_dir / "checkpoints" / "step_00000040.safetensors.corrupt").exists()
    assert_same_run(reference, run)  # retrained from step 30 to the same weights


def test_resume_finishes_the_stripping_of_resume_state_a_kill_interrupted(reference, tmp_path, monkeypatch):
    # As if killed right after the last checkpoint's save: its older ones still hold resume state.
    monkeypatch.setattr(RunDir, "drop_resume_state", lambda self, keep: None)
    run = tiny_run(tmp_path / "run")
    monkeypatch.undo()
    with_state = [s for s in run.checkpoint_steps() if run.has_resume_state(s)]
    assert len(with_state) > TINY_KEEP  # the stripping never happened
    assert resume(run.path).returncode == 0
    assert [s for s in run.checkpoint_steps() if run.has_resume_state(s)] == with_state[-TINY_KEEP:]
    assert_same_run(reference, run)


def test_second_process_on_a_run_is_refused(tmp_path):
    cfg = make_config("tiny", TINY)
    run = RunDir.create(tmp_path / "run", cfg)
    with run.lock():
        with pytest.raises(ConfigError, match="in use by another diffrep process"):
            train(cfg, run, quiet=True)
    assert run.checkpoint_steps() == []  # the refused process wrote nothing


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_render = BumpDataset.render

    def render_nan_from_step_15(self, conditions):
        calls["n"] += 1
        images = real_render(self, conditions)
        return images * float("nan") if calls["n"] >= 15 else images

    monkeypatch.setattr(BumpDataset, "render", render_nan_from_step_15)
    with pytest.raises(TrainingDiverged, match="at step 15.*last good checkpoint is step 10"):
        tiny_run(tmp_path / "run")
    run = RunDir(tmp_path / "run")
    assert run.checkpoint_steps()[-1] == 10
    run.load_checkpoint(10)  # intact: passes its checksum
    assert max(r["step"] for r in run.metrics()) == 10


def test_a_diverging_run_through_the_command_line_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run([sys.executable, "-m", "diffrep", "train", "tiny", "--quiet", "--run-dir", str(tmp_path / "run"),
                           "--set", "training.lr=1e12", "--set", "training.grad_clip=0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip() == ("diffrep: error: loss is nan at step 2; training stopped, the last good checkpoint "
                                   "is step 1; try a lower training.lr (now 1000000000000.0)")
    assert RunDir(tmp_path / "run").checkpoint_steps() == [0, 1]


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference.path, copy)
    before = {p.name: p.read_bytes() for p in (copy / "checkpoints").iterdir()}
    assert resume(copy).returncode == 0
    assert {p.name: p.read_bytes() for p in (copy / "checkpoints").iterdir()} == before
    assert deterministic_metrics(RunDir(copy)) == deterministic_metrics(reference)
    assert os.path.exists(copy / "config.json")


def test_full_disk_during_a_checkpoint_is_a_clean_error_and_loses_nothing(tmp_path, monkeypatch, capsys):
    import errno

    from diffrep import rundir
    from diffrep.cli import main

    real_open = open

    def open_that_fills_the_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and ".tmp" in str(file) and "checkpoints" in str(file):
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return f

    longer = tmp_path / "run"
    assert main(["train", "tiny", "--run-dir", str(longer), "--quiet", "--set", "training.steps=40"]) == 0
    before = {p.name: p.read_bytes() for p in (longer / "checkpoints").iterdir()}
    (longer / "checkpoints" / "step_00000040.safetensors").unlink()  # as if killed before the last save
    monkeypatch.setattr(rundir, "open", open_that_fills_the_disk, raising=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(longer), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    after = {p.name: p.read_bytes() for p in (longer / "checkpoints").iterdir()}
    assert after == {k: v for k, v in before.items() if k != "step_00000040.safetensors"}  # nothing damaged
    assert not list(longer.rglob(".*.tmp*"))  # no partial file left behind


def test_adaptive_length_stops_a_given_number_of_checkpoints_after_phase_c(tmp_path):
    from diffrep.training import is_finished

    # Thresholds that every checkpoint meets, so phase C comes at step 0: the run must then stop
    # at the second checkpoint after it (schedule 0, 1, 6, 10, ...) instead of running to step 40.
    always_c = {"phase.min_condition_share": -1.0, "phase.min_order_gain": -1.0, "training.stop_after_phase_c": 2}
    run = tiny_run(tmp_path / "run", **always_c)
    assert run.checkpoint_steps() == [0, 1, 6]
    assert [r["phase.layer4"] for r in run.metrics() if "phase.layer4" in r][0] == "C"  # then counted, whatever follows
    assert is_finished(run.config(), run)
    before = sorted(p.name for p in (run.path / "checkpoints").iterdir())
    assert resume(run.path).returncode == 0  # a finished adaptive run stays as it is
    assert sorted(p.name for p in (run.path / "checkpoints").iterdir()) == before


def test_adaptive_length_needs_probes():
    with pytest.raises(ConfigError, match="training.stop_after_phase_c: needs probe.during_training"):
        make_config("tiny", {"training.stop_after_phase_c": 1, "probe.during_training": False})
    with pytest.raises(ConfigError, match="training.stop_after_phase_c: needs probe.input = independent"):
        make_config("tiny", {"training.stop_after_phase_c": 1, "probe.input": "shared"})


def test_the_progress_bar_says_what_evaluation_is_doing_and_quiet_prints_nothing(tmp_path, capsys):
    from diffrep.cli import main
    from diffrep.evaluation.scoring import evaluation_set

    argv = ["train", "tiny", "--set", "training.steps=1"]  # checkpoints 0 and 1; the last also scored with DDPM
    assert main([*argv, "--run-dir", str(tmp_path / "shown")]) == 0
    err = capsys.readouterr().err
    samples = len(evaluation_set(make_config("tiny")).conditions)
    for step, what in [(0, f"scoring {samples} samples (ddim5)"), (0, "probing layer4"),
                       (1, f"scoring {samples} samples (ddim5)"), (1, "probing layer4"),
                       (1, f"scoring {samples} samples (ddpm100)")]:
        assert f"step {step}: {what}" in err, (step, what)
    assert main([*argv, "--run-dir", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
