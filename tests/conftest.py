"""Shared test settings: one intra-op thread per xdist worker (2 workers on the 2-core CI machine)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
