"""Procedural synthetic driving sequences written in the KITTI raw layout.

A static street (textured road with lane marks and crossings, curbs, tiled sidewalks, building
facades with window grids, parked cars, poles with signs, trees, a far backdrop and sky) is ray cast
analytically (planes, axis-aligned boxes, vertical cylinders) with numba. Every texture is a
function of the 3-D surface point, and shading depends on the surface normal only (Lambertian, no
shadows), so a surface looks the same from every view: warping one frame into another with the
true depth and pose reproduces it, which makes the data usable for self-supervised training and for
exact geometric tests.

What is written (``generate``), ``<date>`` = :data:`DATE`::

    <out>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt          (KITTI format)
    <out>/<date>/<date>_drive_NNNN_sync/
        image_02/data/%010d.png, image_03/data/%010d.png             (RGB, 1242x375)
        image_02/timestamps.txt, image_03/timestamps.txt
        velodyne_points/data/%010d.bin                               (float32 Nx4, velodyne frame)
        velodyne_points/timestamps.txt
        proj_depth/groundtruth/image_02/%010d.png                    (uint16, depth_z*256, 0=invalid)
        poses_image_02.txt                                           (3x4 camera-to-world per frame)
    <out>/splits/{train,val,test}_files.txt                          (Monodepth2 split format)
    <out>/synthetic.json                                             (parameters; written last)

World frame: x right, y down (ground plane at y = 0), z along the street. Camera frames follow
:mod:`depth.geometry` (x right, y down, z forward). Camera 02 sits 0.06 m left of camera 0, camera
03 0.48 m right of it (baseline 0.54 m); the velodyne is 0.27 m behind and 0.08 m above camera 0.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numba import njit, prange

__all__ = [
    "DATE", "WIDTH", "HEIGHT", "K_RECT", "Scene", "build_scene", "drive_seed", "drive_trajectory",
    "render", "cast_rays", "simulate_lidar", "generate", "ensure_synthetic", "drive_name",
    "T_CAM0_VELO", "cam_offsets", "DEFAULTS",
]

DATE = "2030_01_01"
WIDTH, HEIGHT = 1242, 375
# Values exactly as written to calib_cam_to_cam.txt (6 significant digits), so that the files and
# the rendering agree bit for bit.
FX = FY = 7.215377e02
CX, CY = 6.095593e02, 1.728540e02
K_RECT = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
# Camera centres in the (rectified) camera-0 frame, metres along x.
CAM_POS_X = {0: 0.0, 1: 0.54, 2: -0.06, 3: 0.48}
CAM_HEIGHT = 1.65  # camera 0 above the ground
MAX_GT_DEPTH = 255.0  # uint16 / 256 limit
LIDAR_MAX_RANGE = 120.0
FRAME_RATE = 10.0

DEFAULTS = dict(seed=0, drives=4, frames=80, test_drives=1, gt_every=5)
FORMAT_VERSION = 1
MARKER = "synthetic.json"


def _fmt(v: float) -> str:
    return f"{float(v) + 0.0:.6e}"  # + 0.0 turns -0.0 into 0.0


def _round6(a: np.ndarray) -> np.ndarray:
    """Values as they read back from a file written with ``%.6e``."""
    return np.array([float(_fmt(x)) for x in np.asarray(a, dtype=np.float64).ravel()]).reshape(np.shape(a))


def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def _velo_to_cam() -> tuple[np.ndarray, np.ndarray]:
    """R, T of calib_velo_to_cam.txt: ``X_cam0 = R @ X_velo + T`` (rounded as written)."""
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # velo (fwd,left,up) -> cam
    R = _rot_x(0.0085) @ _rot_y(-0.0041) @ _rot_z(0.0023) @ axes
    T = np.array([-0.0041, -0.0790, -0.2710])  # velo origin in cam-0 coordinates
    return _round6(R), _round6(T)


def _make_T(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


T_CAM0_VELO = _make_T(*_velo_to_cam())


def cam_offsets(cam: int) -> np.ndarray:
    """``T_cam0_camI``: pose of camera ``cam`` (0..3) in the rectified camera-0 frame."""
    T = np.eye(4)
    T[0, 3] = CAM_POS_X[cam]
    return T


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------
# Object table columns (float64): type (0 box, 1 vertical cylinder), xmin, ymin, zmin, xmax, ymax,
# zmax (the bounding box; a cylinder's axis is the box centre line, its radius half the x extent),
# material, r, g, b (base colour), style (a per-object texture seed).
OBJ_COLS = 12
BOX, CYL = 0, 1
MAT_FACADE, MAT_CAR, MAT_GLASS, MAT_POLE, MAT_CURB, MAT_FOLIAGE, MAT_TRUNK, MAT_SIGN = range(1, 9)


@dataclass
class Scene:
    """A static street. ``objects``: ``(N, 12)`` table (see ``OBJ_COLS``); ``ground``: road half
    width, crossing positions; ``tex_seed``: seed of the procedural textures; ``length``: metres of
    street along +z covered by the scene (cameras should stay within ``[0, length - 100]``)."""

    objects: np.ndarray
    ground: np.ndarray
    tex_seed: int
    length: float

    @property
    def road_half_width(self) -> float:
        return float(self.ground[0])


def _obj(kind, lo, hi, mat, rgb, style):
    return [float(kind), *map(float, lo), *map(float, hi), float(mat), *map(float, rgb), float(style)]


_FACADE_COLOURS = np.array([
    [0.78, 0.70, 0.60], [0.70, 0.45, 0.35], [0.85, 0.82, 0.72], [0.55, 0.58, 0.62], [0.80, 0.65, 0.45],
    [0.62, 0.52, 0.48], [0.90, 0.88, 0.84], [0.50, 0.40, 0.35], [0.72, 0.76, 0.70], [0.83, 0.60, 0.52],
])
_CAR_COLOURS = np.array([
    [0.85, 0.85, 0.85], [0.10, 0.10, 0.12], [0.60, 0.08, 0.08], [0.12, 0.20, 0.50], [0.55, 0.56, 0.58],
    [0.90, 0.90, 0.88], [0.25, 0.35, 0.25], [0.80, 0.60, 0.10], [0.30, 0.30, 0.33], [0.45, 0.10, 0.30],
])


def drive_seed(seed: int, drive: int) -> int:
    """Seed of drive ``drive`` (1-based) of a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(drive), 7321]).generate_state(1)[0])


def build_scene(seed: int, length: float = 200.0) -> Scene:
    """Random street layout for ``seed`` covering ``z`` in about ``[-30, length]`` (metres)."""
    rng = np.random.default_rng(seed)
    road_half = float(rng.uniform(6.0, 7.2))
    sidewalk = float(rng.uniform(3.0, 4.5))
    objs: list[list[float]] = []
    z0, z_end = -30.0, float(length)

    def style():
        return float(rng.integers(1, 1 << 20))

    for side in (-1.0, 1.0):
        # curb: a long low box at the road edge
        x_in = road_half
        lo = (min(side * x_in, side * (x_in + 0.25)), -0.15, z0)
        hi = (max(side * x_in, side * (x_in + 0.25)), 0.0, z_end)
        objs.append(_obj(BOX, lo, hi, MAT_CURB, (0.68, 0.67, 0.64), style()))
        # buildings
        z = z0 + rng.uniform(-5, 0)
        while z < z_end:
            blen = rng.uniform(8.0, 26.0)
            if rng.random() < 0.25:  # alley or gap
                z += rng.uniform(2.5, 8.0)
                continue
            face = road_half + sidewalk + rng.uniform(0.0, 1.5)
            depth = rng.uniform(8.0, 15.0)
            height = rng.uniform(6.0, 22.0)
            xa, xb = side * face, side * (face + depth)
            col = _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))] * rng.uniform(0.85, 1.1)
            objs.append(_obj(BOX, (min(xa, xb), -height, z), (max(xa, xb), 0.0, z + blen),
                             MAT_FACADE, np.clip(col, 0, 1), style()))
            z += blen
        # backdrop: taller blocks behind the first row, closing the view sideways
        z = z0 - 40
        while z < z_end + 40:
            blen = rng.uniform(25.0, 60.0)
            face = rng.uniform(32.0, 38.0)
            height = rng.uniform(12.0, 35.0)
            xa, xb = side * face, side * (face + 12.0)
            col = 0.5 * _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))] + 0.25
            objs.append(_obj(BOX, (min(xa, xb), -height, z), (max(xa, xb), 0.0, z + blen),
                             MAT_FACADE, col, style()))
            z += blen
        # parked cars along the road edge
        z = z0 + rng.uniform(0, 6)
        while z < z_end:
            if rng.random() < 0.3:
                z += rng.uniform(4.0, 14.0)
                continue
            clen = rng.uniform(3.9, 4.7)
            cw = rng.uniform(1.65, 1.85)
            xc = side * (road_half - 1.05 + rng.uniform(-0.15, 0.1))
            col = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
            st = style()
            objs.append(_obj(BOX, (xc - cw / 2, -rng.uniform(0.95, 1.1), z), (xc + cw / 2, -0.22, z + clen),
                             MAT_CAR, col, st))
            ca = z + clen * rng.uniform(0.22, 0.32)
            cb = z + clen * rng.uniform(0.72, 0.8)
            top = -rng.uniform(1.4, 1.55)
            objs.append(_obj(BOX, (xc - cw / 2 + 0.1, top, ca), (xc + cw / 2 - 0.1, objs[-1][2], cb),
                             MAT_GLASS, col, st))
            z += clen + rng.uniform(0.8, 3.0)
        # poles (some with a sign)
        z = z0 + rng.uniform(0, 10)
        while z < z_end:
            r = rng.uniform(0.07, 0.12)
            h = rng.uniform(4.5, 8.0)
            xc = side * (road_half + 0.6)
            objs.append(_obj(CYL, (xc - r, -h, z - r), (xc + r, 0.0, z + r), MAT_POLE, (0.5, 0.5, 0.52),
                             style()))
            if rng.random() < 0.5:
                sh = rng.uniform(2.2, 2.8)
                col = ((0.85, 0.1, 0.1), (0.1, 0.3, 0.8), (0.9, 0.8, 0.1))[int(rng.integers(3))]
                objs.append(_obj(BOX, (xc - 0.35, -sh - 0.7, z - r - 0.04), (xc + 0.35, -sh, z - r - 0.01),
                                 MAT_SIGN, col, style()))
            z += rng.uniform(14.0, 26.0)
        # trees: trunk + crown
        z = z0 + rng.uniform(0, 8)
        while z < z_end:
            if rng.random() < 0.35:
                z += rng.uniform(6.0, 15.0)
                continue
            xc = side * (road_half + sidewalk * rng.uniform(0.55, 0.75))
            r = rng.uniform(0.12, 0.2)
            th = rng.uniform(2.2, 3.0)
            objs.append(_obj(CYL, (xc - r, -th - 0.3, z - r), (xc + r, 0.0, z + r), MAT_TRUNK,
                             (0.35, 0.25, 0.18), style()))
            cs = rng.uniform(2.0, 3.2)
            ch = rng.uniform(2.0, 3.5)
            half = min(cs / 2, sidewalk * 0.45)
            objs.append(_obj(BOX, (xc - half, -th - ch, z - cs / 2), (xc + half, -th, z + cs / 2),
                             MAT_FOLIAGE,
                             (0.22 + 0.1 * rng.random(), 0.42 + 0.12 * rng.random(), 0.15), style()))
            z += rng.uniform(9.0, 18.0)
    # the street ends with a wall of buildings far ahead (bounded depth everywhere but the sky)
    objs.append(_obj(BOX, (-60.0, -rng.uniform(18, 28), z_end + 5.0), (60.0, 0.0, z_end + 15.0), MAT_FACADE,
                     (0.6, 0.58, 0.55), style()))
    crossings = [rng.uniform(15.0, max(20.0, z_end - 40.0)) for _ in range(2)]
    ground = np.array([road_half, sidewalk, *crossings], dtype=np.float64)
    return Scene(np.ascontiguousarray(np.array(objs, dtype=np.float64)), ground,
                 int(rng.integers(1, 1 << 30)), float(length))


def drive_trajectory(seed: int, frames: int) -> np.ndarray:
    """``(frames, 4, 4)`` camera-0 poses (camera-to-world) of a drive: ~1 m/frame along +z, a smooth
    lateral weave (yaw up to ~6 deg), small pitch/roll oscillations, camera 1.65 m above ground."""
    rng = np.random.default_rng([seed, 99])
    speed = rng.uniform(0.85, 1.15)
    x0 = rng.uniform(1.5, 2.0)
    b1, l1, p1 = rng.uniform(0.5, 0.9), rng.uniform(45, 80), rng.uniform(0, 2 * np.pi)
    b2, l2, p2 = rng.uniform(0.08, 0.18), rng.uniform(14, 24), rng.uniform(0, 2 * np.pi)
    a_pitch, p3 = rng.uniform(0.004, 0.01), rng.uniform(0, 2 * np.pi)
    a_roll, p4 = rng.uniform(0.002, 0.006), rng.uniform(0, 2 * np.pi)
    a_speed, p5 = rng.uniform(0.0, 0.1), rng.uniform(0, 2 * np.pi)
    k1, k2 = 2 * np.pi / l1, 2 * np.pi / l2
    out = np.zeros((frames, 4, 4))
    for i in range(frames):
        s = speed * (i + a_speed * math.sin(2 * np.pi * i / 37.0 + p5) * 3.0)
        x = x0 + b1 * (math.sin(k1 * s + p1) - math.sin(p1)) + b2 * (math.sin(k2 * s + p2) - math.sin(p2))
        dx = b1 * k1 * math.cos(k1 * s + p1) + b2 * k2 * math.cos(k2 * s + p2)
        yaw = math.atan(dx)
        pitch = a_pitch * math.sin(2 * np.pi * s / 7.3 + p3)
        roll = a_roll * math.sin(2 * np.pi * s / 5.1 + p4)
        R = _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll)
        out[i] = _make_T(R, (x, -CAM_HEIGHT, s))
    return out


# ----------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------
_NB = dict(cache=True, nogil=True)


@njit(**_NB)
def _hash2(ix, iy, s):
    h = ix * 374761393 + iy * 668265263 + s * 1442695041
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF) / 16777216.0


@njit(**_NB)
def _noise2(x, y, s):
    fx = math.floor(x)
    fy = math.floor(y)
    ix = np.int64(fx)
    iy = np.int64(fy)
    tx = x - fx
    ty = y - fy
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    a = _hash2(ix, iy, s)
    b = _hash2(ix + 1, iy, s)
    c = _hash2(ix, iy + 1, s)
    d = _hash2(ix + 1, iy + 1, s)
    return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty


@njit(**_NB)
def _fbm(x, y, s, freq, octaves, fp):
    """Zero-mean fractal noise in about [-0.5, 0.5]; octaves finer than the pixel footprint ``fp``
    (metres) fade out (a cheap mip-map, so distant surfaces do not alias)."""
    total = 0.0
    norm = 0.0
    amp = 1.0
    for o in range(octaves):
        w = 2.0 - 2.0 * fp * freq
        if w > 1.0:
            w = 1.0
        if w > 0.0:
            total += amp * w * (_noise2(x * freq, y * freq, s + 31 * o) - 0.5)
        norm += amp
        amp *= 0.55
        freq *= 2.0
    return total / norm * 1.6


@njit(**_NB)
def _frac(x):
    return x - math.floor(x)


@njit(**_NB)
def _intersect(ox, oy, oz, dx, dy, dz, obj, cand, c0, c1, tmax, dmin):
    """Nearest hit along ``o + t d`` (t > 0) among the ground plane y = 0 and objects
    ``cand[c0:c1]``, which are sorted by ``dmin`` (distance from ``o`` to each object's bounding
    box), so the search stops at the first object farther than the best hit.
    Returns (t, index (-2 ground, -1 none), face code)."""
    dn = math.sqrt(dx * dx + dy * dy + dz * dz)
    best_t = tmax
    best = -1
    best_face = -1
    if dy > 1e-12 and oy < 0.0:
        t = -oy / dy
        if t < best_t:
            best_t = t
            best = -2
            best_face = 2
    for k in range(c0, c1):
        i = cand[k]
        if dmin[i] > best_t * dn:
            break
        if obj[i, 0] == 0.0:
            tn = -1e30
            tf = 1e30
            face = -1
            hit = True
            for a in range(3):
                if a == 0:
                    o = ox
                    d = dx
                elif a == 1:
                    o = oy
                    d = dy
                else:
                    o = oz
                    d = dz
                lo = obj[i, 1 + a]
                hi = obj[i, 4 + a]
                if d > 1e-12:
                    t1 = (lo - o) / d
                    t2 = (hi - o) / d
                    f = 2 * a
                elif d < -1e-12:
                    t1 = (hi - o) / d
                    t2 = (lo - o) / d
                    f = 2 * a + 1
                else:
                    if o < lo or o > hi:
                        hit = False
                        break
                    continue
                if t1 > tn:
                    tn = t1
                    face = f
                if t2 < tf:
                    tf = t2
                if tn > tf or tf <= 0.0:
                    hit = False
                    break
            if hit and tn > 1e-6 and tn < best_t:
                best_t = tn
                best = i
                best_face = face
        else:
            cx = 0.5 * (obj[i, 1] + obj[i, 4])
            cz = 0.5 * (obj[i, 3] + obj[i, 6])
            r = 0.5 * (obj[i, 4] - obj[i, 1])
            fx = ox - cx
            fz = oz - cz
            qa = dx * dx + dz * dz
            if qa < 1e-18:
                continue
            qb = 2.0 * (fx * dx + fz * dz)
            qc = fx * fx + fz * fz - r * r
            disc = qb * qb - 4.0 * qa * qc
            if disc < 0.0:
                continue
            t = (-qb - math.sqrt(disc)) / (2.0 * qa)
            if t > 1e-6 and t < best_t:
                y = oy + t * dy
                if y >= obj[i, 2] and y <= obj[i, 5]:
                    best_t = t
                    best = i
                    best_face = 6
    return best_t, best, best_face


@njit(**_NB)
def _normal(obj, i, face, px, pz):
    if face == 6:
        cx = 0.5 * (obj[i, 1] + obj[i, 4])
        cz = 0.5 * (obj[i, 3] + obj[i, 6])
        nx = px - cx
        nz = pz - cz
        n = math.sqrt(nx * nx + nz * nz) + 1e-12
        return nx / n, 0.0, nz / n
    nx = 0.0
    ny = 0.0
    nz = 0.0
    sgn = -1.0 if face % 2 == 0 else 1.0
    a = face // 2
    if a == 0:
        nx = sgn
    elif a == 1:
        ny = sgn
    else:
        nz = sgn
    return nx, ny, nz


@njit(**_NB)
def _ground_albedo(px, pz, gp, seed, fp):
    road_half = gp[0]
    ax = abs(px)
    if ax < road_half:
        g = 0.31 + 0.30 * _fbm(px, pz, seed + 1, 0.2, 7, fp) + 0.08 * _fbm(px, pz, seed + 4, 6.0, 2, fp)
        # repaired patches (coarse, darker)
        if _noise2(px * 0.12, pz * 0.12, seed + 2) > 0.72:
            g *= 0.78
        r = g
        gg = g
        b = g * 1.04
        white = 0.0
        # dashed centre line, solid edge lines
        if ax < 0.075 and _frac(pz / 9.0) < 0.34:
            white = 1.0
        if ax > road_half - 0.38 and ax < road_half - 0.24:
            white = 1.0
        # lane line of the parking strip, dashed short
        if ax > road_half - 2.1 and ax < road_half - 2.0 and _frac(pz / 3.0) < 0.5:
            white = 0.8
        # zebra crossings
        for k in range(2, gp.shape[0]):
            if pz > gp[k] and pz < gp[k] + 4.0 and ax < road_half - 0.6 and _frac(px / 1.1) < 0.5:
                white = 1.0
        if white > 0.0:
            wv = 0.78 + 0.1 * _fbm(px, pz, seed + 3, 2.0, 3, fp)
            r = r + white * (wv - r)
            gg = gg + white * (wv - gg)
            b = b + white * (wv * 0.97 - b)
        return r, gg, b
    # sidewalk: tiles with per-tile shade and grout lines
    tile = 0.6
    ix = np.int64(math.floor(px / tile))
    iz = np.int64(math.floor(pz / tile))
    base = 0.56 + 0.12 * (_hash2(ix, iz, seed + 5) - 0.5) + 0.2 * _fbm(px, pz, seed + 6, 0.3, 6, fp)
    fxx = _frac(px / tile)
    fzz = _frac(pz / tile)
    grout = 0.06
    w = 1.0 - min(1.0, 2.0 * fp / tile)  # grout fades when smaller than a pixel
    if w > 0 and (fxx < grout or fzz < grout):
        base = base * (1.0 - 0.35 * w)
    return base * 1.02, base, base * 0.94


@njit(**_NB)
def _facade_albedo(obj, i, px, py, pz, face, seed, fp):
    st = np.int64(obj[i, 11])
    r0 = obj[i, 8]
    g0 = obj[i, 9]
    b0 = obj[i, 10]
    hgt = -py
    if face == 2:  # roof
        n = 0.6 + 0.3 * _fbm(px, pz, seed + st, 0.2, 5, fp)
        return 0.5 * n, 0.48 * n, 0.46 * n
    a = pz if face < 2 else px
    sw = 1.8 + 1.4 * _hash2(st, 1, 7)
    fh = 3.0 + 0.6 * _hash2(st, 2, 7)
    wf = 0.35 + 0.3 * _hash2(st, 3, 7)
    wall = 1.0 + 0.45 * _fbm(a, hgt, seed + st, 0.25, 7, fp)
    r = r0 * wall
    g = g0 * wall
    b = b0 * wall
    fl = math.floor(hgt / fh)
    fy = hgt / fh - fl
    ci = math.floor(a / sw)
    fa = a / sw - ci
    top = -obj[i, 2]
    if hgt > top - 0.5:  # cornice
        return r * 0.6, g * 0.6, b * 0.6
    if fl >= 1.0:
        if fy < 0.06:  # ledge between floors
            return r * 0.75, g * 0.75, b * 0.75
        m = 0.05
        lo = 0.5 - wf / 2
        hi = 0.5 + wf / 2
        if fa > lo - m and fa < hi + m and fy > 0.3 - m * 1.5 and fy < 0.82 + m * 1.5:
            if fa > lo and fa < hi and fy > 0.3 and fy < 0.82:
                v = _hash2(np.int64(ci), np.int64(fl), st + 11)
                lit = 0.55 if v > 0.85 else 0.0
                gl = 0.10 + 0.25 * v + 0.12 * _fbm(a, hgt, seed + 9, 0.8, 3, fp)
                # a vertical mullion splits wide windows
                if wf * sw > 1.1 and abs(fa - 0.5) < 0.025:
                    return 0.85, 0.85, 0.82
                return gl + lit, gl + 0.02 + lit * 0.9, gl + 0.06 + lit * 0.5
            return 0.88, 0.86, 0.82  # frame
        return r, g, b
    # ground floor: shop windows and doors
    if fy > 0.12 and fy < 0.78:
        fa2 = _frac(a / (2.0 * sw))
        if fa2 > 0.08 and fa2 < 0.92:
            k = _hash2(np.int64(math.floor(a / (2.0 * sw))), 0, st + 13)
            gl = 0.12 + 0.3 * k + 0.1 * _fbm(a, hgt, seed + 17, 0.6, 3, fp)
            return gl * 0.9, gl, gl * 1.1
    return r * 0.8, g * 0.8, b * 0.8


@njit(**_NB)
def _albedo(obj, gp, i, face, px, py, pz, seed, fp):
    if i == -2:
        return _ground_albedo(px, pz, gp, seed, fp)
    mat = np.int64(obj[i, 7])
    st = np.int64(obj[i, 11])
    r0 = obj[i, 8]
    g0 = obj[i, 9]
    b0 = obj[i, 10]
    if mat == 1:
        return _facade_albedo(obj, i, px, py, pz, face, seed, fp)
    if mat == 2:  # car body: wheels on the sides, dark sill, bumpers
        hgt = -py
        n = 1.0 + 0.12 * _fbm(px + pz, hgt, seed + st, 1.0, 4, fp)
        if face < 2:
            for wz in (obj[i, 3] + 0.85, obj[i, 6] - 0.85):
                dd = math.sqrt((pz - wz) ** 2 + (hgt - 0.34) ** 2)
                if dd < 0.34:
                    if dd < 0.19:
                        return 0.55, 0.55, 0.57
                    return 0.06, 0.06, 0.07
            if abs(pz - 0.5 * (obj[i, 3] + obj[i, 6])) < 0.02:  # door gap
                return r0 * 0.4, g0 * 0.4, b0 * 0.4
        if hgt < 0.42:
            return 0.12, 0.12, 0.13
        near_side = abs(px - obj[i, 1]) < 0.3 or abs(px - obj[i, 4]) < 0.3
        if face >= 4 and hgt > 0.55 and hgt < 0.75 and near_side:
            if face == 4:
                return 0.95, 0.92, 0.75  # head lights
            return 0.8, 0.1, 0.08  # tail lights
        return r0 * n, g0 * n, b0 * n
    if mat == 3:  # cabin: dark glass with pillars and a body-coloured roof
        if face == 2:
            return r0, g0, b0
        a = pz if face < 2 else px
        lo = obj[i, 3] if face < 2 else obj[i, 1]
        hi = obj[i, 6] if face < 2 else obj[i, 4]
        if a - lo < 0.12 or hi - a < 0.12 or (face < 2 and abs(a - 0.5 * (lo + hi)) < 0.06):
            return r0, g0, b0
        v = 0.12 + 0.25 * _fbm(a, py, seed + st, 0.7, 3, fp)
        return v, v * 1.05, v * 1.15
    if mat == 4:  # pole: metal with a few bands
        v = 0.5 + 0.15 * _fbm(px + pz, py, seed + st, 1.0, 4, fp)
        if _frac(-py / 1.5) < 0.1:
            v *= 0.6
        return v, v, v * 1.03
    if mat == 5:  # curb
        v = 0.66 + 0.2 * _fbm(px, pz, seed + 23, 0.5, 5, fp)
        if _frac(pz / 1.0) < 0.04 and fp < 0.1:
            v *= 0.7
        return v, v * 0.99, v * 0.96
    if mat == 6:  # foliage: strong coarse blobs
        a = pz if face < 2 else px
        v = 1.0 + 1.4 * _fbm(a + 0.37 * py, py + 0.21 * a, seed + st, 0.9, 5, fp)
        return r0 * v, g0 * v, b0 * v
    if mat == 7:  # trunk
        v = 1.0 + 0.5 * _fbm(px + pz, py * 0.3, seed + st, 3.0, 3, fp)
        return r0 * v, g0 * v, b0 * v
    if mat == 8:  # sign: coloured plate with a white border
        a = px
        if face != 4 and face != 5:
            return 0.4, 0.4, 0.4
        u = (a - obj[i, 1]) / (obj[i, 4] - obj[i, 1])
        w = (py - obj[i, 2]) / (obj[i, 5] - obj[i, 2])
        if u < 0.1 or u > 0.9 or w < 0.1 or w > 0.9:
            return 0.92, 0.92, 0.92
        if face == 5:
            return 0.5, 0.5, 0.5
        return r0, g0, b0
    return r0, g0, b0


# sun direction (towards the light), world frame (y down): from above, behind-left of the camera
_LX, _LY, _LZ = 0.36, -0.80, -0.48
_LN = math.sqrt(_LX * _LX + _LY * _LY + _LZ * _LZ)
LIGHT = (_LX / _LN, _LY / _LN, _LZ / _LN)


@njit(**_NB)
def _sky(dx, dy, dz):
    n = math.sqrt(dx * dx + dy * dy + dz * dz)
    e = -dy / n
    t = min(1.0, max(0.0, e * 3.0))
    r = 0.86 + (0.48 - 0.86) * t
    g = 0.89 + (0.63 - 0.89) * t
    b = 0.93 + (0.88 - 0.93) * t
    return r, g, b


@njit(**_NB)
def _shade_hit(obj, gp, seed, ox, oy, oz, dx, dy, dz, t, i, face, pix, lx, ly, lz):
    px = ox + t * dx
    py = oy + t * dy
    pz = oz + t * dz
    if i == -2:
        nx, ny, nz = 0.0, -1.0, 0.0
    else:
        nx, ny, nz = _normal(obj, i, face, px, pz)
    dn = math.sqrt(dx * dx + dy * dy + dz * dz)
    cosi = abs(nx * dx + ny * dy + nz * dz) / dn
    fp = t * dn * pix / max(cosi, 0.2)
    r, g, b = _albedo(obj, gp, i, face, px, py, pz, seed, fp)
    ndl = nx * lx + ny * ly + nz * lz
    s = 0.5 + 0.55 * max(ndl, 0.0) + 0.08 * (-ny)
    return r * s, g * s, b * s


@njit(parallel=True, **_NB)
def _render_kernel(R, c, fx, fy, cx, cy, H, W, obj, gp, seed, tile, ntx, tstart, titems, dmin, lx, ly, lz):
    rgb = np.empty((H, W, 3), dtype=np.uint8)
    depth = np.empty((H, W), dtype=np.float32)
    pix = 1.0 / fx
    for v in prange(H):
        for u in range(W):
            xc = (u - cx) / fx
            yc = (v - cy) / fy
            dx = R[0, 0] * xc + R[0, 1] * yc + R[0, 2]
            dy = R[1, 0] * xc + R[1, 1] * yc + R[1, 2]
            dz = R[2, 0] * xc + R[2, 1] * yc + R[2, 2]
            tid = (v // tile) * ntx + (u // tile)
            t, i, face = _intersect(c[0], c[1], c[2], dx, dy, dz, obj, titems, tstart[tid], tstart[tid + 1],
                                    1e9, dmin)
            if i == -1:
                depth[v, u] = 0.0
                r, g, b = _sky(dx, dy, dz)
            else:
                depth[v, u] = t  # the camera-frame direction has z = 1, so t is the depth z
                r, g, b = _shade_hit(obj, gp, seed, c[0], c[1], c[2], dx, dy, dz, t, i, face, pix, lx, ly, lz)
            rgb[v, u, 0] = np.uint8(min(255.0, max(0.0, r * 255.0 + 0.5)))
            rgb[v, u, 1] = np.uint8(min(255.0, max(0.0, g * 255.0 + 0.5)))
            rgb[v, u, 2] = np.uint8(min(255.0, max(0.0, b * 255.0 + 0.5)))
    return rgb, depth


def _box_distances(obj: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from ``o`` to every object's bounding box, and the object order by it."""
    e = np.maximum(np.maximum(obj[:, 1:4] - o, o - obj[:, 4:7]), 0.0)
    d = np.sqrt((e * e).sum(1))
    return d, np.argsort(d, kind="stable")


def _csr(order: np.ndarray, lo: np.ndarray, hi: np.ndarray, nbins: int, wrap: bool = False):
    """CSR lists (start, items) of objects per bin; object ``i`` covers bins ``lo[i]..hi[i]``
    (modulo ``nbins`` if ``wrap``; ``lo < 0`` without wrap means not visible). Items within a bin
    keep the order of ``order``."""
    bins_, objs = [], []
    for i in order:
        if not wrap and lo[i] < 0:
            continue
        if wrap and lo[i] == hi[i] == np.iinfo(np.int64).min:
            continue
        bins_.append(np.arange(lo[i], hi[i] + 1) % nbins if wrap else np.arange(lo[i], hi[i] + 1))
        objs.append(np.full(len(bins_[-1]), i, dtype=np.int64))
    if not bins_:
        return np.zeros(nbins + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bins_a = np.concatenate(bins_)
    objs_a = np.concatenate(objs)
    perm = np.argsort(bins_a, kind="stable")
    start = np.zeros(nbins + 1, dtype=np.int64)
    np.cumsum(np.bincount(bins_a, minlength=nbins), out=start[1:])
    return start, np.ascontiguousarray(objs_a[perm])


_CORNER_BITS = np.array([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=bool)
_EDGES = np.array([(k, k | (1 << a)) for k in range(8) for a in range(3) if not (k >> a) & 1])


def _screen_tiles(obj, R, c, fx, fy, cx, cy, H, W, tile, near, order):
    """Bin objects into ``tile x tile`` screen tiles by the image rectangle of their bounding box
    clipped to ``z >= near`` in the camera. Returns (tstart, titems, tiles per row)."""
    ntx = (W + tile - 1) // tile
    nty = (H + tile - 1) // tile
    corners = np.where(_CORNER_BITS[None], obj[:, None, 4:7], obj[:, None, 1:4])  # N x 8 x 3
    cam = (corners - c) @ R  # R^T (p - c)
    z = cam[..., 2]
    za, zb = z[:, _EDGES[:, 0]], z[:, _EDGES[:, 1]]
    cross = (za - near) * (zb - near) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(cross, (near - za) / (zb - za), 0.0)
    edge_pts = cam[:, _EDGES[:, 0]] + s[..., None] * (cam[:, _EDGES[:, 1]] - cam[:, _EDGES[:, 0]])
    pts = np.concatenate([cam, edge_pts], 1)
    ok = np.concatenate([z >= near, cross], 1)
    zz = np.where(ok, pts[..., 2], 1.0)
    u = np.where(ok, fx * pts[..., 0] / zz + cx, np.nan)
    v = np.where(ok, fy * pts[..., 1] / zz + cy, np.nan)
    vis = ok.any(1)
    rect = np.full((len(obj), 4), -1, dtype=np.int64)
    if vis.any():
        umin, umax = np.nanmin(u[vis], 1), np.nanmax(u[vis], 1)
        vmin, vmax = np.nanmin(v[vis], 1), np.nanmax(v[vis], 1)
        inside = ~((umax < -2) | (vmax < -2) | (umin > W + 1) | (vmin > H + 1))
        idx = np.flatnonzero(vis)[inside]
        tx0 = np.clip(np.floor((umin[inside] - 2) / tile), 0, ntx - 1).astype(np.int64)
        tx1 = np.clip(np.floor((umax[inside] + 2) / tile), 0, ntx - 1).astype(np.int64)
        ty0 = np.clip(np.floor((vmin[inside] - 2) / tile), 0, nty - 1).astype(np.int64)
        ty1 = np.clip(np.floor((vmax[inside] + 2) / tile), 0, nty - 1).astype(np.int64)
        rect[idx] = np.stack([tx0, tx1, ty0, ty1], 1)
    bins_, objs = [], []
    for i in order:
        if rect[i, 0] < 0:
            continue
        tys = np.arange(rect[i, 2], rect[i, 3] + 1)
        txs = np.arange(rect[i, 0], rect[i, 1] + 1)
        b = (tys[:, None] * ntx + txs[None, :]).ravel()
        bins_.append(b)
        objs.append(np.full(len(b), i, dtype=np.int64))
    ntiles = ntx * nty
    tstart = np.zeros(ntiles + 1, dtype=np.int64)
    if not bins_:
        return tstart, np.zeros(0, dtype=np.int64), ntx
    bins_a = np.concatenate(bins_)
    perm = np.argsort(bins_a, kind="stable")
    np.cumsum(np.bincount(bins_a, minlength=ntiles), out=tstart[1:])
    return tstart, np.ascontiguousarray(np.concatenate(objs)[perm]), ntx


def _azimuth_bins(obj, o, nbins, max_range, order):
    """Bin objects by horizontal (x-z plane) azimuth ``atan2(x, z)`` seen from ``o``, dropping
    objects farther than ``max_range``; CSR arrays (start, items)."""
    x0, x1 = obj[:, 1] - o[0], obj[:, 4] - o[0]
    z0, z1 = obj[:, 3] - o[2], obj[:, 6] - o[2]
    ddx = np.maximum(np.maximum(x0, -x1), 0.0)
    ddz = np.maximum(np.maximum(z0, -z1), 0.0)
    near = ddx * ddx + ddz * ddz <= max_range * max_range
    around = (x0 <= 0) & (x1 >= 0) & (z0 <= 0) & (z1 >= 0)
    ac = np.arctan2(0.5 * (x0 + x1), 0.5 * (z0 + z1))
    xs = np.stack([x0, x1, x0, x1], 1)
    zs = np.stack([z0, z0, z1, z1], 1)
    d = np.arctan2(xs, zs) - ac[:, None]
    d = (d + np.pi) % (2 * np.pi) - np.pi
    b0 = np.floor((ac + d.min(1) + np.pi) / (2 * np.pi) * nbins).astype(np.int64) - 1
    b1 = np.floor((ac + d.max(1) + np.pi) / (2 * np.pi) * nbins).astype(np.int64) + 1
    full = around | (b1 - b0 >= nbins)
    b0 = np.where(full, 0, b0)
    b1 = np.where(full, nbins - 1, b1)
    skip = np.iinfo(np.int64).min
    b0 = np.where(near, b0, skip)
    b1 = np.where(near, b1, skip)
    return _csr(order, b0, b1, nbins, wrap=True)


@njit(**_NB)
def _cast_kernel(o, R, dirs, obj, gp, seed, start, items, dmin, nbins, tmax):
    """Cast ``o + t * (R @ dirs[k])``; returns t (inf: no hit within tmax) and reflectance."""
    n = dirs.shape[0]
    t_out = np.empty(n)
    refl = np.empty(n)
    two_pi = 2.0 * math.pi
    for k in range(n):
        dx = R[0, 0] * dirs[k, 0] + R[0, 1] * dirs[k, 1] + R[0, 2] * dirs[k, 2]
        dy = R[1, 0] * dirs[k, 0] + R[1, 1] * dirs[k, 1] + R[1, 2] * dirs[k, 2]
        dz = R[2, 0] * dirs[k, 0] + R[2, 1] * dirs[k, 1] + R[2, 2] * dirs[k, 2]
        b = np.int64(math.floor((math.atan2(dx, dz) + math.pi) / two_pi * nbins))
        b = min(max(b, 0), nbins - 1)
        t, i, face = _intersect(o[0], o[1], o[2], dx, dy, dz, obj, items, start[b], start[b + 1], tmax, dmin)
        if i == -1:
            t_out[k] = np.inf
            refl[k] = 0.0
        else:
            t_out[k] = t
            r, g, bb = _albedo(obj, gp, i, face, o[0] + t * dx, o[1] + t * dy, o[2] + t * dz, seed, 0.25)
            refl[k] = min(0.99, max(0.0, 0.9 * (0.3 * r + 0.59 * g + 0.11 * bb)))
    return t_out, refl


# ----------------------------------------------------------------------------------------------
# Public rendering API
# ----------------------------------------------------------------------------------------------
def render(scene: Scene, T_world_cam: np.ndarray, K: np.ndarray, height: int, width: int,
           tile: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast one pinhole view (integer pixel centres, no distortion).

    Args:
        scene: from :func:`build_scene`.
        T_world_cam: ``(4, 4)`` camera-to-world pose (camera x right, y down, z forward).
        K: ``(3, 3)`` intrinsics in pixels of the ``height x width`` image.
    Returns:
        ``rgb`` uint8 ``(H, W, 3)`` and ``depth`` float32 ``(H, W)``: metres along the camera z axis,
        ``0`` where the ray sees the sky (invalid).
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    R = np.ascontiguousarray(T[:3, :3])
    c = np.ascontiguousarray(T[:3, 3])
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    dmin, order = _box_distances(scene.objects, c)
    tstart, titems, ntx = _screen_tiles(scene.objects, R, c, fx, fy, cx, cy, int(height), int(width), tile,
                                        0.05, order)
    return _render_kernel(R, c, fx, fy, cx, cy, int(height), int(width), scene.objects, scene.ground,
                          scene.tex_seed, tile, ntx, tstart, titems, dmin, *LIGHT)


def cast_rays(scene: Scene, origin: np.ndarray, directions: np.ndarray, max_range: float = 1e9,
              nbins: int = 360) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays ``origin + t * directions`` (world frame) from one origin.

    Returns ``t`` (``inf`` for no hit within ``max_range`` along a unit direction) and a
    reflectance in ``[0, 0.99]`` derived from the surface albedo.
    """
    return _cast(scene, origin, np.eye(3), directions, max_range, nbins)


def _cast(scene, origin, R, directions, max_range, nbins=360):
    o = np.ascontiguousarray(np.asarray(origin, dtype=np.float64))
    R = np.ascontiguousarray(np.asarray(R, dtype=np.float64))
    d = np.ascontiguousarray(np.asarray(directions, dtype=np.float64).reshape(-1, 3))
    dmin, order = _box_distances(scene.objects, o)
    start, items = _azimuth_bins(scene.objects, o, nbins, float(max_range), order)
    return _cast_kernel(o, R, d, scene.objects, scene.ground, scene.tex_seed, start, items, dmin, nbins,
                        float(max_range))


def _lidar_dirs(beams: int = 64, azimuths: int = 1200) -> np.ndarray:
    el = np.deg2rad(np.linspace(2.0, -24.9, beams))
    az = np.linspace(np.pi, -np.pi, azimuths, endpoint=False)  # counter-clockwise from behind
    E, A = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)


_LIDAR_DIRS = _lidar_dirs()


def simulate_lidar(scene: Scene, T_world_velo: np.ndarray, max_range: float = LIDAR_MAX_RANGE) -> np.ndarray:
    """A 64-beam scan (elevation +2..-24.9 deg, 1200 azimuths) from the velodyne pose; returns
    ``(N, 4)`` float32 points x (forward), y (left), z (up), reflectance in the velodyne frame;
    rays without a return within ``max_range`` (sky) are dropped."""
    T = np.asarray(T_world_velo, dtype=np.float64)
    t, refl = _cast(scene, T[:3, 3], T[:3, :3], _LIDAR_DIRS, max_range)
    keep = t <= max_range
    out = np.empty((int(keep.sum()), 4), dtype=np.float32)
    out[:, :3] = _LIDAR_DIRS[keep] * t[keep, None]
    out[:, 3] = refl[keep]
    return out


# ----------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------
def drive_name(drive: int, date: str = DATE) -> str:
    return f"{date}_drive_{drive:04d}_sync"


def _calib_cam_to_cam(K: np.ndarray = K_RECT) -> str:
    lines = ["calib_time: 01-Jan-2030 12:00:00", "corner_dist: 9.950000e-02"]
    for cam in range(4):
        t = np.array([-CAM_POS_X[cam], 0.0, 0.0])  # X_cam = X_cam0 + t
        P = K @ np.concatenate([np.eye(3), t[:, None]], 1)
        size = f"{_fmt(WIDTH)} {_fmt(HEIGHT)}"
        lines += [
            f"S_0{cam}: {size}",
            f"K_0{cam}: " + " ".join(_fmt(v) for v in K.ravel()),
            f"D_0{cam}: " + " ".join(_fmt(0.0) for _ in range(5)),
            f"R_0{cam}: " + " ".join(_fmt(v) for v in np.eye(3).ravel()),
            f"T_0{cam}: " + " ".join(_fmt(v) for v in t),
            f"S_rect_0{cam}: {size}",
            f"R_rect_0{cam}: " + " ".join(_fmt(v) for v in np.eye(3).ravel()),
            f"P_rect_0{cam}: " + " ".join(_fmt(v) for v in P.ravel()),
        ]
    return "\n".join(lines) + "\n"


def _calib_velo_to_cam() -> str:
    R, T = _velo_to_cam()
    return "\n".join([
        "calib_time: 01-Jan-2030 12:00:00",
        "R: " + " ".join(_fmt(v) for v in R.ravel()),
        "T: " + " ".join(_fmt(v) for v in T),
        "delta_f: " + " ".join(_fmt(0.0) for _ in range(2)),
        "delta_c: " + " ".join(_fmt(0.0) for _ in range(2)),
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


def _write_png(path: Path, img: np.ndarray) -> None:
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
        raise ValueError(f"frames must be >= 3 (train/test frames need both neighbours), got {frames}")
    if drives < 1 or not 0 <= test_drives <= drives:
        raise ValueError(f"need drives >= 1 and 0 <= test_drives <= drives, got drives={drives}, "
                         f"test_drives={test_drives}")
    if gt_every < 1:
        raise ValueError(f"gt_every must be >= 1, got {gt_every}")


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
    (day / "calib_cam_to_cam.txt").write_text(_calib_cam_to_cam())
    (day / "calib_velo_to_cam.txt").write_text(_calib_velo_to_cam())
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
            _write_png(dirs["image_02"] / f"{i:010d}.png", rgb2)
            _write_png(dirs["image_03"] / f"{i:010d}.png", rgb3)
            simulate_lidar(scene, T0 @ T_CAM0_VELO).tofile(dirs["velodyne_points"] / f"{i:010d}.bin")
            has_nb = 0 < i < frames - 1
            if (is_test and has_nb) or (not is_test and i % gt_every == 0):
                d = np.where((depth2 > 0) & (depth2 <= MAX_GT_DEPTH), depth2, 0.0)
                gt = np.clip(np.round(d.astype(np.float64) * 256.0), 0, 65535).astype(np.uint16)
                _write_png(gt_dir / f"{i:010d}.png", gt)
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
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / MARKER)
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
        raise RuntimeError(f"unreadable synthetic dataset marker {p}: {e}") from None


def _compare(root: Path, have: dict, want: dict) -> None:
    diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: on disk {a!r}, requested {b!r}" for k, (a, b) in sorted(diff.items()))
        raise RuntimeError(
            f"{root} holds a synthetic dataset generated with different parameters ({desc}). "
            f"Use another root, request the same parameters, or delete {root} yourself.")


def ensure_synthetic(root: str | Path, seed: int = DEFAULTS["seed"], drives: int = DEFAULTS["drives"],
                     frames: int = DEFAULTS["frames"], test_drives: int = DEFAULTS["test_drives"],
                     gt_every: int = DEFAULTS["gt_every"], verbose: bool = False) -> Path:
    """Generate the dataset into ``root`` unless it is already there (``root/synthetic.json``).

    Generation happens in a temporary sibling folder that is renamed to ``root`` at the end, so an
    interrupted run leaves no partial dataset at ``root``. Raises ``RuntimeError`` if ``root`` holds
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
            raise RuntimeError(f"{root} exists and is not a synthetic dataset (no {MARKER}); "
                               f"refusing to write into it")
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        generate(tmp, seed, drives, frames, test_drives, gt_every, verbose=verbose)
        try:
            os.rename(tmp, root)
        except OSError:
            # another process finished first: accept its dataset if it matches
            have = _read_marker(root)
            if have is None:
                raise
            _compare(root, have, want)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="dataset root to create")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--drives", type=int, default=DEFAULTS["drives"])
    ap.add_argument("--frames", type=int, default=DEFAULTS["frames"], help="frames per drive")
    ap.add_argument("--test-drives", type=int, default=DEFAULTS["test_drives"])
    ap.add_argument("--gt-every", type=int, default=DEFAULTS["gt_every"],
                    help="GT depth for every N-th training frame (test frames always have GT)")
    ap.add_argument("--lens-factors", type=float, nargs="*", default=[],
                    help="also render the test drives through lenses of these focal-length factors "
                         "(e.g. 0.75 1.5; data/synthetic_lenses.py)")
    args = ap.parse_args(argv)
    if any(f <= 0 for f in args.lens_factors):
        ap.error(f"--lens-factors must be > 0, got {args.lens_factors}")
    t0 = time.perf_counter()
    root = ensure_synthetic(args.out, args.seed, args.drives, args.frames, args.test_drives, args.gt_every,
                            verbose=True)
    print(f"dataset root: {root}  ({time.perf_counter() - t0:.1f} s)")
    print(f"  calibration: {root / DATE}/calib_cam_to_cam.txt, calib_velo_to_cam.txt")
    print(f"  drives:      {root / DATE}/{drive_name(1)} .. {drive_name(args.drives)}")
    print(f"  splits:      {root / 'splits'}/{{train,val,test}}_files.txt")
    if args.lens_factors:
        from data.synthetic_lenses import render_lenses  # the lens module builds on this one
        for f, split in zip(args.lens_factors, render_lenses(root, args.lens_factors, verbose=True)):
            print(f"  lens x{f:g}:   {split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
