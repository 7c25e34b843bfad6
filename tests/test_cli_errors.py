"""Bad input to the `diffrep` CLI: one clear line, exit code 2, nothing on disk changed.

Project rule: an invalid setting gets ONE line on stderr, starting "diffrep: error:", that
names the setting (and the allowed values), exit code 2, no traceback, and nothing on disk
overwritten, lost or created (for `train`, no run directory appears when the config is
rejected).

Each case of the table runs `diffrep.cli.main(argv)` in-process inside a fresh workspace
directory (the current directory during the call), after an optional setup step that builds
the files it needs there: usually a copy of ONE tiny run trained once per module, possibly
damaged on purpose. The workspace is snapshotted (every path, and for files their bytes and
mtime) just before the call and compared just after. A few cases also go through a real
`python -m diffrep` subprocess, to prove the end-to-end behaviour (no traceback, exit code 2).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffrep.cli import main

TRAINED_STEPS = 3  # tiny preset: checkpoints at 0, 1, 2, 3 (log-spaced) ...
EXPECTED_CHECKPOINTS = [0, 1, 2, 3]
CORRUPT_STEP = 3  # ... the newest one (with resume state) is the one damaged on purpose


# -- the trained run, made once -------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "run"
    rc = main(["train", "tiny", "--run-dir", str(path), "--quiet", "--set", f"training.steps={TRAINED_STEPS}"])
    assert rc == 0
    steps = sorted(int(p.name[5:13]) for p in (path / "checkpoints").glob("step_*.safetensors"))
    assert steps == EXPECTED_CHECKPOINTS, steps
    return path


# -- setups: what a case needs in its workspace -----------------------------------
# Each takes (workspace, trained_run) and returns nothing; the run, when copied, is at ws/run.


def _copy_run(ws: Path, trained: Path) -> Path:
    run = ws / "run"
    shutil.copytree(trained, run)
    return run


def _edit_config(ws: Path, trained: Path, edit) -> None:
    run = _copy_run(ws, trained)
    cfg_path = run / "config.json"
    cfg_path.write_text(edit(cfg_path.read_text()))


def _with_json(change):
    def edit(text: str) -> str:
        d = json.loads(text)
        change(d)
        return json.dumps(d, indent=2)

    return edit


def _checkpoint(ws: Path, step: int = CORRUPT_STEP) -> Path:
    return ws / "run" / "checkpoints" / f"step_{step:08d}.safetensors"


def _flip_byte(ws: Path, trained: Path) -> None:
    _copy_run(ws, trained)
    path = _checkpoint(ws)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the middle of the file: tensor bytes, past the header
    path.write_bytes(bytes(data))


def _truncate(ws: Path, trained: Path) -> None:
    _copy_run(ws, trained)
    path = _checkpoint(ws)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_checkpoints(ws: Path, trained: Path) -> None:
    run = _copy_run(ws, trained)
    for p in (run / "checkpoints").iterdir():
        p.unlink()


def _nonempty_dir(ws: Path, trained: Path) -> None:
    d = ws / "existing"
    d.mkdir()
    (d / "notes.txt").write_text("precious\n")
    (d / "sub").mkdir()
    (d / "sub" / "data.bin").write_bytes(bytes(range(256)))


def _dir_without_config(ws: Path, trained: Path) -> None:
    d = ws / "noconfig"
    (d / "checkpoints").mkdir(parents=True)
    (d / "metrics.jsonl").write_text('{"step": 1}\n')


def _huge_batch(d: dict) -> None:
    """A valid config whose training step needs terabytes: 65536 images of 256 x 256 per batch."""
    d["data"].update(image_size=256, latent_size=256.0, x_max=256.0, y_max=256.0, dx=16.0, dy=16.0)
    d["training"]["batch_size"] = 65536


def _replace(ws: Path, trained: Path, name: str, data: bytes, keep: bool = False) -> None:
    """A run whose file `name` holds `data` (before its old content, with keep)."""
    path = _copy_run(ws, trained) / name
    path.write_bytes(data + (path.read_bytes() if keep else b""))


def _config_is_a_folder(ws: Path, trained: Path) -> None:
    config = _copy_run(ws, trained) / "config.json"
    config.unlink()
    config.mkdir()


def _checkpoint_old_format(ws: Path, trained: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    _copy_run(ws, trained)
    path = _checkpoint(ws)
    with safe_open(path, framework="pt") as f:
        header = f.metadata()
    save_file(load_file(path), path, metadata={**header, "format": "diffrep-checkpoint-0"})


def _checkpoint_is_a_pickle(ws: Path, trained: Path) -> None:
    _copy_run(ws, trained)
    torch.save({"model.stem.weight": torch.zeros(3)}, _checkpoint(ws))


def _sweep_manifest(ws: Path, version: int = 1, text: str | None = None) -> None:
    from diffrep.config import make_config

    (ws / "sweep" / "runs").mkdir(parents=True)
    record = {"version": version, "base": make_config("tiny").to_dict(), "grid": {}, "seeds": [0], "runs": ["seed=0"]}
    (ws / "sweep" / "sweep.json").write_text(text if text is not None else json.dumps(record))


def _write(ws: Path, name: str, text: str) -> None:
    """A file written by hand in the workspace (a config file for --config)."""
    (ws / name).write_text(text)


def _existing_out(ws: Path, trained: Path) -> None:
    _copy_run(ws, trained)
    (ws / "out.png").write_bytes(b"\x89PNG not really, but precious\n")


SETUPS = {
    None: lambda ws, trained: None,
    "run": _copy_run,
    "config_invalid_json": lambda ws, tr: _edit_config(ws, tr, lambda t: t[: len(t) // 2] + "}{,"),
    "config_list": lambda ws, tr: _edit_config(ws, tr, lambda t: json.dumps([json.loads(t)])),
    "config_unknown_key": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d["data"].update(foo=1))),
    "config_unknown_section": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d.update(extra={}))),
    "config_version_99": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d.update(version=99))),
    "config_bad_value": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d["data"].update(sigma=-1))),
    "checkpoint_flipped": _flip_byte,
    "checkpoint_truncated": _truncate,
    "no_checkpoints": _no_checkpoints,
    "nonempty_dir": _nonempty_dir,
    "dir_without_config": _dir_without_config,
    "existing_out": _existing_out,
    # hand-edited or damaged run files, and files from another version
    "config_huge_batch": lambda ws, tr: _edit_config(ws, tr, _with_json(_huge_batch)),
    "config_nan_literal": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d["data"].update(sigma=float("nan")))),
    "config_wrong_type": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d["training"].update(lr="fast"))),
    "config_null_section": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d.update(data=None))),
    "config_version_string": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d.update(version="1"))),
    "config_empty": lambda ws, tr: _edit_config(ws, tr, lambda t: ""),
    "config_deeply_nested": lambda ws, tr: _edit_config(ws, tr, lambda t: "[" * 100_000 + "]" * 100_000),
    "config_not_utf8": lambda ws, tr: _replace(ws, tr, "config.json", b"\xff\xfe{}"),
    "config_is_a_folder": _config_is_a_folder,
    "metrics_hand_edited": lambda ws, tr: _replace(ws, tr, "metrics.jsonl", b'{"step": "three"}\n', keep=True),
    "checkpoint_old_format": _checkpoint_old_format,
    "checkpoint_is_a_pickle": _checkpoint_is_a_pickle,
    "probes_npz_damaged": lambda ws, tr: _replace(ws, tr, f"probes/step_{CORRUPT_STEP:08d}.npz", b"not a zip file"),
    "probes_json_damaged": lambda ws, tr: _replace(ws, tr, f"probes/step_{CORRUPT_STEP:08d}.json", b'{"step": 3,'),
    "sweep_version_99": lambda ws, tr: _sweep_manifest(ws, version=99),
    "sweep_manifest_damaged": lambda ws, tr: _sweep_manifest(ws, text="{not json"),
    "config_device_cuda": lambda ws, tr: _edit_config(ws, tr, _with_json(lambda d: d["training"].update(device="cuda"))),
    "provenance_damaged": lambda ws, tr: _replace(ws, tr, "provenance.json", b'{"sessions": 3}\n'),
    # config files written by hand, for train --config
    "toml_syntax_error": lambda ws, tr: _write(ws, "bad.toml", 'preset = "tiny"\n[training\nlr = 1e-3\n'),
    "json_syntax_error": lambda ws, tr: _write(ws, "bad.json", '{\n "training": {\n  "lr": 1e-3,\n }\n}\n'),
    "json_not_a_table": lambda ws, tr: _write(ws, "list.json", '[{"preset": "tiny"}]'),
    "toml_unknown_key": lambda ws, tr: _write(ws, "typo.toml", 'preset = "tiny"\n[training]\nlrr = 1e-3\n'),
    "toml_unknown_section": lambda ws, tr: _write(ws, "typo.toml", '[trainig]\nlr = 1e-3\n'),
    "toml_wrong_type": lambda ws, tr: _write(ws, "type.toml", '[training]\nsteps = "ten"\n'),
    "toml_bad_value": lambda ws, tr: _write(ws, "value.toml", 'preset = "tiny"\n[data]\nsigma = -1.0\n'),
    "toml_unknown_preset": lambda ws, tr: _write(ws, "preset.toml", 'preset = "huge"\n'),
    "json_version_99": lambda ws, tr: _write(ws, "version.json", '{"version": 99}'),
}


# -- the table ------------------------------------------------------------------------
# (id, argv, setup, strings the one stderr line must contain)
# In argv, "{ws}" is the workspace and "{run}" the run copied into it.

HOLDOUT_ALL = 'data.holdout=[{"kind":"square","width":100}]'

CASES = [
    # train: config values out of range
    ("sigma_negative", ["train", "tiny", "--set", "data.sigma=-1"], None, ["data.sigma", "> 0"]),
    ("sigma_zero", ["train", "tiny", "--set", "data.sigma=0"], None, ["data.sigma", "> 0"]),
    ("sigma_x_negative", ["train", "tiny", "--set", "data.sigma_x=-2"], None, ["data.sigma_x"]),
    ("dx_zero", ["train", "tiny", "--set", "data.dx=0"], None, ["data.dx", "> 0"]),
    ("dy_negative", ["train", "tiny", "--set", "data.dy=-0.5"], None, ["data.dy", "> 0"]),
    ("x_max_outside_latent", ["train", "tiny", "--set", "data.x_max=40"], None, ["data.x_max", "data.latent_size"]),
    ("x_min_above_x_max", ["train", "tiny", "--set", "data.x_min=10", "--set", "data.x_max=5"], None,
     ["data.x_min", "data.x_max"]),
    ("keep_fraction_zero", ["train", "tiny", "--set", "data.keep_fraction=0"], None, ["data.keep_fraction", "(0, 1]"]),
    ("keep_fraction_above_one", ["train", "tiny", "--set", "data.keep_fraction=1.5"], None,
     ["data.keep_fraction", "(0, 1]"]),
    ("holdout_removes_everything", ["train", "tiny", "--set", HOLDOUT_ALL], None, ["data.holdout", "no training data"]),
    ("holdout_unknown_kind", ["train", "tiny", "--set", 'data.holdout=[{"kind":"circle"}]'], None,
     ["data.holdout[0].kind", "square"]),
    ("holdout_zero_width", ["train", "tiny", "--set", 'data.holdout=[{"width":0}]'], None, ["data.holdout[0].width"]),
    ("holdout_not_a_list", ["train", "tiny", "--set", 'data.holdout={"kind":"square"}'], None,
     ["data.holdout", "list"]),
    ("holdout_unknown_field", ["train", "tiny", "--set", 'data.holdout=[{"radius":3}]'], None,
     ["data.holdout[0].radius"]),
    ("data_kind_unknown", ["train", "tiny", "--set", "data.kind=blobs"], None, ["data.kind", "bumps"]),
    ("huge_lattice_per_axis", ["train", "tiny", "--set", "data.dx=0.001", "--set", "data.dy=0.001"], None,
     ["data.dx", "10000"]),
    ("huge_lattice_total", ["train", "--set", "data.dx=0.01", "--set", "data.dy=0.01"], None,
     ["data.dx, data.dy", "4000000"]),
    ("image_size_not_multiple_of_4", ["train", "--set", "data.image_size=30"], None,
     ["data.image_size", "multiple of 4"]),
    ("lr_zero", ["train", "tiny", "--set", "training.lr=0"], None, ["training.lr", "> 0"]),
    ("lr_decay_unknown", ["train", "tiny", "--set", "training.lr_decay=linear"], None,
     ["training.lr_decay", "constant", "cosine"]),
    ("loss_weighting_unknown", ["train", "tiny", "--set", "training.loss_weighting=p2"], None,
     ["training.loss_weighting", "uniform", "min_snr"]),
    ("min_snr_gamma_zero", ["train", "tiny", "--set", "training.loss_weighting=min_snr",
                            "--set", "training.min_snr_gamma=0"], None, ["training.min_snr_gamma", "> 0"]),
    ("adam_beta2_one", ["train", "tiny", "--set", "training.adam_beta2=1"], None, ["training.adam_beta2", "(0, 1)"]),
    ("batch_size_zero", ["train", "tiny", "--set", "training.batch_size=0"], None, ["training.batch_size"]),
    ("widths_two_levels", ["train", "tiny", "--set", "model.widths=[8,16]"], None, ["model.widths", "3"]),
    ("label_encoding_onehot", ["train", "tiny", "--set", "model.label_encoding=onehot"], None,
     ["model.label_encoding", "sinusoidal", "mlp"]),
    ("beta_end_two", ["train", "tiny", "--set", "diffusion.beta_end=2"], None, ["diffusion.beta_end", "< 1"]),
    ("device_tpu", ["train", "tiny", "--set", "training.device=tpu"], None, ["training.device", "auto", "cpu", "cuda"]),
    # train: types, unknown names, syntax
    ("unknown_key", ["train", "tiny", "--set", "data.foo=1"], None, ["data.foo", "unknown setting", "sigma"]),
    ("unknown_section", ["train", "tiny", "--set", "foo.bar=1"], None, ["foo.bar", "unknown setting", "training"]),
    ("steps_not_a_number", ["train", "tiny", "--set", "training.steps=abc"], None, ["training.steps", "integer"]),
    ("steps_float", ["train", "tiny", "--set", "training.steps=1.5"], None, ["training.steps", "integer"]),
    ("steps_bool", ["train", "tiny", "--set", "training.steps=true"], None, ["training.steps", "integer"]),
    ("periodic_int", ["train", "tiny", "--set", "data.periodic=3"], None, ["data.periodic", "true or false"]),
    ("sigma_nan", ["train", "tiny", "--set", "data.sigma=NaN"], None, ["data.sigma", "finite"]),
    ("sigma_infinity", ["train", "tiny", "--set", "data.sigma=Infinity"], None, ["data.sigma", "finite"]),
    ("unknown_preset", ["train", "huge"], None, ["preset", "tiny", "default"]),
    ("set_without_equals", ["train", "tiny", "--set", "data.sigma"], None, ["--set", "key=value"]),
    ("set_empty_key", ["train", "tiny", "--set", "=3"], None, ["--set", "key=value"]),
    ("config_command_bad_value", ["config", "tiny", "--set", "data.sigma=-1"], None, ["data.sigma"]),
    # train: run directories
    ("resume_nonexistent", ["train", "--resume", "{ws}/nonexistent"], None, ["RUN_DIR", "config.json"]),
    ("resume_dir_without_config", ["train", "--resume", "{ws}/noconfig"], "dir_without_config",
     ["RUN_DIR", "config.json"]),
    ("resume_with_set", ["train", "--resume", "{run}", "--set", "x=1"], "run", ["--resume", "--set"]),
    ("resume_with_preset", ["train", "tiny", "--resume", "{run}"], "run", ["--resume", "PRESET"]),
    ("resume_config_invalid_json", ["train", "--resume", "{run}"], "config_invalid_json",
     ["RUN_DIR", "config.json", "JSON"]),
    ("resume_config_version_99", ["train", "--resume", "{run}"], "config_version_99", ["version", "99"]),
    ("resume_config_bad_value", ["train", "--resume", "{run}"], "config_bad_value", ["config.json", "data.sigma"]),
    ("run_dir_existing_nonempty", ["train", "tiny", "--run-dir", "{ws}/existing"], "nonempty_dir",
     ["--run-dir", "not empty"]),
    ("run_dir_is_existing_run", ["train", "tiny", "--run-dir", "{run}"], "run", ["--run-dir", "--resume"]),
    # sample
    ("sample_nonexistent", ["sample", "{ws}/nonexistent"], None, ["RUN_DIR", "config.json"]),
    ("sample_missing_step", ["sample", "{run}", "--checkpoint", "999"], "run", ["--checkpoint", "999", "available"]),
    ("sample_checkpoint_not_a_number", ["sample", "{run}", "--checkpoint", "abc"], "run", ["--checkpoint", "latest"]),
    ("sample_no_checkpoints", ["sample", "{run}"], "no_checkpoints", ["--checkpoint", "no checkpoints"]),
    ("sample_at_one_number", ["sample", "{run}", "--at", "1"], "run", ["--at", "X,Y"]),
    ("sample_at_three_numbers", ["sample", "{run}", "--at", "1,2,3"], "run", ["--at", "X,Y"]),
    ("sample_at_outside", ["sample", "{run}", "--at", "100,100"], "run", ["--at", "[0, 16"]),
    ("sample_at_negative", ["sample", "{run}", "--at", "8,8", "--at=-1,4"], "run", ["--at", "[0, 16"]),
    # argparse takes "-1,4" after a space for an option, so this is its "expected one argument"
    ("sample_at_negative_spaced", ["sample", "{run}", "--at", "-1,4"], "run", ["--at", "argument"]),
    ("sample_at_inf", ["sample", "{run}", "--at", "inf,4"], "run", ["--at", "[0, 16"]),
    ("sample_at_nan", ["sample", "{run}", "--at", "nan,4"], "run", ["--at", "[0, 16"]),
    ("sample_sampler_unknown", ["sample", "{run}", "--sampler", "foo"], "run", ["--sampler", "ddim", "ddpm"]),
    ("sample_steps_zero", ["sample", "{run}", "--steps", "0"], "run", ["--steps", "1 <= steps <= 100"]),
    ("sample_steps_above_T", ["sample", "{run}", "--steps", "101"], "run", ["--steps", "1 <= steps <= 100"]),
    ("sample_steps_not_int", ["sample", "{run}", "--steps", "x"], "run", ["--steps", "int"]),
    ("sample_weights_unknown", ["sample", "{run}", "--weights", "best"], "run", ["--weights", "ema", "raw"]),
    ("sample_eta_above_one", ["sample", "{run}", "--eta", "2"], "run", ["--eta", "[0, 1]"]),
    ("sample_eta_nan", ["sample", "{run}", "--eta", "nan"], "run", ["--eta", "[0, 1]"]),
    ("sample_out_exists", ["sample", "{run}", "--out", "{ws}/out.png"], "existing_out", ["--out", "exists"]),
    ("sample_config_invalid_json", ["sample", "{run}"], "config_invalid_json", ["RUN_DIR", "config.json", "JSON"]),
    ("sample_config_list", ["sample", "{run}"], "config_list", ["RUN_DIR", "config.json", "object"]),
    ("sample_config_unknown_key", ["sample", "{run}"], "config_unknown_key", ["config.json", "data.foo"]),
    ("sample_config_unknown_section", ["sample", "{run}"], "config_unknown_section", ["config.json", "extra"]),
    ("sample_config_version_99", ["sample", "{run}"], "config_version_99", ["config.json", "version", "99"]),
    ("sample_checkpoint_flipped_byte", ["sample", "{run}", "--checkpoint", str(CORRUPT_STEP)], "checkpoint_flipped",
     ["checkpoint", "checksum", "corrupt"]),
    ("sample_latest_flipped_byte", ["sample", "{run}"], "checkpoint_flipped", ["checkpoint", "checksum", "corrupt"]),
    ("sample_checkpoint_truncated", ["sample", "{run}", "--checkpoint", str(CORRUPT_STEP)], "checkpoint_truncated",
     ["checkpoint", "truncated", "corrupt"]),
    # demo
    ("demo_bad_value", ["demo", "--run-dir", "{ws}/demo", "--set", "data.sigma=-1"], None, ["data.sigma"]),
    ("demo_set_on_existing_run", ["demo", "--run-dir", "{run}", "--set", "data.sigma=2"], "run", ["--set"]),
    # argparse
    ("unknown_command", ["frobnicate"], None, ["command", "train", "sample"]),
    ("no_command", [], None, ["command"]),
    ("sample_without_run_dir", ["sample"], None, ["RUN_DIR"]),
    ("train_unknown_option", ["train", "tiny", "--bogus"], None, ["--bogus"]),
    # sizes that would not fit in memory: refused before anything is allocated or written
    ("huge_batch_and_images", ["train", "tiny", "--set", "data.image_size=256", "--set", "data.latent_size=256",
                               "--set", "data.x_max=256", "--set", "data.y_max=256", "--set", "data.dx=16",
                               "--set", "data.dy=16", "--set", "training.batch_size=65536"], None,
     ["training.batch_size", "GiB"]),
    ("huge_widths", ["train", "tiny", "--set", "model.widths=[1000000,1000000,1000000]"], None, ["model.widths", "GiB"]),
    ("huge_emb_dim", ["train", "tiny", "--set", "model.emb_dim=1000000000"], None, ["model.emb_dim", "GiB"]),
    ("huge_steps", ["train", "tiny", "--set", "training.steps=1000000000000"], None, ["training.steps", "1000000000"]),
    ("too_many_checkpoints", ["train", "tiny", "--set", "training.steps=100000000", "--set", "training.checkpoint_every=1"],
     None, ["training.checkpoint_every", "100000"]),
    ("resume_config_huge_batch", ["train", "--resume", "{run}"], "config_huge_batch", ["training.batch_size", "GiB"]),
    # masks that leave no data
    ("keep_fraction_leaves_nothing", ["train", "tiny", "--set", "data.keep_fraction=0.001"], None,
     ["data.keep_fraction", "no training data"]),
    ("cross_holdout_covers_everything", ["train", "tiny", "--set", 'data.holdout=[{"kind":"cross","width":100}]'], None,
     ["data.holdout", "no training data"]),
    # hand-edited config.json, unreadable paths
    ("resume_config_nan", ["train", "--resume", "{run}"], "config_nan_literal", ["config.json", "data.sigma", "finite"]),
    ("sample_config_wrong_type", ["sample", "{run}"], "config_wrong_type", ["config.json", "training.lr", "number"]),
    ("sample_config_null_section", ["sample", "{run}"], "config_null_section", ["config.json", "data", "object"]),
    ("sample_config_version_string", ["sample", "{run}"], "config_version_string", ["config.json", "version", "integer"]),
    ("score_config_empty", ["score", "{run}"], "config_empty", ["config.json", "JSON"]),
    ("score_config_deeply_nested", ["score", "{run}"], "config_deeply_nested", ["config.json", "recursion"]),
    ("probe_config_not_utf8", ["probe", "{run}"], "config_not_utf8", ["config.json", "utf-8"]),
    ("sample_config_is_a_folder", ["sample", "{run}"], "config_is_a_folder", ["RUN_DIR", "config.json"]),
    ("run_dir_inside_a_file", ["train", "tiny", "--run-dir", "{ws}/out.png/run"], "existing_out",
     ["--run-dir", "Not a directory"]),
    ("demo_run_dir_is_a_file", ["demo", "--run-dir", "{ws}/out.png"], "existing_out", ["--run-dir", "not a directory"]),
    # other run files: hand-edited, damaged, from another version
    ("resume_metrics_hand_edited", ["train", "--resume", "{run}"], "metrics_hand_edited", ["metrics.jsonl", "line 1"]),
    ("sample_checkpoint_old_format", ["sample", "{run}"], "checkpoint_old_format",
     ["checkpoint", "diffrep-checkpoint-0", "diffrep-checkpoint-1"]),
    ("sample_checkpoint_is_a_pickle", ["sample", "{run}"], "checkpoint_is_a_pickle", ["checkpoint", "unreadable"]),
    ("probe_npz_damaged", ["probe", "{run}", "--checkpoints", str(CORRUPT_STEP)], "probes_npz_damaged",
     ["step_00000003.npz", "unreadable"]),
    ("probe_json_damaged", ["probe", "{run}", "--checkpoints", str(CORRUPT_STEP)], "probes_json_damaged",
     ["step_00000003.json", "JSON"]),
    # score and probe options
    ("score_steps_zero", ["score", "{run}", "--steps", "0"], "run", ["scoring.sampler_steps"]),
    ("score_tolerance_nan", ["score", "{run}", "--tolerance", "nan"], "run", ["scoring.tolerance", "finite"]),
    ("score_eta_above_one", ["score", "{run}", "--eta", "2"], "run", ["scoring.eta", "[0, 1]"]),
    ("score_checkpoints_malformed", ["score", "{run}", "--checkpoints", "1,,2"], "run", ["--checkpoint"]),
    ("score_checkpoint_missing", ["score", "{run}", "--checkpoints", "999"], "run", ["--checkpoint", "999"]),
    ("probe_unknown_layer", ["probe", "{run}", "--layers", "layer9"], "run", ["probe.layers", "layer9"]),
    ("probe_timestep_out_of_range", ["probe", "{run}", "--timestep", "1000"], "run", ["probe.timestep"]),
    ("probe_grid_huge", ["probe", "{run}", "--grid", "100000"], "run", ["probe.grid", "[4, 64]"]),
    # sweeps: empty grids and seeds, bad options, another version
    ("sweep_seeds_empty", ["sweep", "tiny", "--seeds", "", "--sweep-dir", "{ws}/sw"], None, ["--seeds"]),
    ("sweep_grid_without_values", ["sweep", "tiny", "--grid", "training.lr=", "--sweep-dir", "{ws}/sw"], None,
     ["--grid"]),
    ("sweep_grid_nan", ["sweep", "tiny", "--grid", "data.sigma=NaN,1", "--sweep-dir", "{ws}/sw"], None,
     ["data.sigma", "finite"]),
    ("sweep_workers_zero", ["sweep", "tiny", "--workers", "0", "--sweep-dir", "{ws}/sw"], None, ["--workers"]),
    ("sweep_gpus_nan", ["sweep", "tiny", "--gpus-per-run", "nan", "--sweep-dir", "{ws}/sw"], None, ["--gpus-per-run"]),
    ("sweep_without_dir", ["sweep", "tiny"], None, ["--sweep-dir"]),
    ("sweep_resume_not_a_sweep", ["sweep", "--resume", "{ws}/nonexistent"], None, ["sweep.json"]),
    ("sweep_resume_version_99", ["sweep", "--resume", "{ws}/sweep"], "sweep_version_99", ["sweep.json", "version 99"]),
    ("sweep_resume_manifest_damaged", ["sweep", "--resume", "{ws}/sweep"], "sweep_manifest_damaged",
     ["sweep.json", "unreadable"]),
    # aggregate
    ("aggregate_missing_dir", ["aggregate", "{ws}/nonexistent"], None, ["nonexistent", "no such directory"]),
    ("aggregate_out_is_a_folder", ["aggregate", "{run}", "--out", "{ws}"], "run", ["--out", "folder"]),
    ("aggregate_out_folder_missing", ["aggregate", "{run}", "--out", "{ws}/missing/t.csv"], "run",
     ["--out", "does not exist"]),
    # train --config FILE: missing, unparseable (with the parser's line), unknown keys (with the nearest
    # known one), wrong types and values, and options that do not go with it
    ("config_file_missing", ["train", "--config", "{ws}/nope.toml"], None, ["--config", "nope.toml", "no such file"]),
    ("config_folder_not_a_run", ["train", "--config", "{ws}/noconfig"], "dir_without_config",
     ["--config", "noconfig", "config.json", "not a run directory"]),
    ("config_toml_syntax", ["train", "--config", "{ws}/bad.toml"], "toml_syntax_error",
     ["--config", "bad.toml", "not valid TOML", "line 2"]),
    ("config_json_syntax", ["train", "--config", "{ws}/bad.json"], "json_syntax_error",
     ["--config", "bad.json", "not valid JSON", "line 4"]),
    ("config_file_not_a_table", ["train", "--config", "{ws}/list.json"], "json_not_a_table",
     ["--config", "list.json", "object", "list"]),
    ("config_file_unknown_key", ["train", "--config", "{ws}/typo.toml"], "toml_unknown_key",
     ["--config", "typo.toml", "training.lrr: unknown setting", "did you mean training.lr?"]),
    ("config_file_unknown_section", ["train", "--config", "{ws}/typo.toml"], "toml_unknown_section",
     ["--config", "typo.toml", "trainig: unknown setting", "did you mean training?"]),
    ("config_file_wrong_type", ["train", "--config", "{ws}/type.toml"], "toml_wrong_type",
     ["--config", "type.toml", "training.steps", "integer"]),
    ("config_file_bad_value", ["train", "--config", "{ws}/value.toml"], "toml_bad_value",
     ["--config", "value.toml", "data.sigma", "> 0"]),
    ("config_file_unknown_preset", ["train", "--config", "{ws}/preset.toml"], "toml_unknown_preset",
     ["--config", "preset.toml", "huge", "tiny"]),
    ("config_file_version_99", ["train", "--config", "{ws}/version.json"], "json_version_99",
     ["--config", "version.json", "version", "99"]),
    ("config_run_with_bad_value", ["train", "--config", "{run}"], "config_bad_value",
     ["--config", "config.json", "data.sigma"]),
    ("config_with_preset", ["train", "tiny", "--config", "{run}"], "run", ["--config", "PRESET"]),
    ("config_then_set_misspelt", ["train", "--config", "{run}", "--set", "training.lrr=1e-3"], "run",
     ["training.lrr", "did you mean training.lr?"]),
    ("resume_with_config", ["train", "--resume", "{run}", "--config", "{run}"], "run", ["--resume", "--config"]),
    # --set: a misspelt key gets the nearest known one
    ("set_misspelt_key", ["train", "tiny", "--set", "training.lrr=1e-3"], None, ["training.lrr", "did you mean training.lr?"]),
    ("set_misspelt_section", ["train", "tiny", "--set", "trainig.lr=1e-3"], None,
     ["trainig.lr", "did you mean training.lr?"]),
    # --device of the commands that load checkpoints; a damaged provenance.json
    ("sample_device_tpu", ["sample", "{run}", "--device", "tpu"], "run", ["--device", "'tpu'", "auto", "cpu", "cuda"]),
    ("score_device_tpu", ["score", "{run}", "--device", "tpu"], "run", ["--device", "'tpu'", "auto", "cpu", "cuda"]),
    ("probe_device_tpu", ["probe", "{run}", "--device", "tpu"], "run", ["--device", "'tpu'", "auto", "cpu", "cuda"]),
    ("resume_provenance_damaged", ["train", "--resume", "{run}"], "provenance_damaged", ["provenance.json", "sessions"]),
]

# Each kind of bad input that docs/guarantees.md names, and some of the cases above that are of that kind.
CATEGORIES = {
    "wrong types": ["steps_not_a_number", "periodic_int", "sample_config_wrong_type", "sample_config_version_string"],
    "out-of-range values": ["sigma_negative", "keep_fraction_above_one", "score_eta_above_one", "probe_grid_huge"],
    "NaN": ["sigma_nan", "sample_at_nan", "score_tolerance_nan", "resume_config_nan", "sweep_grid_nan"],
    "empty grids": ["sweep_grid_without_values", "sweep_seeds_empty"],
    "masks leaving no data": ["holdout_removes_everything", "keep_fraction_leaves_nothing",
                              "cross_holdout_covers_everything"],
    "sizes that would not fit in memory": ["huge_lattice_total", "huge_batch_and_images", "huge_widths", "huge_emb_dim",
                                           "huge_steps", "resume_config_huge_batch"],
    "unreadable paths": ["resume_nonexistent", "sample_config_is_a_folder", "probe_config_not_utf8",
                         "run_dir_inside_a_file", "aggregate_missing_dir"],
    "run files from an incompatible version": ["resume_config_version_99", "sample_checkpoint_old_format",
                                               "sweep_resume_version_99"],
    "hand-edited config.json": ["sample_config_unknown_key", "resume_config_bad_value", "sample_config_null_section",
                                "score_config_deeply_nested", "resume_config_huge_batch"],
    "other damaged run files": ["sample_checkpoint_truncated", "sample_checkpoint_is_a_pickle", "probe_npz_damaged",
                                "resume_metrics_hand_edited", "sweep_resume_manifest_damaged", "resume_provenance_damaged"],
    "config files (train --config)": ["config_file_missing", "config_toml_syntax", "config_json_syntax",
                                      "config_file_unknown_key", "config_file_wrong_type"],
}

# `training.device=cuda` where there is no CUDA: rejected before the run directory is created.
DEVICE_CUDA_CASE = pytest.param(
    "device_cuda_without_cuda", ["train", "tiny", "--set", "training.device=cuda"], None, ["training.device", "cuda"],
    id="device_cuda_without_cuda",
    marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so the setting is valid"),
)

# --run-dir naming an existing file: rejected, the file left alone.
RUN_DIR_IS_A_FILE_CASE = pytest.param(
    "run_dir_is_a_file", ["train", "tiny", "--run-dir", "{ws}/out.png"], "existing_out", ["--run-dir"],
    id="run_dir_is_a_file",
)

# --device cuda (or a run's training.device = cuda) for a command that loads checkpoints, where there is no CUDA
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so the device is valid")
DEVICE_OPTION_CUDA_CASES = [
    pytest.param(f"{command}_device_cuda_without_cuda", [command, "{run}", "--device", "cuda"], "run",
                 ["--device", "cuda", "no CUDA device"], id=f"{command}_device_cuda_without_cuda", marks=NO_CUDA)
    for command in ("sample", "score", "probe")
] + [pytest.param("score_run_device_cuda_without_cuda", ["score", "{run}"], "config_device_cuda",
                  ["--device", "training.device", "no CUDA device"], id="score_run_device_cuda_without_cuda", marks=NO_CUDA)]

TABLE = ([pytest.param(*case, id=case[0]) for case in CASES] + [DEVICE_CUDA_CASE, RUN_DIR_IS_A_FILE_CASE]
         + DEVICE_OPTION_CUDA_CASES)


# -- helpers -----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: directories by name, files by (bytes, mtime_ns)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            snap[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = ("dir",)
        for name in filenames:
            p = Path(dirpath, name)
            snap[os.path.relpath(p, root)] = ("file", p.read_bytes(), p.stat().st_mtime_ns)
    return snap


def expand(argv: list[str], ws: Path) -> list[str]:
    return [a.replace("{run}", str(ws / "run")).replace("{ws}", str(ws)) for a in argv]


def check_error_output(rc: int, out: str, err: str, needles: list[str]) -> None:
    assert "Traceback" not in err and "Traceback" not in out, err
    assert rc == 2, f"exit code {rc}, stderr: {err!r}"
    line = err.rstrip("\n")
    assert line and "\n" not in line, f"stderr is not exactly one line: {err!r}"
    assert line.startswith("diffrep: error:"), line
    assert "np.float" not in line and "tensor(" not in line, f"a repr leaked into the message: {line!r}"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert out == "", f"unexpected stdout: {out!r}"


def assert_unchanged(before: dict, after: dict) -> None:
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    assert not (added or removed or changed), f"disk changed: added {added}, removed {removed}, changed {changed}"


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)  # train's default run directory, runs/NNNNN-PRESET, would land here
    return ws


# -- the tests -------------------------------------------------------------------------------


def test_table_is_large_and_ids_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 40
    assert {case for cases in CATEGORIES.values() for case in cases} <= set(ids)


@pytest.mark.parametrize("case_id, argv, setup, needles", TABLE)
def test_bad_input_in_process(case_id, argv, setup, needles, workspace, request, capsys):
    trained = request.getfixturevalue("trained_run") if setup is not None else None
    SETUPS[setup](workspace, trained)
    before = snapshot(workspace)
    capsys.readouterr()

    rc = main(expand(argv, workspace))

    out, err = capsys.readouterr()
    check_error_output(rc, out, err, needles)
    assert_unchanged(before, snapshot(workspace))
    if argv[:1] in (["train"], ["demo"]):
        assert not (workspace / "runs").exists()


# End to end: a real interpreter, the real `python -m diffrep` entry point. Each process pays
# for importing torch, so they are started when the module starts (the one that needs no run
# even before the run is trained) and run alongside the in-process cases; they are checked
# at the end.
SUBPROCESS_CASES = {
    "train_sigma_negative": (["train", "tiny", "--set", "data.sigma=-1"], None, ["data.sigma"]),
    "sample_checkpoint_flipped_byte": (["sample", "{run}", "--checkpoint", str(CORRUPT_STEP)], "checkpoint_flipped",
                                       ["checksum"]),
}


@pytest.fixture(scope="module", autouse=True)
def subprocesses(request, tmp_path_factory):
    started = {}
    for name, (argv, setup, _) in sorted(SUBPROCESS_CASES.items(), key=lambda item: item[1][1] is not None):
        ws = tmp_path_factory.mktemp(f"sub-{name}")
        SETUPS[setup](ws, request.getfixturevalue("trained_run") if setup is not None else None)
        before = snapshot(ws)
        proc = subprocess.Popen(
            [sys.executable, "-m", "diffrep", *expand(argv, ws)],
            cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started[name] = (proc, ws, before)
    yield started
    for proc, _, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_bad_input_subprocess(name, subprocesses):
    proc, ws, before = subprocesses[name]
    out, err = proc.communicate(timeout=120)
    check_error_output(proc.returncode, out, err, SUBPROCESS_CASES[name][2])
    assert_unchanged(before, snapshot(ws))
    assert not (ws / "runs").exists()


@pytest.mark.parametrize("argv", [["sweep", "tiny", "--backend", "ray", "--sweep-dir", "{ws}/sw"],
                                  ["sweep", "phases", "--scale", "tiny", "--backend", "ray", "--sweep-dir", "{ws}/sw"]],
                         ids=["grid", "experiment"])
def test_sweep_on_ray_without_ray_says_how_to_install_it(argv, workspace, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where ray is not installed
    before = snapshot(workspace)
    capsys.readouterr()
    rc = main(expand(argv, workspace))
    out, err = capsys.readouterr()
    check_error_output(rc, out, err, ["--backend", "ray is not installed", "pip install 'diffrep[ray]'"])
    assert_unchanged(before, snapshot(workspace))


def test_version_names_diffrep_python_and_torch(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"diffrep \d+\.\d+\.\d+ \(Python 3\.\d+\.\d+, torch \d+\.\d+\.\d+\S*\)\n", capsys.readouterr().out)
