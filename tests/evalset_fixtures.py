"""Small Make3D, Cityscapes and NYUv2 folders in the datasets' own file formats, made by the tests.

Make3D: ``Test134/img-<id>.jpg`` + ``Gridlaserdata/depth_sph_corr-<id>.mat`` (MATLAB v5 via
``scipy.io.savemat``, ``Position3DGrid`` 55 x 305 x 4). Cityscapes: ``leftImg8bit/test/<city>/
<frame>_leftImg8bit.png``, uint16 ``disparity`` PNGs, ``camera`` JSON. NYUv2:
``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 writes it (HDF5 with a 512-byte MATLAB header block,
axes reversed) and ``splits.mat`` (v5, one-based ``testNdxs``).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.helpers import procedural_image

MAKE3D_IDS = ("10.21op2-p-015t000", "10.21op2-p-139t000", "op1-p-108t000")
MAKE3D_HW = (64, 48)  # portrait 3:4 like the 2272 x 1704 originals: the 2:1 crop is rows 20:44


def write_make3d(root: Path, depths: list[np.ndarray] | None = None) -> Path:
    """Three images and laser grids; ``depths[i]`` (55 x 305) becomes ``Position3DGrid[:, :, 3]``
    (default: a smooth 2-60 m field); channels 0-2 hold other numbers (Y, X, Z)."""
    import scipy.io

    (root / "Test134").mkdir(parents=True, exist_ok=True)
    (root / "Gridlaserdata").mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(MAKE3D_IDS):
        img = procedural_image(*MAKE3D_HW, seed=k)
        cv2.imwrite(str(root / "Test134" / f"img-{i}.jpg"), img[:, :, ::-1])
        d = depths[k] if depths is not None else (2.0 + 58.0 * np.linspace(0, 1, 55)[:, None]
                                                  * np.linspace(0.5, 1, 305)[None, :] + k)
        grid = np.stack([np.full_like(d, -1.0), np.full_like(d, 3.0), 0.9 * d, d], axis=2)
        scipy.io.savemat(str(root / "Gridlaserdata" / f"depth_sph_corr-{i}.mat"), {"Position3DGrid": grid})
    return root


CITY_FRAMES = (("berlin", "berlin_000000_000019"), ("bonn", "bonn_000003_000019"))
CITY_HW = (128, 256)  # 1024 x 2048 scaled by 1/8: GT view rows 0:96, box rows 32:96, cols 24:232
CITY_CAMERA = {"extrinsic": {"baseline": 0.2, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1, "yaw": -0.0195,
                             "z": 1.22},
               "intrinsic": {"fx": 100.0, "fy": 101.0, "u0": 128.0, "v0": 64.0}}


def write_cityscapes(root: Path, raw: list[np.ndarray] | None = None) -> Path:
    """Two frames; ``raw[i]`` (uint16 H x W) is the disparity PNG (default: 10 m everywhere:
    ``p - 1 = 512``, baseline x fx = 20 m px, so disparity 2 px). Writes a split file too."""
    for k, (city, frame) in enumerate(CITY_FRAMES):
        for kind, name in (("leftImg8bit", "leftImg8bit.png"), ("disparity", "disparity.png"),
                           ("camera", "camera.json")):
            (root / kind / "test" / city).mkdir(parents=True, exist_ok=True)
        img = procedural_image(*CITY_HW, seed=10 + k)
        cv2.imwrite(str(root / "leftImg8bit" / "test" / city / f"{frame}_leftImg8bit.png"), img[:, :, ::-1])
        p = raw[k] if raw is not None else np.full(CITY_HW, 513, np.uint16)
        cv2.imwrite(str(root / "disparity" / "test" / city / f"{frame}_disparity.png"), p)
        cam = root / "camera" / "test" / city / f"{frame}_camera.json"
        cam.write_text(json.dumps(CITY_CAMERA, indent=4))
    (root / "test_files.txt").write_text("".join(f"{c} {f}\n" for c, f in CITY_FRAMES))
    return root


NYU_FRAMES = 4
NYU_TEST = (3, 1)  # one-based, in splits.mat order


def nyu_frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``k`` (zero-based) as MATLAB holds it: ``480 x 640 x 3`` uint8, ``480 x 640`` metres;
    both asymmetric in rows and columns, so a transposition is visible."""
    img = procedural_image(480, 640, seed=20 + k)
    r = np.arange(480, dtype=np.float32)[:, None]
    c = np.arange(640, dtype=np.float32)[None, :]
    return img, (1.0 + 0.01 * r + 0.001 * c + k).astype(np.float32)


def write_nyuv2(root: Path, depths: dict[int, np.ndarray] | None = None, test=NYU_TEST) -> Path:
    """``nyu_depth_v2_labeled.mat`` (HDF5, MATLAB v7.3 layout) with ``NYU_FRAMES`` frames and
    ``splits.mat`` (v5). ``depths[k]`` replaces frame ``k``'s depth map."""
    import h5py
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    path = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        imgs = f.create_dataset("images", (NYU_FRAMES, 3, 640, 480), np.uint8)
        deps = f.create_dataset("depths", (NYU_FRAMES, 640, 480), np.float32)
        for k in range(NYU_FRAMES):
            img, d = nyu_frame(k)
            if depths and k in depths:
                d = depths[k]
            imgs[k] = img.transpose(2, 1, 0)  # MATLAB column-major: axes reversed in HDF5
            deps[k] = d.T
    with open(path, "r+b") as f:  # MATLAB's header text in the user block
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
                b"HDF5 schema 1.00 .")
    scipy.io.savemat(str(root / "splits.mat"), {"testNdxs": np.array(test, np.float64)[:, None],
                                                "trainNdxs": np.array([2, 4], np.float64)[:, None]})
    return root
