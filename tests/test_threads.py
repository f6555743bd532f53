"""common/threads.py: torch keeps its CPU thread count across numba's parallel kernels (metrics,
synthetic rendering). numba's OpenMP layer sets the thread count when it first starts its threads,
so each call site is checked as the first numba kernel of a fresh process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest
import torch

from common.threads import keep_torch_threads

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_keep_torch_threads_restores_the_count_a_block_changed():
    with keep_torch_threads():
        torch.set_num_threads(2)
    assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), keep_torch_threads():
        torch.set_num_threads(2)
        raise RuntimeError("the count comes back on an error too")
    assert torch.get_num_threads() == 1


_METRICS = """
import numpy as np
from depth.eval.gt import SparseGT
from depth.eval.metrics import compute_depth_metrics
rng = np.random.default_rng(0)
gt = rng.uniform(2, 60, (6, 40, 120)).astype(np.float32)
pred = (1.0 / gt * rng.uniform(0.9, 1.1, gt.shape)).astype(np.float32)
compute_depth_metrics(pred, {target})
"""
_RENDER = """
from data import synthetic as S
seed = S.drive_seed(0, 1)
poses = S.drive_trajectory(seed, 2)
K = S.K_RECT.copy()
K[:2] *= 0.1
S.render(S.build_scene(seed, length=float(poses[-1, 2, 3]) + 50.0), poses[0], K, 38, 124)
"""


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one core: numba and torch both run one thread")
@pytest.mark.parametrize("code", [_METRICS.format(target="gt"), _METRICS.format(target="SparseGT.from_dense(list(gt))"),
                                  _RENDER], ids=["dense-metrics", "sparse-metrics", "render"])
def test_a_first_numba_kernel_leaves_torch_on_its_thread_count(code):
    script = "import torch\nassert torch.get_num_threads() == 1\n" + code + "\nprint(torch.get_num_threads())\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]
