"""Writing the synthetic dataset in the KITTI raw layout (what: the package doc), and the one
call that makes sure it is there (:func:`ensure_synthetic`: generated once, whole or not at all).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from common.errors import ConfigError, DataError
from common.atomic import atomic_write_dir, atomic_write_text
from data.synthetic.lidar import simulate_lidar
from data.synthetic.render import render
from data.synthetic.rig import (
    CAM_POS_X,
    DATE,
    FRAME_RATE,
    HEIGHT,
    K_RECT,
    MAX_GT_DEPTH,
    T_CAM0_VELO,
    WIDTH,
    calib_number,
    cam_offsets,
    velo_to_cam,
)
from data.synthetic.scene import build_scene, drive_seed, drive_trajectory

__all__ = ["DEFAULTS", "MARKER", "drive_name", "generate", "ensure_synthetic"]

DEFAULTS = dict(seed=0, drives=4, frames=80, test_drives=1, gt_every=5)
FORMAT_VERSION = 1
MARKER = "synthetic.json"


def drive_name(drive: int, date: str = DATE) -> str:
    return f"{date}_drive_{drive:04d}_sync"


def calib_cam_to_cam_text(K: np.ndarray = K_RECT) -> str:
    lines = ["calib_time: 01-Jan-2030 12:00:00", "corner_dist: 9.950000e-02"]
    for cam in range(4):
        t = np.array([-CAM_POS_X[cam], 0.0, 0.0])  # X_cam = X_cam0 + t
        P = K @ np.concatenate([np.eye(3), t[:, None]], 1)
        size = f"{calib_number(WIDTH)} {calib_number(HEIGHT)}"
        lines += [
            f"S_0{cam}: {size}",
            f"K_0{cam}: " + " ".join(calib_number(v) for v in K.ravel()),
            f"D_0{cam}: " + " ".join(calib_number(0.0) for _ in range(5)),
            f"R_0{cam}: " + " ".join(calib_number(v) for v in np.eye(3).ravel()),
            f"T_0{cam}: " + " ".join(calib_number(v) for v in t),
            f"S_rect_0{cam}: {size}",
            f"R_rect_0{cam}: " + " ".join(calib_number(v) for v in np.eye(3).ravel()),
            f"P_rect_0{cam}: " + " ".join(calib_number(v) for v in P.ravel()),
        ]
    return "\n".join(lines) + "\n"


def calib_velo_to_cam_text() -> str:
    R, T = velo_to_cam()
    return "\n".join([
        "calib_time: 01-Jan-2030 12:00:00",
        "R: " + " ".join(calib_number(v) for v in R.ravel()),
        "T: " + " ".join(calib_number(v) for v in T),
        "delta_f: " + " ".join(calib_number(0.0) for _ in range(2)),
        "delta_c: " + " ".join(calib_number(0.0) for _ in range(2)),
    ]) + "\n"


def _timestamps(drive: int, frames: int, offset_ns: int = 0) -> str:
    base = np.datetime64("2030-01-01T12:00:00", "ns") + np.timedelta64(600 * drive, "s")
    out = []
    for i in range(frames):
        ts = base + np.timedelta64(int(round(i * 1e9 / FRAME_RATE)) + offset_ns, "ns")
        s = str(ts)  # YYYY-MM-DDTHH:MM:SS.nnnnnnnnn
        if "." not in s:
            s += ".000000000"
        out.append(s.replace("T", " "))
    return "\n".join(out) + "\n"


def write_png(path: Path, img: np.ndarray) -> None:
    if img.ndim == 3:
        img = img[..., ::-1]
    if not cv2.imwrite(str(path), np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def _poses_line(T: np.ndarray) -> str:
    return " ".join(f"{v:.9e}" for v in T[:3, :4].ravel())


def _params(seed, drives, frames, test_drives, gt_every) -> dict:
    return dict(generator="data.synthetic", version=FORMAT_VERSION, date=DATE, width=WIDTH, height=HEIGHT,
                seed=int(seed), drives=int(drives), frames=int(frames), test_drives=int(test_drives),
                gt_every=int(gt_every))


def _check_args(drives, frames, test_drives, gt_every):
    if frames < 3:
        raise ConfigError(f"frames must be >= 3 (train/test frames need both neighbours), got {frames}")
    if drives < 1 or not 0 <= test_drives <= drives:
        raise ConfigError(f"need drives >= 1 and 0 <= test_drives <= drives, got drives={drives}, "
                         f"test_drives={test_drives}")
    if gt_every < 1:
        raise ConfigError(f"gt_every must be >= 1, got {gt_every}")


def generate(out: str | Path, seed: int = DEFAULTS["seed"], drives: int = DEFAULTS["drives"],
             frames: int = DEFAULTS["frames"], test_drives: int = DEFAULTS["test_drives"],
             gt_every: int = DEFAULTS["gt_every"], verbose: bool = False) -> Path:
    """Write a synthetic KITTI-raw-format dataset into ``out`` (created if missing); deterministic
    per arguments. The last ``test_drives`` drives are test-only; training drives get GT depth every
    ``gt_every``-th frame, test frames (all frames with both neighbours) always. Returns ``out``."""
    _check_args(drives, frames, test_drives, gt_every)
    out = Path(out)
    day = out / DATE
    day.mkdir(parents=True, exist_ok=True)
    (day / "calib_cam_to_cam.txt").write_text(calib_cam_to_cam_text())
    (day / "calib_velo_to_cam.txt").write_text(calib_velo_to_cam_text())
    n_train_drives = drives - test_drives
    train_lines: list[str] = []
    test_lines: list[str] = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    n_frames = 0
    for drive in range(1, drives + 1):
        is_test = drive > n_train_drives
        dseed = drive_seed(seed, drive)
        poses0 = drive_trajectory(dseed, frames)
        scene = build_scene(dseed, length=float(poses0[-1, 2, 3]) + 100.0)
        name = drive_name(drive)
        ddir = day / name
        dirs = {k: ddir / k / "data" for k in ("image_02", "image_03", "velodyne_points")}
        gt_dir = ddir / "proj_depth" / "groundtruth" / "image_02"
        for p in [*dirs.values(), gt_dir]:
            p.mkdir(parents=True, exist_ok=True)
        for k in ("image_02", "image_03"):
            (ddir / k / "timestamps.txt").write_text(_timestamps(drive, frames))
        (ddir / "velodyne_points" / "timestamps.txt").write_text(_timestamps(drive, frames, -10_000_000))
        pose_lines = []
        for i in range(frames):
            T0 = poses0[i]
            T2 = T0 @ cam_offsets(2)
            T3 = T0 @ cam_offsets(3)
            pose_lines.append(_poses_line(T2))
            rgb2, depth2 = render(scene, T2, K_RECT, HEIGHT, WIDTH)
            rgb3, _ = render(scene, T3, K_RECT, HEIGHT, WIDTH)
            write_png(dirs["image_02"] / f"{i:010d}.png", rgb2)
            write_png(dirs["image_03"] / f"{i:010d}.png", rgb3)
            simulate_lidar(scene, T0 @ T_CAM0_VELO).tofile(dirs["velodyne_points"] / f"{i:010d}.bin")
            has_nb = 0 < i < frames - 1
            if (is_test and has_nb) or (not is_test and i % gt_every == 0):
                d = np.where((depth2 > 0) & (depth2 <= MAX_GT_DEPTH), depth2, 0.0)
                gt = np.clip(np.round(d.astype(np.float64) * 256.0), 0, 65535).astype(np.uint16)
                write_png(gt_dir / f"{i:010d}.png", gt)
            if has_nb:
                (test_lines if is_test else train_lines).append(f"{DATE}/{name} {i} l")
            n_frames += 1
            if verbose and (i + 1) % 25 == 0:
                el = time.perf_counter() - t0
                print(f"  drive {drive}/{drives} frame {i + 1}/{frames}  ({el / n_frames:.2f} s/frame)",
                      flush=True)
        (ddir / "poses_image_02.txt").write_text("\n".join(pose_lines) + "\n")
    # splits: ~10% of the training-drive frames go to val, chosen by the seed
    rng = np.random.default_rng([int(seed), 4242])
    n_val = int(round(0.1 * len(train_lines))) if len(train_lines) >= 2 else 0
    val_idx = set(rng.choice(len(train_lines), size=n_val, replace=False).tolist()) if n_val else set()
    split_dir = out / "splits"
    split_dir.mkdir(exist_ok=True)
    (split_dir / "train_files.txt").write_text(
        "".join(line + "\n" for k, line in enumerate(train_lines) if k not in val_idx))
    (split_dir / "val_files.txt").write_text(
        "".join(line + "\n" for k, line in enumerate(train_lines) if k in val_idx))
    (split_dir / "test_files.txt").write_text("".join(line + "\n" for line in test_lines))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    # completion marker last, atomically
    params = _params(seed, drives, frames, test_drives, gt_every)
    atomic_write_text(out / MARKER, json.dumps(params, indent=2, sort_keys=True) + "\n")
    if verbose:
        fps = n_frames / max(elapsed, 1e-9)
        print(f"generated {n_frames} frames in {elapsed:.1f} s: {fps:.2f} frames/s, "
              f"{elapsed / max(n_frames, 1):.3f} s/frame wall, {cpu / max(n_frames, 1):.3f} s/frame CPU "
              f"(2 cameras + lidar + GT)", flush=True)
    return out


def _read_marker(root: Path) -> dict | None:
    p = root / MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable synthetic dataset marker {p}: {e}") from None


def _compare(root: Path, have: dict, want: dict) -> None:
    diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: on disk {a!r}, requested {b!r}" for k, (a, b) in sorted(diff.items()))
        raise DataError(
            f"{root} holds a synthetic dataset generated with different parameters ({desc}). "
            f"Use another root, request the same parameters, or delete {root} yourself.")


def ensure_synthetic(root: str | Path, seed: int = DEFAULTS["seed"], drives: int = DEFAULTS["drives"],
                     frames: int = DEFAULTS["frames"], test_drives: int = DEFAULTS["test_drives"],
                     gt_every: int = DEFAULTS["gt_every"], verbose: bool = False) -> Path:
    """Generate the dataset into ``root`` unless it is already there (``root/synthetic.json``).

    Generation happens in a temporary sibling folder that is renamed to ``root`` at the end, so an
    interrupted run leaves no partial dataset at ``root``. Raises :class:`common.errors.DataError` if ``root`` holds
    a dataset made with other parameters, or is a non-empty folder without the marker."""
    _check_args(drives, frames, test_drives, gt_every)
    root = Path(root).resolve()
    want = _params(seed, drives, frames, test_drives, gt_every)
    have = _read_marker(root)
    if have is not None:
        _compare(root, have, want)
        if verbose:
            print(f"synthetic dataset already present at {root}")
        return root
    if root.exists():
        if not root.is_dir() or any(root.iterdir()):
            raise DataError(f"{root} exists and is not a synthetic dataset (no {MARKER}); "
                               f"refusing to write into it")
        root.rmdir()
    try:
        atomic_write_dir(root, lambda tmp: generate(tmp, seed, drives, frames, test_drives, gt_every,
                                                    verbose=verbose))
    except OSError:
        # another process finished first: accept its dataset if it matches
        have = _read_marker(root)
        if have is None:
            raise
        _compare(root, have, want)
    return root
