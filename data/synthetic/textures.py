"""Procedural textures of the synthetic street: the albedo of every surface point.

Every texture is a function of the 3-D surface point (and of the footprint ``fp`` of a pixel on
it, which fades detail finer than a pixel), never of the view: a surface looks the same from every
camera, so warping one frame into another with the true depth and pose reproduces it. numba
kernels (cached on disk).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["albedo", "ground_albedo", "facade_albedo"]

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
def ground_albedo(px, pz, gp, seed, fp):
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
def facade_albedo(obj, i, px, py, pz, face, seed, fp):
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
def albedo(obj, gp, i, face, px, py, pz, seed, fp):
    if i == -2:
        return ground_albedo(px, pz, gp, seed, fp)
    mat = np.int64(obj[i, 7])
    st = np.int64(obj[i, 11])
    r0 = obj[i, 8]
    g0 = obj[i, 9]
    b0 = obj[i, 10]
    if mat == 1:
        return facade_albedo(obj, i, px, py, pz, face, seed, fp)
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
