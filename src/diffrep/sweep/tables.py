"""A sweep's runs as one table, and summaries of it.

`aggregate` reads run directories only (not sweep.json), so it also works on runs made by
hand with `diffrep train`, and on several sweeps at once: one row per run and checkpoint,
every config setting as a `section.key` column next to that checkpoint's metrics.
`write_table` writes the rows as CSV; `time_to` and `by_setting` summarize them (e.g. the
first step each run reaches 90% accuracy, or phase C, grouped over seeds).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

from ..config import Config, ConfigError
from ..rundir import RunDir, atomic_write
from .grid import canonical




def find_runs(dirs: list[str]) -> list[Path]:
    """Run directories (holding a config.json) at or below each of `dirs`, sorted, each once."""
    found: dict[Path, Path] = {}  # resolved path -> the path as found
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise ConfigError(f"{d}: no such directory")
        here = []
        for folder, subdirs, files in os.walk(root):
            subdirs.sort()
            if RunDir.CONFIG in files:
                here.append(Path(folder))
                subdirs.clear()  # a run's own folders hold no runs
        if not here:
            raise ConfigError(f"{d}: holds no run directories (no config.json below it)")
        for path in here:
            found.setdefault(path.resolve(), path)
    return sorted(found.values())


def flatten_config(cfg: Config) -> dict:
    """{"data.dx": 1.0, ..., "model.widths": "[16, 32, 64]", "preset": "tiny", "version": 1}.

    Every setting is a column; lists (widths, holdout regions, probe layers) are JSON strings,
    so that every value is a scalar both in memory and in the CSV.
    """
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = json.dumps(value) if isinstance(value, list) else value

    walk(cfg.to_dict(), "")
    return flat


def config_columns() -> list[str]:
    """The names of the config columns of `aggregate`'s rows. (The config sections `probe.*` and
    `phase.*` share a prefix with the metric columns `probe.<layer>.<metric>` and `phase.<layer>`;
    the names never coincide, since layers are hook names, and this list tells them apart.)"""
    return list(flatten_config(Config()))


def config_from_row(row: dict) -> Config:
    """The validated Config of an `aggregate` row (in memory, not read back from CSV): its config
    columns, unflattened, with the list settings that `flatten_config` wrote as JSON parsed back."""
    nested: dict = {}
    for key, default in flatten_config(Config()).items():
        if key not in row:
            continue
        value = row[key]
        if isinstance(default, str) and default.startswith("[") and isinstance(value, str):
            value = json.loads(value)  # a list setting (widths, holdout regions, probe layers)
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Config.from_dict(nested)


def aggregate(dirs: list[str], warn=None) -> list[dict]:
    """One row per (run, checkpoint) of every run found at or below `dirs`.

    Columns: `run` (the run directory), `name` (its folder name), `step`, then every config
    setting flattened as `section.key` (all of them, not only the ones that differ, so that
    rows from different sweeps line up; `varying_keys(rows)` names the ones that differ), then
    the metrics.jsonl lines of that step merged: the score line (`score.sampler`,
    `score.<group>.<metric>`), the probe line (`probe.<layer>.<metric>`, `phase.<layer>`) and
    the training line (`loss`, `lr`, `loss_t*`, ...) when a log interval ends at that step.
    A run whose config.json or metrics.jsonl is unreadable is left out with a warning on stderr.

    With pandas: `pd.DataFrame(rows)`, or from the CSV of `write_table`: `df = pd.read_csv(path)`;
    list settings are JSON strings (`df["model.widths"].map(json.loads)`), empty cells are NaN,
    e.g. `df[df.step == df.groupby("run").step.transform("max")]` is the last checkpoint of each run.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    rows = []
    for path in find_runs(dirs):
        run = RunDir(path)
        try:
            config = flatten_config(run.config())
            records = run.metrics()
        except ConfigError as e:
            warn(f"diffrep: skipping {path}: {e}")
            continue
        by_step: dict[int, dict] = {}
        for record in records:
            step = record.get("step")
            if isinstance(step, int):
                by_step.setdefault(step, {}).update({k: v for k, v in record.items() if k != "step"})
        for step in run.checkpoint_steps():
            rows.append({"run": str(path), "name": path.name, "step": step, **config, **by_step.get(step, {})})
    return rows


def varying_keys(rows: list[dict]) -> list[str]:
    """The config columns whose value differs between the runs of `rows` (in column order)."""
    known = set(config_columns())
    config_keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k in known]
    values: dict[str, set] = {k: set() for k in config_keys}
    for row in rows:
        for k in config_keys:
            values[k].add(canonical(row.get(k)))
    return [k for k in config_keys if len(values[k]) > 1]


def write_table(rows: list[dict], path) -> Path:
    """Write rows as CSV (atomically): header = union of keys in order of first appearance."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out: {path} is a folder; name the CSV file to write")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: the folder of {path} does not exist")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue().encode())
    return path


def read_table(path) -> list[dict]:
    """The rows of a `write_table` CSV as `aggregate` made them: empty cells None, numbers and
    booleans parsed, the list settings kept as the JSON text `flatten_config` writes."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            return [{k: v if k in ("run", "name") else _parsed(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the table ({e})") from None


def _parsed(text: str):
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


# ----------------------------------------------------------------------------
# Summaries per run and per setting, for the aggregate report.


def time_to(rows: list[dict], key: str, threshold) -> dict[str, int | None]:
    """For each run, the first checkpoint step where `key` reaches `threshold`, None if never.

    Numbers reach it when >= threshold (e.g. "score.train.accuracy", 0.9); strings when equal
    (e.g. "phase.layer4", "C"). Rows without the key (unscored checkpoints) are ignored.
    """
    first: dict[str, int | None] = {}
    for row in sorted(rows, key=lambda r: (r["run"], r["step"])):
        run = row["run"]
        first.setdefault(run, None)
        value = row.get(key)
        if first[run] is not None or value is None or value == "":
            continue
        if isinstance(threshold, str):
            hit = str(value) == threshold
        else:
            try:
                hit = float(value) >= threshold
            except (TypeError, ValueError):
                hit = False
        if hit:
            first[run] = int(row["step"])
    return first


def final_value(rows: list[dict], key: str) -> dict[str, object]:
    """For each run, `key` at its last checkpoint that has it (None if none has it)."""
    last: dict[str, object] = {}
    for row in sorted(rows, key=lambda r: (r["run"], r["step"])):
        value = row.get(key)
        if value is not None and value != "":
            last[row["run"]] = value
        else:
            last.setdefault(row["run"], None)
    return last


def curve(rows: list[dict], run: str, key: str) -> list[tuple[int, float]]:
    """[(step, value)] of `key` over the checkpoints of one run that have it, by step."""
    return sorted((int(r["step"]), float(r[key])) for r in rows
                  if r["run"] == run and r.get(key) is not None and r.get(key) != "")


def by_setting(rows: list[dict], per_run: dict[str, object], ignore=("training.seed",)) -> list[dict]:
    """Group a per-run value (e.g. from `time_to`) by setting: the varying config keys other than
    the seed. -> [{"setting": {key: value}, "runs": [run, ...], "seeds": [seed, ...], "values":
    [value per run]}], each group's runs in seed order (run names need not sort that way: a linked
    grid key names its runs by a hash)."""
    keys = [k for k in varying_keys(rows) if k not in ignore]
    seeds = {row["run"]: int(row.get("training.seed") or 0) for row in rows}
    groups: dict[str, dict] = {}
    for row in rows:
        setting = {k: row.get(k) for k in keys}
        group = groups.setdefault(canonical(setting), {"setting": setting, "runs": []})
        if row["run"] not in group["runs"]:
            group["runs"].append(row["run"])
    for group in groups.values():
        group["runs"].sort(key=lambda run: (seeds[run], run))
        group["seeds"] = [seeds[run] for run in group["runs"]]
        group["values"] = [per_run.get(run) for run in group["runs"]]
    return list(groups.values())
