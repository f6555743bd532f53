"""The ray caster of the synthetic street: pinhole views (RGB + depth) and rays from one origin.

Planes, axis-aligned boxes and vertical cylinders are intersected analytically with numba; objects
are binned per screen tile (views) or per azimuth (rays from one point) so a ray tests only the
objects it can hit. Shading depends on the surface normal only (Lambertian, no shadows).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from common.threads import keep_torch_threads
from data.synthetic.scene import Scene
from data.synthetic.textures import albedo

__all__ = ["render", "cast_rays", "LIGHT"]

_NB = dict(cache=True, nogil=True)


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
    r, g, b = albedo(obj, gp, i, face, px, py, pz, seed, fp)
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
            r, g, bb = albedo(obj, gp, i, face, o[0] + t * dx, o[1] + t * dy, o[2] + t * dz, seed, 0.25)
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
    with keep_torch_threads():  # numba's OpenMP launch would leave torch on numba's thread count
        return _render_kernel(R, c, fx, fy, cx, cy, int(height), int(width), scene.objects, scene.ground,
                              scene.tex_seed, tile, ntx, tstart, titems, dmin, *LIGHT)


def cast_rays(scene: Scene, origin: np.ndarray, directions: np.ndarray, max_range: float = 1e9,
              nbins: int = 360, rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays ``origin + t * (rotation @ directions)`` from one origin (``rotation``: 3x3 from
    the directions' frame to the world frame; default the identity, directions in the world frame).

    Returns ``t`` (``inf`` for no hit within ``max_range`` along a unit direction) and a
    reflectance in ``[0, 0.99]`` derived from the surface albedo.
    """
    R = np.eye(3) if rotation is None else rotation
    o = np.ascontiguousarray(np.asarray(origin, dtype=np.float64))
    R = np.ascontiguousarray(np.asarray(R, dtype=np.float64))
    d = np.ascontiguousarray(np.asarray(directions, dtype=np.float64).reshape(-1, 3))
    dmin, order = _box_distances(scene.objects, o)
    start, items = _azimuth_bins(scene.objects, o, nbins, float(max_range), order)
    return _cast_kernel(o, R, d, scene.objects, scene.ground, scene.tex_seed, start, items, dmin, nbins,
                        float(max_range))
