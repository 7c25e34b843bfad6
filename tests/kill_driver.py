"""Run `diffrep` commands that SIGKILL themselves at a chosen write: the kill points of test_faults.py.

Every file diffrep writes is committed by one `os.replace` (rundir.atomic_write), so "the n-th
os.replace of an atomic write" names a point in a command exactly, whatever the machine's speed
(other libraries' replaces, such as numba writing its JIT cache on a first run, are not counted):
killed *before* it, the n-th file is written to its temporary name but not committed (a torn
write); killed *after* it, the file is committed and nothing else happened. `kill_in_metrics_line` instead kills in the
middle of the n-th metrics.jsonl line (half of it written). Nothing in diffrep knows about this:
the command runs unchanged, and the kill is a real SIGKILL (no cleanup, no finally, no flush).

Started once per test module (`python tests/kill_driver.py`), it imports diffrep once and then
forks one child per job, so that a kill point costs the command's own work, not another two
seconds of importing torch. Protocol: one JSON job per line on stdin,
    {"argv": [...], "cwd": DIR, "log": FILE, "kill_before_write": n | "kill_after_write": n
     | "kill_in_metrics_line": n, "signal": "SIGKILL" (default) | "SIGINT"}
and one JSON result per line on stdout: {"signal": the signal that ended the child or null,
"code": its exit code or null, "writes": the os.replace calls it made (when it exited)}.
The child's stdout and stderr go to FILE.
"""

import json
import os
import signal
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # as in conftest.py: one thread per process

import torch  # noqa: E402
import torch._dynamo  # noqa: E402,F401  (imported by a first optimizer step anyway: paid once here, not per child)

from diffrep.cli import main  # noqa: E402
from diffrep.rundir import RunDir, temporary_path  # noqa: E402

torch.set_num_threads(1)


def run_job(job: dict) -> None:
    """In the forked child: the command, with its kill point armed. Never returns."""
    os.chdir(job["cwd"])
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    # Ctrl-C as at a terminal: a shell that starts the tests in the background (`make test &`)
    # starts them with SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sig = getattr(signal, job.get("signal", "SIGKILL"))
    writes = 0
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        nonlocal writes
        if Path(src) != temporary_path(Path(dst)):  # not atomic_write's: numba's JIT cache on a first run
            return real_replace(src, dst, **kwargs)
        writes += 1
        if writes == job.get("kill_before_write"):
            os.kill(os.getpid(), sig)
        real_replace(src, dst, **kwargs)
        if writes == job.get("kill_after_write"):
            os.kill(os.getpid(), sig)

    os.replace = replace
    lines = 0
    real_append = RunDir.append_metrics

    def append_metrics(self, record):
        nonlocal lines
        lines += 1
        if lines == job.get("kill_in_metrics_line"):
            text = json.dumps(record) + "\n"
            with open(self.metrics_path, "a") as f:
                f.write(text[: len(text) // 2])
            os.kill(os.getpid(), sig)
        real_append(self, record)

    RunDir.append_metrics = append_metrics
    code = main(job["argv"])
    sys.stdout.flush()
    sys.stderr.flush()
    with open(job["log"] + ".writes", "w") as f:
        f.write(str(writes))
    os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        for stale in (job["log"], job["log"] + ".writes"):
            if os.path.exists(stale):
                os.unlink(stale)
        pid = os.fork()
        if pid == 0:
            try:
                run_job(job)
            finally:
                os._exit(99)  # an exception escaped main(): its traceback is in the log
        _, status = os.waitpid(pid, 0)
        writes_file = job["log"] + ".writes"
        result = {
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "writes": int(open(writes_file).read()) if os.path.exists(writes_file) else None,
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    serve()
