"""Sweeps: many runs over a grid of settings x seeds, on this machine or on a Ray cluster.

A sweep is a base config, a grid ({"section.key": [values]}) and a list of seeds. Every point
of the cartesian product grid x seeds is one ordinary run, so every other diffrep tool
(`score`, `probe`, `sample`, `train --resume`) works on each of them unchanged:

    SWEEP_DIR/
      sweep.json          {"version", "base": config dict, "grid", "seeds", "runs": [names]}
      runs/<name>/        one ordinary run directory per point (see diffrep/rundir.py)

A run's name spells out its point, keys sorted, e.g. `data.dx=0.5,training.lr=0.001,seed=1`
(characters other than letters, digits and `._+-` become `_`; a name over 100 characters is
cut and ends with a hash of the point instead, and so does a name that sanitizing made collide).

Running a sweep is idempotent and resumable: a finished run (`training.is_finished`: its last
step, or its adaptive stop after phase C, is checkpointed) is skipped without starting a process, an interrupted run resumes exactly (training.py), a missing
run starts. Invoking a sweep again on the same SWEEP_DIR with the same base config, grid and
seeds therefore finishes what is left; with a different one it is refused (ConfigError), so a
sweep directory always holds exactly the runs its sweep.json describes.

Two backends run the same unit of work, `run_one` (one run, in a worker process):
  local  a ProcessPoolExecutor (spawn) on this machine; workers x torch threads <= cores.
         Ctrl-C: queued runs never start, runs in flight write a checkpoint and stop, and
         TrainingInterrupted is raised. If the sweep process is killed, its workers notice
         within a second and exit (no orphan keeps training or holding a run's lock).
         A script calling run_sweep needs the usual `if __name__ == "__main__":` guard (spawn).
  ray    one Ray task per run, on a local Ray instance or an existing cluster (`address`);
         a run whose worker or node is lost is retried by Ray (`max_retries`) and resumes from
         its last checkpoint. On a cluster, SWEEP_DIR must be on a filesystem every node
         sees at the same path, and diffrep must be installed on every node.
A failing run (a bad config.json, a diverged loss, a full disk) is reported as failed with a
one-line error; the other runs go on.

`aggregate` reads run directories only (not sweep.json), so it also works on runs made by
hand with `diffrep train`, and on several sweeps at once: one row per run and checkpoint,
every config setting as a `section.key` column next to that checkpoint's metrics.
`write_table` writes the rows as CSV; `time_to` and `by_setting` summarize them (e.g. the
first step each run reaches 90% accuracy, or phase C, grouped over seeds).

The CLI wiring (cli.py):
    diffrep sweep:      run_sweep(sweep_dir, make_config(preset, overrides), parse_grid(grid_items),
                                  parse_seeds(seeds_text), backend=..., workers=..., address=...)
    resuming by folder: run_sweep(sweep_dir, *load_sweep(sweep_dir), ...)
    diffrep aggregate:  write_table(aggregate(dirs), out)
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from .config import Config, ConfigError
from .data import BumpDataset
from .rundir import RunDir, atomic_write
from .training import is_finished as training_finished

SWEEP_VERSION = 1
MAX_NAME = 100  # characters of a run name; longer ones are cut and end with a hash
BACKENDS = ("local", "ray")


# ----------------------------------------------------------------------------
# The grid: parsing "key=v1,v2" and expanding grid x seeds into named, validated configs.


def parse_grid(items: list[str]) -> dict[str, list]:
    """["training.lr=1e-3,3e-4", "model.widths=[8,16,16],[16,32,32]"] -> {key: [values]}.

    Values are split at top-level commas (not inside [...], {...} or "...") and each is parsed
    as JSON, else kept as a plain string (so `scoring.sampler=ddim,ddpm` works unquoted).
    Linked settings (`expand_grid`): "data.dx+data.dy=[0.5,0.5],[0.1,1]".
    """
    grid: dict[str, list] = {}
    for text in items:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid: expected key=v1,v2,... (e.g. training.lr=1e-3,3e-4), got {text!r}")
        if key in grid:
            raise ConfigError(f"--grid: {key} is given twice; list all its values in one --grid {key}=v1,v2")
        grid[key] = [_parse_value(piece, text) for piece in _split_top_level(raw, text)]
    return grid


def _split_top_level(raw: str, text: str) -> list[str]:
    pieces, depth, in_string, start = [], 0, False, 0
    for i, ch in enumerate(raw):
        if in_string:
            in_string = not (ch == '"' and raw[i - 1] != "\\")
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            pieces.append(raw[start:i])
            start = i + 1
    if depth != 0 or in_string:
        raise ConfigError(f"--grid: unbalanced brackets or quotes in {text!r}")
    pieces.append(raw[start:])
    return pieces


def _parse_value(piece: str, text: str):
    piece = piece.strip()
    if not piece:
        raise ConfigError(f"--grid: empty value in {text!r}")
    try:
        return json.loads(piece)
    except json.JSONDecodeError:
        return piece


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix like '0-2,7' -> [0, 1, 2, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise ConfigError(f"--seeds: expected seeds like 0,1,2 or 0-4, got {text!r}") from None
    return seeds


def expand_grid(base: Config, grid: dict[str, list], seeds: list[int]) -> list[tuple[str, Config]]:
    """Every point of grid x seeds as (run name, validated config); grid keys vary slowest.

    A linked key "k1+k2" sets several settings together: each of its values is a list with one
    value per setting, e.g. {"data.dx+data.dy": [[0.5, 0.5], [0.1, 1.0]]} (dx = dy = 0.5, then
    dx = 0.1 with dy = 1), so a grid can hold points that are not a cartesian product.

    Raises ConfigError (one line, naming the setting or --grid / --seeds) on an unknown key,
    an invalid value, an empty value list, a repeated value or seed, a setting given by two
    keys, a linked value of the wrong length, or two points that give the same config (e.g. 1
    and 1.0 for a float setting).
    """
    if not seeds:
        raise ConfigError("--seeds: at least one seed is needed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"--seeds: seeds must be integers (got {seed!r})")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: each seed may appear once (got {seeds})")
    settings = [setting for key in grid for setting in key.split("+")]
    if "training.seed" in settings:
        raise ConfigError("--grid: training.seed is set by --seeds, not by --grid")
    twice = [s for s, n in collections.Counter(settings).items() if n > 1]
    if twice:
        raise ConfigError(f"--grid: {twice[0]} is set by more than one grid key; give each setting once")
    keys = sorted(grid)
    for key in keys:
        values = grid[key]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--grid: {key} needs a non-empty list of values (got {values!r})")
        width = len(key.split("+"))
        if width > 1 and not all(isinstance(v, list) and len(v) == width for v in values):
            bad = next(v for v in values if not (isinstance(v, list) and len(v) == width))
            raise ConfigError(f"--grid: {key} links {width} settings; each value must be a list of {width} "
                              f"values, one per setting (got {bad!r})")
        canon = [_canonical(v) for v in values]
        if len(set(canon)) != len(canon):
            raise ConfigError(f"--grid: {key} lists a value twice ({values})")

    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        overrides = {}
        for key, value in point.items():
            overrides.update(zip(key.split("+"), value) if "+" in key else [(key, value)])
        for seed in seeds:
            cfg = base.with_overrides({**overrides, "training.seed": seed})  # ConfigError names the key
            BumpDataset(cfg.data)  # lattices that are too large, masks that leave no data
            points.append((point, seed, cfg))

    seen: dict[str, dict] = {}
    for point, seed, cfg in points:
        text = cfg.to_json()
        if text in seen:
            raise ConfigError(f"--grid: {seen[text]} and {point} give the same config; list each value once")
        seen[text] = point

    names = [_run_name(point, seed) for point, seed, _ in points]
    counts = collections.Counter(names)
    for i, (point, seed, _) in enumerate(points):
        if counts[names[i]] > 1:  # sanitizing made two names equal: the hash tells them apart
            names[i] = f"{names[i][:MAX_NAME - 11]}-{_digest(point, seed)}"
    return [(name, cfg) for name, (_, _, cfg) in zip(names, points)]


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _digest(point: dict, seed: int) -> str:
    return hashlib.sha1(_canonical({"point": point, "seed": seed}).encode()).hexdigest()[:10]


def _run_name(point: dict, seed: int) -> str:
    parts = [f"{key}={_format(value)}" for key, value in sorted(point.items())] + [f"seed={seed}"]
    name = ",".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 11]}-{_digest(point, seed)}"
    return name


def _format(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


# ----------------------------------------------------------------------------
# The sweep directory.


def prepare_sweep_dir(sweep_dir, base: Config, grid: dict, seeds: list[int], names: list[str]) -> Path:
    """Write SWEEP_DIR/sweep.json, or check that the one there describes the same sweep."""
    root = Path(sweep_dir)
    manifest = root / "sweep.json"
    record = {"version": SWEEP_VERSION, "base": base.to_dict(), "grid": grid, "seeds": seeds, "runs": names}
    if manifest.is_file():
        try:
            existing = json.loads(manifest.read_text())
            same = Config.from_dict(existing["base"]) == base and sorted(existing["runs"]) == sorted(names)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
            raise ConfigError(f"{root}: sweep.json is unreadable ({e}); fix or remove it") from None
        if not same:
            raise ConfigError(
                f"{root}: holds a sweep with another base config, grid or seeds (sweep.json: grid "
                f"{_canonical(existing.get('grid'))}, seeds {existing.get('seeds')}); repeat those "
                f"to resume it, or choose another sweep directory"
            )
        return root
    if (root / "config.json").exists():
        raise ConfigError(f"{root}: is a run directory, not a sweep directory; choose another sweep directory")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root}: exists and is not an empty folder or a sweep directory (no sweep.json)")
    try:
        (root / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{root}: cannot create the sweep directory ({e.strerror})") from None
    atomic_write(manifest, (json.dumps(record, indent=1) + "\n").encode())
    return root


def load_sweep(sweep_dir) -> tuple[Config, dict, list[int]]:
    """(base config, grid, seeds) of an existing sweep: `run_sweep(d, *load_sweep(d))` resumes it."""
    manifest = Path(sweep_dir) / "sweep.json"
    try:
        record = json.loads(manifest.read_text())
        if record["version"] != SWEEP_VERSION:
            raise ConfigError(f"{manifest}: sweep version {record['version']!r}; this diffrep reads version {SWEEP_VERSION}")
        return Config.from_dict(record["base"]), record["grid"], record["seeds"]
    except FileNotFoundError:
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no sweep.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{manifest}: unreadable ({e})") from None


def is_finished(run_dir, cfg: Config) -> bool:
    """The run holds `cfg` and is finished (`training.is_finished`; checked without locking)."""
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        return False
    try:
        if run.config() != cfg:
            return False
    except ConfigError:
        return False
    return training_finished(cfg, run)


# ----------------------------------------------------------------------------
# The unit of work: one run, in a worker process of either backend.


def run_one(run_dir: str, config_dict: dict, threads: int) -> dict:
    """Create (or resume, or skip) and train one run; never raises.

    Returns {"name", "run", "status": "finished" | "skipped" | "failed", "error", "seconds"},
    with a one-line "Type: message" error when it failed.
    """
    start = time.perf_counter()
    result = {"name": Path(run_dir).name, "run": str(run_dir), "status": "failed", "error": None}
    try:
        import torch

        from .cli import new_run  # imported here: cli.py imports this module
        from .training import train

        torch.set_num_threads(max(1, int(threads)))
        cfg = Config.from_dict(config_dict)
        run = RunDir(run_dir)
        _remove_partial_create(run)
        if run.config_path.exists():
            if RunDir.open(run_dir).config() != cfg:
                raise ConfigError(f"{run.config_path}: differs from the sweep's config for this run; move the run away")
            if is_finished(run_dir, cfg):
                result["status"] = "skipped"
            else:
                train(cfg, run, resume=True, quiet=True)
                result["status"] = "finished"
        else:
            train(cfg, new_run(run_dir, cfg), quiet=True)
            result["status"] = "finished"
    except Exception as e:  # one run's failure is reported, never allowed to stop the sweep
        result["error"] = one_line(e)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _remove_partial_create(run: RunDir) -> None:
    """A kill inside RunDir.create leaves an empty checkpoints/ and no config.json: clear it."""
    if not run.path.is_dir() or run.config_path.exists():
        return
    entries = list(run.path.iterdir())
    partial = [p for p in entries if p.name.startswith(".config.json.tmp")
               or (p.name == "checkpoints" and p.is_dir() and not any(p.iterdir()))]
    if len(partial) == len(entries):
        for p in partial:
            p.rmdir() if p.is_dir() else p.unlink()


def one_line(e: BaseException, limit: int = 500) -> str:
    text = " ".join(str(e).split())
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------
# Running a sweep.


def run_sweep(
    sweep_dir,
    base_cfg: Config,
    grid: dict[str, list],
    seeds: list[int],
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0.0,
    max_retries: int = 2,
    quiet: bool = False,
) -> list[dict]:
    """Run (or finish) every point of grid x seeds into SWEEP_DIR/runs/<name>.

    Returns one result per run, in grid order (see `run_one`); prints one line per run as it
    completes unless `quiet`. Everything that can be rejected is checked before any run starts.
    local: `workers` processes (default: cores // cpus_per_run, at most one per run to do),
    each with cores // workers torch threads. ray: one task per run with `cpus_per_run` CPUs
    (its torch threads) and `gpus_per_run` GPUs, on the cluster at `address` or a local
    instance of `workers` x cpus_per_run CPUs (default: all cores).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: must be an integer >= 1 (got {workers!r})")
    if not cpus_per_run >= 1:
        raise ConfigError(f"--cpus-per-run: must be >= 1 (got {cpus_per_run!r})")
    if not gpus_per_run >= 0:
        raise ConfigError(f"--gpus-per-run: must be >= 0 (got {gpus_per_run!r})")
    if address is not None and backend != "ray":
        raise ConfigError("--address: only with --backend ray")
    points = expand_grid(base_cfg, grid, seeds)
    root = prepare_sweep_dir(sweep_dir, base_cfg, grid, seeds, [name for name, _ in points])
    runs_dir = (root / "runs").resolve()

    report = _Reporter(len(points), quiet)
    results: dict[str, dict] = {}
    todo: list[tuple[str, dict]] = []
    for name, cfg in points:
        run_dir = runs_dir / name
        if is_finished(run_dir, cfg):
            results[name] = {"name": name, "run": str(run_dir), "status": "skipped", "error": None, "seconds": 0.0}
            report(results[name])
        else:
            todo.append((str(run_dir), cfg.to_dict()))

    def done(result: dict) -> None:
        results[result["name"]] = result
        report(result)

    if todo:
        execute = _run_local if backend == "local" else _run_ray
        execute(todo, done, workers=workers, address=address, cpus_per_run=cpus_per_run,
                gpus_per_run=gpus_per_run, max_retries=max_retries)
    return [results[name] for name, _ in points]


class _Reporter:
    """Prints `[3/12] finished  data.dx=0.5,seed=1  41.2 s` lines as results come in."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.done, self.quiet = total, 0, quiet

    def __call__(self, result: dict) -> None:
        self.done += 1
        if self.quiet:
            return
        width = len(str(self.total))
        line = f"[{self.done:>{width}}/{self.total}] {result['status']:<8}  {result['name']}  {result['seconds']:.1f} s"
        print(line + (f"  {result['error']}" if result["error"] else ""), flush=True)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- local backend ----------------------------------------------------------------


def _run_local(todo, done, workers, cpus_per_run, **_) -> None:
    """Run `todo` in a pool of spawned worker processes, calling done(result) as each completes.

    Ctrl-C: no queued run starts, runs in flight write a checkpoint and stop (training.py's
    SIGINT handler), then TrainingInterrupted is raised; the same sweep run again finishes them.
    """
    cores = cpu_count()
    workers = min(workers or max(1, cores // int(cpus_per_run)), len(todo))
    threads = max(1, cores // workers)
    context = multiprocessing.get_context("spawn")  # no fork: torch's threads do not survive it
    # Workers are reused across runs (each run seeds itself); not max_tasks_per_child, which can
    # deadlock the pool on Python 3.11-3.13 (CPython gh-115634).
    stop = context.Event()
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(), stop)
    )
    futures = {pool.submit(_local_task, run_dir, cfg, threads): run_dir for run_dir, cfg in todo}
    pending = set(futures)
    try:
        for future in concurrent.futures.as_completed(futures):
            pending.discard(future)
            done(_future_result(future, futures[future]))
    except KeyboardInterrupt:
        stop.set()
        for future in pending:
            future.cancel()
        while not all(f.done() for f in pending):  # again and again: a run may be starting up
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    try:
                        os.kill(process.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            concurrent.futures.wait(pending, timeout=2.0)
        for future in pending:
            if not future.cancelled():
                done(_future_result(future, futures[future]))
        from .training import TrainingInterrupted

        raise TrainingInterrupted(
            "sweep interrupted; the runs in flight wrote a checkpoint; run the same sweep again to finish it"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_STOP = None  # in a worker process: set when the sweep is interrupted


def _worker_init(parent_pid: int, stop) -> None:
    """In each worker: Ctrl-C is left to train()'s handler (it checkpoints, then stops), and the
    worker exits when the sweep process is gone (killed), instead of training on as an orphan."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)  # the run resumes from its last checkpoint next time

    threading.Thread(target=watch, daemon=True, name="diffrep-orphan-watch").start()


def _local_task(run_dir: str, config_dict: dict, threads: int) -> dict:
    if _STOP is not None and _STOP.is_set():
        return {"name": Path(run_dir).name, "run": run_dir, "status": "failed",
                "error": "not started: the sweep was interrupted", "seconds": 0.0}
    return run_one(run_dir, config_dict, threads)


def _future_result(future, run_dir: str) -> dict:
    try:
        return future.result()
    except BaseException as e:  # the worker process died (killed, out of memory): run_one could not report
        return {"name": Path(run_dir).name, "run": run_dir, "status": "failed", "error": one_line(e), "seconds": 0.0}


# -- ray backend ------------------------------------------------------------------


def _run_ray(todo, done, workers, address, cpus_per_run, gpus_per_run, max_retries) -> None:
    """One Ray task per run, calling done(result) as each completes; Ray retries (`max_retries`)
    a run whose worker or node died, and the retry resumes it from its last checkpoint."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend: ray is not installed; pip install 'ray>=2.9' or use --backend local") from None
    import logging

    started = False
    if not ray.is_initialized():
        quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if address:
            ray.init(address=address, **quiet)
        else:
            num_cpus = int(workers * cpus_per_run) if workers else max(cpu_count(), int(cpus_per_run))
            ray.init(num_cpus=num_cpus, object_store_memory=128 * 2**20, **quiet)  # results are small dicts
        started = True
    pending = {}
    try:
        available = ray.cluster_resources()
        for resource, need, flag in (("CPU", cpus_per_run, "--cpus-per-run"), ("GPU", gpus_per_run, "--gpus-per-run")):
            if need > available.get(resource, 0):
                message = f"{flag}: a run needs {need:g} {resource}s; the Ray cluster has {available.get(resource, 0):g}"
                if not address:
                    raise ConfigError(message)
                print(f"diffrep: warning: {message} (runs wait until an autoscaler adds them)", file=sys.stderr)
        task = ray.remote(
            num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries, retry_exceptions=False
        )(run_one)
        threads = max(1, int(cpus_per_run))
        pending = {task.remote(run_dir, cfg, threads): run_dir for run_dir, cfg in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run_dir = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # retries exhausted: the worker or node kept dying
                    result = {"name": Path(run_dir).name, "run": run_dir, "status": "failed",
                              "error": one_line(e), "seconds": 0.0}
                done(result)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)  # the runs resume from their last checkpoint next time
        from .training import TrainingInterrupted

        raise TrainingInterrupted(
            "sweep interrupted; the runs in flight were stopped; run the same sweep again to resume them"
        ) from None
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------
# Aggregation: one table row per run and checkpoint, from run directories only.


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
            if "config.json" in files:
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
            values[k].add(_canonical(row.get(k)))
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
        group = groups.setdefault(_canonical(setting), {"setting": setting, "runs": []})
        if row["run"] not in group["runs"]:
            group["runs"].append(row["run"])
    for group in groups.values():
        group["runs"].sort(key=lambda run: (seeds[run], run))
        group["seeds"] = [seeds[run] for run in group["runs"]]
        group["values"] = [per_run.get(run) for run in group["runs"]]
    return list(groups.values())
