"""The synthetic test drives seen through other lenses: the same street, poses and image size,
the focal length scaled by a factor (the principal point kept), written in the KITTI raw layout
beside the dataset it extends.

For a dataset made by :func:`data.synthetic.generate` at ``root`` and a lens factor ``f``::

    <root>/<DATE>_lens<f>/calib_cam_to_cam.txt      fx, fy multiplied by f (6 significant digits,
                                                    the values the images were rendered with)
    <root>/<DATE>_lens<f>/calib_velo_to_cam.txt     unchanged
    <root>/<DATE>_lens<f>/<drive>/image_02, image_03, velodyne_points, proj_depth/groundtruth
                                                    (the test drives only; the velodyne scans are
                                                    the original ones, hard-linked: the same poses
                                                    give the same scans, and evaluation projects
                                                    them through the new calibration)
    <root>/splits/test_files_lens<f>.txt            the test list of that lens
    <root>/<DATE>_lens<f>/lens.json                 parameters (the folder is renamed into place last)

``f < 1`` is a wider lens (objects look smaller, as if farther), ``f > 1`` a longer one. A model
whose depth is detached from apparent size keeps its error under one fixed scale across lenses.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.atomic import atomic_write_dir, atomic_write_text
from data.synthetic import rig, scene, writer
from data.synthetic.render import render

__all__ = ["lens_date", "lens_split_file", "render_lenses", "lens_intrinsics"]


def _tag(factor: float) -> str:
    return f"{float(factor):g}"


def lens_date(factor: float) -> str:
    """The date folder of lens ``factor`` (e.g. ``2030_01_01_lens0.75``)."""
    return f"{rig.DATE}_lens{_tag(factor)}"


def lens_split_file(root: str | Path, factor: float) -> Path:
    """The test split of lens ``factor`` (factor 1: the dataset's own ``test_files.txt``)."""
    if float(factor) == 1.0:
        return Path(root) / "splits" / "test_files.txt"
    return Path(root) / "splits" / f"test_files_lens{_tag(factor)}.txt"


def lens_intrinsics(factor: float) -> np.ndarray:
    """``K_RECT`` with fx, fy multiplied by ``factor``, rounded as the calibration file writes it."""
    if not factor > 0:
        raise ValueError(f"lens factor must be > 0, got {factor}")
    K = rig.K_RECT.copy()
    K[0, 0] = float(rig.calib_number(K[0, 0] * factor))
    K[1, 1] = float(rig.calib_number(K[1, 1] * factor))
    return K


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _render_lens(root: Path, factor: float, params: dict, verbose: bool) -> None:
    """Write lens ``factor``'s date folder whole (:func:`common.atomic.atomic_write_dir`), then its
    split file (atomically)."""
    date = lens_date(factor)
    K = lens_intrinsics(factor)
    drives, frames, test_drives = params["drives"], params["frames"], params["test_drives"]
    lines: list[str] = []
    t0 = time.perf_counter()

    def fill(tmp: Path) -> None:
        (tmp / "calib_cam_to_cam.txt").write_text(writer.calib_cam_to_cam_text(K))
        (tmp / "calib_velo_to_cam.txt").write_text(writer.calib_velo_to_cam_text())
        for drive in range(drives - test_drives + 1, drives + 1):
            dseed = scene.drive_seed(params["seed"], drive)
            poses0 = scene.drive_trajectory(dseed, frames)
            street = scene.build_scene(dseed, length=float(poses0[-1, 2, 3]) + 100.0)
            name = writer.drive_name(drive)
            src, ddir = root / rig.DATE / name, tmp / name
            dirs = {k: ddir / k / "data" for k in ("image_02", "image_03", "velodyne_points")}
            gt_dir = ddir / "proj_depth" / "groundtruth" / "image_02"
            for d in [*dirs.values(), gt_dir]:
                d.mkdir(parents=True)
            for k in ("image_02", "image_03", "velodyne_points"):
                shutil.copyfile(src / k / "timestamps.txt", ddir / k / "timestamps.txt")
            shutil.copyfile(src / "poses_image_02.txt", ddir / "poses_image_02.txt")
            for i in range(frames):
                T0 = poses0[i]
                rgb2, depth2 = render(street, T0 @ rig.cam_offsets(2), K, rig.HEIGHT, rig.WIDTH)
                rgb3, _ = render(street, T0 @ rig.cam_offsets(3), K, rig.HEIGHT, rig.WIDTH)
                writer.write_png(dirs["image_02"] / f"{i:010d}.png", rgb2)
                writer.write_png(dirs["image_03"] / f"{i:010d}.png", rgb3)
                _link_or_copy(src / "velodyne_points" / "data" / f"{i:010d}.bin",
                              dirs["velodyne_points"] / f"{i:010d}.bin")
                if 0 < i < frames - 1:
                    d = np.where((depth2 > 0) & (depth2 <= rig.MAX_GT_DEPTH), depth2, 0.0)
                    gt = np.clip(np.round(d.astype(np.float64) * 256.0), 0, 65535).astype(np.uint16)
                    writer.write_png(gt_dir / f"{i:010d}.png", gt)
                    lines.append(f"{date}/{name} {i} l")
            if verbose:
                print(f"  lens {_tag(factor)}: drive {drive} ({time.perf_counter() - t0:.0f} s)", flush=True)
        marker = {"lens_factor": float(factor), "fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
                  "base": {k: params[k] for k in ("seed", "drives", "frames", "test_drives", "version")}}
        (tmp / "lens.json").write_text(json.dumps(marker, indent=2) + "\n")

    final = root / date
    if final.exists():  # a lens of another dataset (the caller checked): replaced whole
        shutil.rmtree(final)
    atomic_write_dir(final, fill)
    atomic_write_text(lens_split_file(root, factor), "".join(line + "\n" for line in lines))


def render_lenses(root: str | Path, factors, verbose: bool = False) -> list[Path]:
    """Render the test drives of the synthetic dataset at ``root`` through every lens factor in
    ``factors`` that is not there yet (``lens.json`` present and matching); factor 1 is the dataset
    itself. Returns the test split file of every factor, in order. :class:`common.errors.DataError` when
    ``root`` is not a complete synthetic dataset."""
    root = Path(root)
    marker = root / writer.MARKER
    if not marker.is_file():
        raise DataError(f"{marker} not found: render the lenses of a complete synthetic dataset "
                                f"(python -m data.synthetic --out DIR)")
    params = json.loads(marker.read_text())
    out = []
    for f in factors:
        if float(f) != 1.0:
            done = root / lens_date(f) / "lens.json"
            if not (done.is_file() and lens_split_file(root, f).is_file()
                    and json.loads(done.read_text()).get("base", {}).get("seed") == params["seed"]):
                _render_lens(root, float(f), params, verbose)
        out.append(lens_split_file(root, f))
    return out
