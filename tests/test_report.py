"""evaluate.py depth --report: the folder, its pictures and charts, the resolution curve over runs, and
the page opened in a real headless browser (skipped, with the reason, where chromium is absent)."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

import evaluate
from depth.config import load_config
from depth.eval.gt import SparseGT, save_sparse_gt
from depth.eval.protocols import MAKE3D
from depth.eval.report import ERROR_RANGE, ReportView, panels
from depth.eval.scoring import align
from tests.evalset_fixtures import write_make3d
from tests.helpers import write_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _chromium(tmp_path, *args, timeout=120):
    """Run headless chromium on a file:// page; returns the completed process."""
    prof = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={prof}", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):

    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    write_checkpoint(path, load_config(overrides=["data.height=64", "data.width=128"]))
    return path


def _run(capsys, *args):
    rc = evaluate.main(["depth", "--no-progress", *map(str, args)])
    return rc, capsys.readouterr()


def test_report_folder_pictures_histogram_and_curve(tmp_path, capsys, checkpoint):
    root = write_make3d(tmp_path / "make3d")
    rep = tmp_path / "rep"
    rc, out = _run(capsys, "--dataset", "make3d", "--data-path", root, "--checkpoint", checkpoint,
                   "--report", rep, "--report-n", "1", "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    assert f"report: {rep / 'index.html'}" in out.out
    m = json.loads((tmp_path / "m.json").read_text())
    page = (rep / "index.html").read_text()
    assert html.escape(m["protocol"]) in page  # the same protocol line as --json
    for k in MAKE3D.metrics:
        assert f"<th>{k}</th>" in page and f"<td>{m[k]:.4f}</td>" in page
    assert len(re.findall(r'<rect class="bar"', page)) == 20 and "mean " in page  # the histogram
    assert "Resolution curve" not in page  # one size only so far
    pngs = sorted(p.name for p in (rep / "img").iterdir())
    assert len(pngs) == 8 and all(f'src="img/{n}"' in page for n in pngs)  # 1 worst + 1 best, 4 panels each
    worst = [n for n in pngs if n.startswith("worst")]
    inp = cv2.imread(str(rep / "img" / [n for n in worst if n.endswith("_input.png")][0]))
    assert inp.shape == (24, 48, 3)  # the network's view: the 2:1 crop of the 64 x 48 image
    gt = cv2.imread(str(rep / "img" / [n for n in worst if n.endswith("_gt.png")][0]))
    assert gt.shape == (21, 305, 3)  # the GT view: laser rows 17:38
    meta = json.loads((rep / "report.json").read_text())
    assert len(meta["runs"]) == 1 and meta["runs"][0]["size"] == [128, 64]
    # a second size into the same folder: the curve of both
    rc, out = _run(capsys, "--dataset", "make3d", "--data-path", root, "--checkpoint", checkpoint,
                   "--report", rep, "--report-n", "1", "--height", "32", "--width", "64")
    assert rc == 0, out.err
    meta = json.loads((rep / "report.json").read_text())
    assert sorted(r["size"] for r in meta["runs"]) == [[64, 32], [128, 64]]
    page = (rep / "index.html").read_text()
    assert "Resolution curve" in page and page.count("<circle") == 2 and "64x32" in page and "128x64" in page
    assert not any(p.name.startswith(".rep") for p in tmp_path.iterdir())  # no temporary folder left behind
    # the same size again replaces its entry instead of adding one
    rc, out = _run(capsys, "--dataset", "make3d", "--data-path", root, "--checkpoint", checkpoint,
                   "--report", rep, "--report-n", "1", "--height", "32", "--width", "64")
    assert rc == 0 and len(json.loads((rep / "report.json").read_text())["runs"]) == 2


def test_report_refuses_a_folder_that_is_not_a_report(tmp_path, capsys):
    gts = [np.where(np.random.default_rng(i).random((60, 200)) < 0.2, 10.0, 0).astype(np.float32)
           for i in range(3)]
    entries = [f"d/x_sync {i} l" for i in range(3)]
    save_sparse_gt(tmp_path / "gt.npz", SparseGT.from_dense(gts, entries=entries))
    (tmp_path / "split.txt").write_text("".join(f"d/x_sync {i} l\n" for i in range(3)))
    np.save(tmp_path / "d.npy", np.full((3, 16, 48), 0.1, np.float32))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    args = ("--disparities", tmp_path / "d.npy", "--gt", tmp_path / "gt.npz", "--split",
            tmp_path / "split.txt")
    rc, out = _run(capsys, *args, "--report", tmp_path / "mine")
    assert rc == 2 and f"--report {tmp_path / 'mine'} is not empty and holds no report.json" in out.err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # KITTI saved disparities without images: the input panel says so, the other three are drawn
    rc, out = _run(capsys, *args, "--report", tmp_path / "k", "--report-n", "1")
    assert rc == 0, out.err
    page = (tmp_path / "k" / "index.html").read_text()
    assert "input: not available" in page
    assert len(list((tmp_path / "k" / "img").iterdir())) == 6
    assert "kitti " in page and "Garg" in page


def test_error_panel_colours_the_scored_pixels_only():
    gt = np.zeros((21, 305), np.float32)
    gt[5, 5], gt[6, 6] = 10.0, 10.0
    disp = np.full((21, 305), 0.1, np.float32)  # 10 m
    disp[6, 6] = 1 / 12.5  # 25 % too far -> abs rel 0.25
    a = align(disp, gt, MAKE3D, median_scaling=False)
    pics = panels(ReportView(None, disp, gt, a, (0, 21, 0, 305)))
    err = pics["error"]
    turbo = cv2.cvtColor(cv2.applyColorMap(np.array([[0, int(0.25 / ERROR_RANGE * 255)]], np.uint8),
                                           cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)[0]
    np.testing.assert_array_equal(err[5, 5], turbo[0])
    np.testing.assert_array_equal(err[6, 6], turbo[1])
    assert tuple(err[15, 200]) == (64, 64, 64)  # not scored
    assert "input" not in pics and pics["gt"][0, 0].tolist() == [0, 0, 0]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; CI would "
                                             "have to install it to run this check)")
def test_report_opens_in_a_headless_browser(tmp_path, capsys, checkpoint):
    root = write_make3d(tmp_path / "make3d")
    rep = tmp_path / "rep"
    rc, out = _run(capsys, "--dataset", "make3d", "--data-path", root, "--checkpoint", checkpoint,
                   "--report", rep, "--report-n", "1")
    assert rc == 0, out.err
    url = (rep / "index.html").as_uri()
    r = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-images-loaded="8/8"' in r.stdout  # the browser decoded every picture
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, "--window-size=1280,1600", "--hide-scrollbars", f"--screenshot={shot}", url)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1600, 1280)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # rendered pictures and charts, not a blank page
