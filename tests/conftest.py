"""Test-wide settings: one thread per process.

The tests use tiny models, which gain nothing from a second thread; with two threads per
process, a training subprocess and the test process (or any other load on a 2-core machine)
oversubscribe the cores and OpenMP's spinning makes tiny forward passes 10-100x slower.
"""

import os

import torch

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the training subprocesses the tests start
torch.set_num_threads(1)
