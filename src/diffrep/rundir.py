"""The run directory: the unit every diffrep tool reads and writes.

    RUN_DIR/
      config.json                      the full Config; the run is rebuilt from it
      provenance.json                  versions, machine and times of each training session (provenance.py)
      metrics.jsonl                    append-only, one JSON object per line, each with "step"
      checkpoints/step_00001234.safetensors
      scores/step_00001234_ddim25.{json,npz,png}   generation scores per checkpoint and sampler
      probes/step_00001234.{json,npz}  representation metrics and phases per checkpoint; phases.json
      samples/                         PNG grids written by `diffrep sample`
      report.html                      the run's report
      lock                             held (flock) by the process training into the run

`RunDir` names every one of these files; no other module formats a run's file name.

A checkpoint is one safetensors file: model weights ("model.*"), EMA weights ("ema.*") and,
in the newest few, the resume state ("optim.*", "rng.*", "accum.*"). Its header metadata holds
the step, the optimizer's hyper-parameters and a SHA-256 of every tensor, so a truncated or
bit-flipped file is detected. Loading never unpickles: safetensors, JSON and npz without
object arrays only (`read_json`, `read_npz`), and a damaged file is a one-line ConfigError.

Every write goes to a temporary file that is fsynced and renamed over the target, so a kill
at any moment leaves either the old file or the new one, never a torn one; the temporary file
a kill leaves behind is removed by the next process that locks the run (`RunDir.lock`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .config import CONFIG_FILE, Config, ConfigError

CHECKPOINT_FORMAT = "diffrep-checkpoint-1"
STATE_PREFIXES = ("optim.", "rng.", "accum.")
_CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.safetensors$")


class CheckpointError(ConfigError):
    """A checkpoint that is missing, truncated or corrupted."""


def temporary_path(path: Path) -> Path:
    """Where `atomic_write` writes `path` before renaming it over the target: .NAME.tmpPID beside it."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: Path, data: bytes) -> None:
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:  # e.g. a full disk: the target keeps its old content, no partial file is left
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: Path):
    """The JSON data of a file written by diffrep; a missing, damaged or hand-broken file is a ConfigError."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{path} is unreadable or not valid JSON ({e})") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by diffrep. Object arrays would need unpickling, so they are
    refused like any other damage (ConfigError)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path} is unreadable ({e}); delete it and run the command that writes it again") from None


def next_run_dir(root: Path, preset: str) -> Path:
    """runs/00003-default: numbered, so that runs sort by creation."""
    numbers = [int(p.name[:5]) for p in root.glob("[0-9][0-9][0-9][0-9][0-9]-*")] if root.is_dir() else []
    return root / f"{max(numbers, default=-1) + 1:05d}-{preset}"


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    CONFIG = CONFIG_FILE  # the file that makes a folder a run directory
    # How the run was made (provenance.py): the one file that two runs of one config never share (its
    # times), so that comparisons of run directories leave out this name, and only it.
    PROVENANCE = "provenance.json"

    @classmethod
    def holds_run(cls, path: str | os.PathLike) -> bool:
        """Whether `path` is a run directory (holds a config.json)."""
        return (Path(path) / cls.CONFIG).is_file()

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def provenance_path(self) -> Path:
        return self.path / self.PROVENANCE

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def patching_path(self) -> Path:
        """patching.json: `diffrep patch`'s displacement fractions per checkpoint and layer."""
        return self.path / "patching.json"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    # -- the names of the evaluation's files ------------------------------------

    @property
    def scores_dir(self) -> Path:
        return self.path / "scores"

    def score_path(self, step: int, tag: str, suffix: str) -> Path:
        """scores/step_XXXXXXXX_TAG.SUFFIX: a checkpoint's scores with one sampler (`scoring.sampler_tag`)."""
        return self.scores_dir / f"step_{step:08d}_{tag}.{suffix}"

    def score_files(self, tag: str) -> list[Path]:
        """The summaries (json) of every checkpoint scored with one sampler, by step."""
        return sorted(self.scores_dir.glob(f"step_{'[0-9]' * 8}_{tag}.json"))

    def score_curve_path(self, tag: str) -> Path:
        return self.scores_dir / f"curve_{tag}.png"

    def probe_folder(self, probe) -> Path:
        """probes/ for the run's own probe set (`ProbeConfig`); probes-{input}-t{T}-g{G}-r{R}-n{S}/ for
        another input, timestep, grid, number of draws or noise seed, so that no re-probe with other
        settings overwrites the run's own results."""
        key = lambda q: (q.input, q.timestep, q.grid, q.draws, q.noise_seed)  # noqa: E731
        if key(probe) == key(self.config().probe):
            return self.path / "probes"
        p = probe
        return self.path / f"probes-{p.input}-t{p.timestep}-g{p.grid}-r{p.draws}-n{p.noise_seed}"

    def probe_path(self, probe, step: int, suffix: str) -> Path:
        """A checkpoint's probe file in `probe_folder`: step_XXXXXXXX.json (metrics, phases), .npz (arrays)."""
        return self.probe_folder(probe) / f"step_{step:08d}.{suffix}"

    def probe_files(self, probe) -> list[Path]:
        """The probe records (json) of a probe set, by step."""
        folder = self.probe_folder(probe)
        return sorted(folder.glob(f"step_{'[0-9]' * 8}.json")) if folder.is_dir() else []

    def probe_picture_path(self, probe, name: str, layer: str) -> Path:
        """NAME_LAYER.png in `probe_folder`, e.g. metrics_layer4.png."""
        return self.probe_folder(probe) / f"{name}_{layer}.png"

    def phases_path(self, probe) -> Path:
        return self.probe_folder(probe) / "phases.json"

    def sample_path(self, step: int, tag: str, seed: int) -> Path:
        """samples/step_XXXXXXXX_TAG_seedS.png: a grid drawn by `diffrep sample` (TAG as
        `scoring.sampler_tag`: sampler, steps, eta if not 1, weights if not EMA)."""
        return self.path / "samples" / f"step_{step:08d}_{tag}_seed{seed}.png"

    # -- creation and config --------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, cfg: Config) -> "RunDir":
        """A new run directory; refuses to touch one that already holds a run. What a kill inside an
        earlier `create` left (an empty checkpoints/ and an uncommitted config.json) is cleared first,
        so that the same command run again creates the run."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"--run-dir: {run.path} exists and is not a directory")
        run.remove_partial_create()
        if run.path.exists() and any(run.path.iterdir()):
            raise ConfigError(
                f"--run-dir: {run.path} already exists and is not empty; "
                f"resume it with `diffrep train --resume {run.path}` or choose another directory"
            )
        try:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--run-dir: cannot create {run.path} ({e.strerror})") from None
        atomic_write(run.config_path, cfg.to_json().encode())
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run directory (checked to hold a config.json)."""
        run = cls(path)
        if not run.config_path.is_file():
            raise ConfigError(f"RUN_DIR: {run.path} is not a diffrep run directory (no config.json)")
        return run

    def config(self) -> Config:
        try:
            data = read_json(self.config_path)
        except ConfigError as e:
            raise ConfigError(f"RUN_DIR: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"RUN_DIR: {self.config_path} must hold a JSON object")
        try:
            return Config.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{self.config_path}: {e}") from None

    def provenance(self) -> dict:
        """provenance.json: {"sessions": [one dict per training session, oldest first]} (fields in
        provenance.py); {} for a run written before diffrep recorded it. A damaged file is a ConfigError."""
        if not self.provenance_path.exists():
            return {}
        data = read_json(self.provenance_path)
        if not (isinstance(data, dict) and isinstance(data.get("sessions"), list)
                and all(isinstance(s, dict) for s in data["sessions"])):
            raise ConfigError(f"RUN_DIR: {self.provenance_path} is not a provenance record (a JSON object whose "
                              f"sessions is a list of objects); delete it and resume the run")
        return data

    def remove_partial_create(self) -> None:
        """Clear what a kill inside `create` leaves: an empty checkpoints/, no config.json, perhaps
        config.json's temporary file, and nothing else."""
        if not self.path.is_dir() or self.config_path.exists():
            return
        entries = list(self.path.iterdir())
        partial = [p for p in entries if p.name.startswith(f".{self.CONFIG}.tmp")
                   or (p == self.checkpoint_dir and p.is_dir() and not any(p.iterdir()))]
        if len(partial) == len(entries):
            for p in partial:
                p.rmdir() if p.is_dir() else p.unlink()

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of writes that a kill interrupted (see `atomic_write`)."""
        for tmp in self.path.rglob(".*.tmp*"):
            tmp.unlink()

    # -- lock -----------------------------------------------------------------

    def lock(self):
        """Hold an exclusive lock on the run for as long as the returned file stays open.

        Every command that writes into the run holds it (train, score, probe, the report of demo),
        so while it is held no other process is writing here, and the temporary files of writes
        that a kill interrupted are removed.
        """
        f = open(self.path / "lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ConfigError(f"RUN_DIR: {self.path} is in use by another diffrep process") from None
        self.remove_partial_writes()
        return f

    # -- metrics --------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        """Append one line; a single write of the whole line, then fsync."""
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict]:
        """All complete lines. A torn last line (a kill in the middle of `append_metrics`, so no
        newline) is skipped; any other line that is not a JSON object with an integer step was
        edited by hand, and is a ConfigError rather than a record silently dropped on resume."""
        if not self.metrics_path.exists():
            return []
        try:
            text = self.metrics_path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"RUN_DIR: {self.metrics_path} is unreadable ({e})") from None
        lines = text.split("\n")  # the last item is "" after a complete line, else the torn line
        records = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                record = None
            if not isinstance(record, dict) or type(record.get("step")) is not int:
                raise ConfigError(f"RUN_DIR: {self.metrics_path} line {number} is not a metrics record "
                                  f"(a JSON object with an integer step): {line[:80]!r}")
            records.append(record)
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep the lines up to `step`: what a resumed run will write again is dropped, not duplicated."""
        kept = [r for r in self.metrics() if r.get("step", 0) <= step]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    # -- checkpoints ----------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"step_{step:08d}.safetensors"

    def checkpoint_steps(self) -> list[int]:
        if not self.checkpoint_dir.is_dir():
            return []
        steps = [int(m.group(1)) for p in self.checkpoint_dir.iterdir() if (m := _CHECKPOINT_NAME.match(p.name))]
        return sorted(steps)

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        header = {
            "format": CHECKPOINT_FORMAT,
            "step": str(step),
            "checksum": tensors_checksum(tensors),
            "meta": json.dumps(meta),
        }
        atomic_write(self.checkpoint_path(step), save(tensors, metadata=header))

    def load_checkpoint(self, step: int) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, meta) of a checkpoint, verified against its checksum."""
        path = self.checkpoint_path(step)
        if not path.is_file():
            available = ", ".join(map(str, self.checkpoint_steps())) or "none"
            raise CheckpointError(f"--checkpoint: no checkpoint at step {step} in {self.path}; available: {available}")
        try:
            with safe_open(path, framework="pt") as f:
                header = f.metadata() or {}
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupted: {e})") from None
        if header.get("format") != CHECKPOINT_FORMAT or header.get("step") != str(step):
            raise CheckpointError(f"checkpoint {path} has format {header.get('format')!r}; this diffrep reads {CHECKPOINT_FORMAT}")
        if tensors_checksum(tensors) != header.get("checksum"):
            raise CheckpointError(f"checkpoint {path} fails its checksum (corrupted)")
        try:
            meta = json.loads(header["meta"])
        except (KeyError, json.JSONDecodeError):
            raise CheckpointError(f"checkpoint {path} has unreadable metadata") from None
        return tensors, meta

    def drop_resume_state(self, keep: int) -> None:
        """Strip optimizer and RNG state from all but the newest `keep` checkpoints holding it."""
        with_state = [step for step in self.checkpoint_steps() if self.has_resume_state(step)]
        for step in with_state[:-keep]:
            try:
                tensors, meta = self.load_checkpoint(step)
            except CheckpointError:
                continue  # a damaged old checkpoint is left as it is, for the user to inspect
            weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIXES)}
            self.save_checkpoint(step, weights, meta)

    def has_resume_state(self, step: int) -> bool:
        try:
            with safe_open(self.checkpoint_path(step), framework="pt") as f:
                return any(k.startswith(STATE_PREFIXES) for k in f.keys())
        except (SafetensorError, OSError):
            return False

    def resolve_steps(self, spec: str) -> list[int]:
        """'all', 'latest' or 'S1,S2,...' -> existing checkpoint steps."""
        if spec == "all":
            return self.checkpoint_steps()
        return [self.resolve_step(part.strip()) for part in spec.split(",")]

    def resolve_step(self, spec: str | int) -> int:
        """'latest' or a step number -> an existing checkpoint's step."""
        steps = self.checkpoint_steps()
        if spec == "latest":
            if not steps:
                raise CheckpointError(f"--checkpoint: {self.path} has no checkpoints yet")
            return steps[-1]
        try:
            step = int(spec)
        except ValueError:
            raise ConfigError(f"--checkpoint: must be 'latest' or a step number (got {spec!r})") from None
        if step not in steps:
            raise CheckpointError(
                f"--checkpoint: no checkpoint at step {step}; available: {', '.join(map(str, steps)) or 'none'}"
            )
        return step
