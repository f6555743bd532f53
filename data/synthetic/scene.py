"""The synthetic street and the drives through it.

A static street: textured road with lane marks and crossings, curbs, tiled sidewalks, building
facades with window grids, parked cars, poles with signs, trees, a far backdrop and a wall of
buildings at its end, described by an object table (boxes and vertical cylinders) that the ray
caster (:mod:`data.synthetic.render`) reads. World frame: x right, y down (ground plane at
y = 0), z along the street.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data.synthetic.rig import CAM_HEIGHT, make_T, rot_x, rot_y, rot_z

__all__ = ["OBJ_COLS", "BOX", "CYL", "Scene", "build_scene", "drive_seed", "drive_trajectory"]

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
        R = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)
        out[i] = make_T(R, (x, -CAM_HEIGHT, s))
    return out
