"""Shared fixtures: the real KITTI sample (read from ../shared or $KITTI_SAMPLE, never copied here)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the project's packages, before importing them
    sys.path.insert(0, str(ROOT))

from data.synthetic import generate  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# folders of session-scoped fixtures (tmp_path_factory.mktemp names): kept for the whole run
SESSION_FOLDERS = ("xdg_cache", "tiny_synthetic")


@pytest.fixture(autouse=True, scope="module")
def _drop_module_folders(tmp_path_factory):
    """At the end of each test module, remove the folders its module- and function-scoped fixtures
    made with ``tmp_path_factory.mktemp`` (checkpoints, model folders: ~100 MB each), so the suite's
    temporary space is one module's, not the sum of all. Tests' own ``tmp_path`` folders (named after
    the test) go when the test passes (:func:`_drop_passed_tmp_path`)."""
    base = tmp_path_factory.getbasetemp()
    before = {p.name for p in base.iterdir()}
    yield
    for p in base.iterdir():
        if (p.name not in before and p.is_dir() and not p.is_symlink() and not p.name.startswith("test_")
                and not p.name.startswith(SESSION_FOLDERS)):
            shutil.rmtree(p, ignore_errors=True)


CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[CALL_PASSED] = report.passed


@pytest.fixture(autouse=True)
def _drop_passed_tmp_path(request):
    """A passed test's ``tmp_path`` is removed as soon as the test ends (pytest would keep every one
    until the session ends; a failed test's stays for a look), so the suite's temporary space is about
    one test's at a time."""
    yield
    path = request.node.funcargs.get("tmp_path")
    if path is not None and request.node.stash.get(CALL_PASSED, False):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches the code keeps between runs (projected validation GT) go to a folder of this test
    session, not the user's ~/.cache; subprocesses inherit it."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def _find_kitti_sample() -> Path | None:
    candidates = []
    if os.environ.get("KITTI_SAMPLE"):
        candidates.append(Path(os.environ["KITTI_SAMPLE"]))
    candidates += [ROOT.parent / "shared" / "kitti_sample", ROOT / ".." / "shared" / "kitti_sample"]
    for c in candidates:
        if (c / "2011_09_26" / "calib_cam_to_cam.txt").is_file():
            return c.resolve()
    return None


KITTI_SAMPLE = _find_kitti_sample()


@pytest.fixture(scope="session")
def kitti_sample() -> Path:
    """Root of the real KITTI sample (KITTI raw layout); skips where it is not available."""
    if KITTI_SAMPLE is None:
        pytest.skip("real KITTI sample not found: set KITTI_SAMPLE or place it at ../shared/kitti_sample")
    return KITTI_SAMPLE


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A tiny synthetic KITTI-format dataset (2 drives x 8 frames, the second for test), made once."""
    root = tmp_path_factory.mktemp("tiny_synthetic")
    return generate(root, seed=0, drives=2, frames=8, test_drives=1, gt_every=2)


@pytest.fixture
def one_thread():
    """Tiny tensors: extra intra-op threads only add overhead (and thrash on a busy CPU)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
