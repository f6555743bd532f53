"""The synthetic test drives through other lenses (data/synthetic/lenses.py): the calibration
says the lens the images were rendered with, the velodyne GT is re-projected through it, and a
pixel's 3-D point is the one the original lens sees where the two calibrations say it is."""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import DataError
from data import synthetic as syn
from data.synthetic import rig
from data.calib import intrinsics_from_calib
from data.splits import read_split_file
from data.synthetic.lenses import lens_date, lens_intrinsics, lens_split_file, render_lenses
from data.velodyne import benchmark_png_path, generate_depth_map, read_benchmark_png, velodyne_path


@pytest.fixture(scope="module")
def lensed(tmp_path_factory):
    root = syn.generate(tmp_path_factory.mktemp("lenses"), seed=3, drives=2, frames=3, test_drives=1, gt_every=1)
    splits = render_lenses(root, [1.0, 0.75, 1.5])
    return root, splits


def test_splits_and_calibration(lensed):
    root, splits = lensed
    assert splits[0] == root / "splits" / "test_files.txt"
    base = read_split_file(splits[0])
    for f, split in zip((0.75, 1.5), splits[1:]):
        entries = read_split_file(split)
        assert [(e.frame, e.side) for e in entries] == [(e.frame, e.side) for e in base]
        assert {e.date for e in entries} == {lens_date(f)}
        K, size = intrinsics_from_calib(root / lens_date(f), cam=2)
        assert size == (syn.WIDTH, syn.HEIGHT)
        np.testing.assert_allclose(K[0, 0], rig.FX * f, rtol=1e-6)
        np.testing.assert_allclose(K[1, 1], rig.FY * f, rtol=1e-6)
        np.testing.assert_allclose(K[:2, 2], [rig.CX, rig.CY], rtol=1e-6)
        np.testing.assert_array_equal(K, lens_intrinsics(f).astype(K.dtype))


def test_velodyne_gt_reprojected_through_the_new_lens(lensed):
    """The velodyne scan projected with the lens' calibration lands on the lens' rendered depth."""
    root, splits = lensed
    e = read_split_file(splits[2])[0]
    velo = generate_depth_map(root / e.date, velodyne_path(root, e.folder, e.frame))
    dense = read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, "l"))
    m = (velo > 0) & (dense > 0)
    assert m.sum() > 500
    # velodyne depth is the forward coordinate x of the velodyne frame, 0.27 m behind camera 0
    rel = np.abs(velo[m] - dense[m]) / dense[m]
    assert np.median(rel) < 0.03
    base = read_split_file(splits[0])[0]
    velo1 = generate_depth_map(root / base.date, velodyne_path(root, base.folder, base.frame))
    assert (velo1 > 0).sum() > 1.5 * (velo > 0).sum()  # a 1.5x lens sees a narrower part of the scan


@pytest.mark.parametrize("factor", [0.75, 1.5])
def test_a_lens_pixel_is_where_the_original_lens_sees_it(lensed, factor):
    """Back-project pixels of the lens image with its K and depth; projected with the original K
    they must land on pixels of the original image with the same depth (same pose, same scene)."""
    root, splits = lensed
    e1 = read_split_file(splits[0])[0]
    ef = read_split_file(lens_split_file(root, factor))[0]
    d1 = read_benchmark_png(benchmark_png_path(root, e1.folder, e1.frame, "l"))
    df = read_benchmark_png(benchmark_png_path(root, ef.folder, ef.frame, "l"))
    K1, Kf = syn.K_RECT, lens_intrinsics(factor)
    v, u = np.nonzero(df > 0)
    z = df[v, u]
    # pixel (u, v) of the lens -> the same ray in the original camera
    u1 = (u - Kf[0, 2]) * K1[0, 0] / Kf[0, 0] + K1[0, 2]
    v1 = (v - Kf[1, 2]) * K1[1, 1] / Kf[1, 1] + K1[1, 2]
    ui, vi = np.round(u1).astype(int), np.round(v1).astype(int)
    inside = (ui >= 0) & (ui < syn.WIDTH) & (vi >= 0) & (vi < syn.HEIGHT)
    assert inside.mean() > (0.5 if factor < 1 else 0.99)
    ui, vi, z = ui[inside], vi[inside], z[inside]
    other = d1[vi, ui]
    ok = other > 0
    rel = np.abs(other[ok] - z[ok]) / z[ok]
    assert np.median(rel) < 0.01  # nearest-pixel sampling: only edges differ
    # and a wrong lens (the original K) would not line up
    uw = np.clip(np.round(u).astype(int), 0, syn.WIDTH - 1)[inside][ok]
    vw = np.clip(np.round(v).astype(int), 0, syn.HEIGHT - 1)[inside][ok]
    wrong = d1[vw, uw]
    assert np.median(np.abs(wrong - z[ok]) / z[ok]) > 3 * max(np.median(rel), 1e-3)


def test_rendering_again_is_skipped_and_needs_a_dataset(lensed, tmp_path):
    root, _ = lensed
    marker = root / lens_date(0.75) / "lens.json"
    mtime = marker.stat().st_mtime_ns
    render_lenses(root, [0.75])
    assert marker.stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="synthetic.json"):
        render_lenses(tmp_path, [0.75])
