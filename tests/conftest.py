"""Test-wide settings: one thread per process, derandomized property tests.

The tests use tiny models, which gain nothing from a second thread; with two threads per
process, a training subprocess and the test process (or any other load on a 2-core machine)
oversubscribe the cores and OpenMP's spinning makes tiny forward passes 10-100x slower.
"""

import os

import torch
from hypothesis import settings

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the training subprocesses the tests start
torch.set_num_threads(1)

# Property tests draw the same examples on every run (CI included): a failure is reproducible, and
# a pass does not depend on the luck of the draw.
settings.register_profile("deterministic", derandomize=True)
settings.load_profile("deterministic")
