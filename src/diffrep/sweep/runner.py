"""Running a sweep: its directory, the unit of work (one run) and the two backends that run it.

Running a sweep is idempotent and resumable: a finished run (`training.is_finished`: its last
step, or its adaptive stop after phase C, is checkpointed) is skipped without starting a
process, an interrupted run resumes exactly (training.py), a missing run starts. Invoking a sweep
again on the same SWEEP_DIR with the same base config, grid and seeds therefore finishes what is
left; with a different one it is refused (ConfigError), so a sweep directory always holds exactly
the runs its sweep.json describes.

Two backends run the same unit of work, `run_one` (one run, in a worker process):
  local  a ProcessPoolExecutor (spawn) on this machine; workers x torch threads <= cores.
         Ctrl-C: queued runs never start, runs in flight write a checkpoint and stop, and
         TrainingInterrupted is raised. If the sweep process is killed, its workers notice
         within a second and exit (no orphan keeps training or holding a run's lock).
         A script calling run_sweep needs the usual `if __name__ == "__main__":` guard (spawn).
  ray    one Ray task per run (the optional extra diffrep[ray]), on a local Ray instance or an
         existing cluster (`address`); a run whose worker or node is lost is retried by Ray
         (`max_retries`) and resumes from its last checkpoint. On a cluster, SWEEP_DIR must be
         on a filesystem every node sees at the same path, and diffrep must be installed on
         every node.
A failing run (a bad config.json, a diverged loss, a full disk) is reported as failed with a
one-line error; the other runs go on.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from ..config import Config, ConfigError
from ..rundir import RunDir, atomic_write
from ..run import new_run, train
from ..training import STOP_SIGNALS, Terminated, TrainingInterrupted, catch_unless_ignored
from ..training import is_finished as training_finished
from .grid import canonical, expand_grid

SWEEP_VERSION = 1
BACKENDS = ("local", "ray")




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
                f"{canonical(existing.get('grid'))}, seeds {existing.get('seeds')}); repeat those "
                f"to resume it, or choose another sweep directory"
            )
        return root
    if RunDir.holds_run(root):
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
    with a one-line "Type: message" error when it failed, and "stopped_by" (the signal number) when
    a signal stopped it after a checkpoint.
    """
    start = time.perf_counter()
    result = {"name": Path(run_dir).name, "run": str(run_dir), "status": "failed", "error": None}
    try:
        torch.set_num_threads(max(1, int(threads)))
        cfg = Config.from_dict(config_dict)
        run = RunDir(run_dir)
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
    except TrainingInterrupted as e:  # stopped by a signal, its checkpoint written
        result["error"], result["stopped_by"] = one_line(e), int(e.signal)
    except Exception as e:  # one run's failure is reported, never allowed to stop the sweep
        result["error"] = one_line(e)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _ray_run_one(run_dir: str, config_dict: dict, threads: int) -> dict:
    """`run_one` as a Ray task. A run stopped by SIGTERM (a node being preempted) has written its
    checkpoint; its worker then exits as a killed one would, so that Ray retries the run
    (max_retries), which resumes from that checkpoint, instead of reporting it as failed."""
    result = run_one(run_dir, config_dict, threads)
    if result.get("stopped_by") == signal.SIGTERM:
        os._exit(128 + signal.SIGTERM)
    return result


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

    Ctrl-C or SIGTERM (`training.Terminated`, where the command line installed its handler): no
    queued run starts, runs in flight are sent the same signal, write a checkpoint and stop
    (training.py's handler), then TrainingInterrupted is raised with that signal; the same sweep
    run again finishes them.
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
    except (KeyboardInterrupt, Terminated) as e:
        signum = signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM
        stop.set()
        for future in pending:
            future.cancel()
        while not all(f.done() for f in pending):  # again and again: a run may be starting up
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    try:
                        os.kill(process.pid, signum)
                    except ProcessLookupError:
                        pass
            concurrent.futures.wait(pending, timeout=2.0)
        for future in pending:
            if not future.cancelled():
                done(_future_result(future, futures[future]))
        raise TrainingInterrupted(
            f"sweep stopped by {signal.Signals(signum).name}; the runs in flight wrote a checkpoint; "
            f"run the same sweep again to finish it", signum) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_STOP = None  # in a worker process: set when the sweep is interrupted


def _worker_init(parent_pid: int, stop) -> None:
    """In each worker: Ctrl-C and SIGTERM are left to train()'s handler (it checkpoints, then stops;
    between runs they are dropped, and the sweep process forwards them), and the worker exits when
    the sweep process is gone (killed), instead of training on as an orphan. A stop signal the
    sweep process ignores (a shell script's `diffrep sweep ... &` ignores Ctrl-C) reaches the worker
    ignored, and stays so: a Ctrl-C to the whole process group stops no run of a sweep that goes on."""
    global _STOP
    _STOP = stop
    catch_unless_ignored(STOP_SIGNALS, _between_runs)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)  # the run resumes from its last checkpoint next time

    threading.Thread(target=watch, daemon=True, name="diffrep-orphan-watch").start()


def _between_runs(_signum, _frame) -> None:
    """A stop signal between runs: dropped (the sweep process forwards it to the runs in flight)."""


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


def import_ray():
    """The ray module. Ray is an optional extra of diffrep: when it is missing, a ConfigError says how
    to install it (`diffrep sweep --backend ray` asks for it before it writes anything)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend: ray is not installed; install it with pip install 'diffrep[ray]', "
                          "or use --backend local") from None
    return ray


def _run_ray(todo, done, workers, address, cpus_per_run, gpus_per_run, max_retries) -> None:
    """One Ray task per run, calling done(result) as each completes; Ray retries (`max_retries`)
    a run whose worker or node died, and the retry resumes it from its last checkpoint."""
    ray = import_ray()
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
        )(_ray_run_one)
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
        raise TrainingInterrupted(
            "sweep interrupted; the runs in flight were stopped; run the same sweep again to resume them"
        ) from None
    finally:
        if started:
            ray.shutdown()


