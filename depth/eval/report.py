"""An evaluation report to look at: ``index.html`` with the metrics table, the protocol line, a
histogram of per-image abs rel, the N worst and N best images (input, predicted disparity, GT,
error map), and the resolution curve once runs at several network sizes went into the same folder.

The folder holds ``index.html``, ``report.json`` (every run written into it: the resolution
curve's history) and ``img/*.png``. It is replaced whole (built in a temporary folder next to it,
then swapped in): a crash leaves the previous report. A folder that is not a report (no
``report.json``) and not empty is never overwritten.

Pictures (8-bit PNG, RGB): the input as the network saw it; the predicted disparity and the GT
(as inverse depth) in magma from their minimum to their 95th percentile, no GT = black; the error
map = per-pixel ``|gt - pred| / gt`` of the scaled prediction on the scored pixels, turbo from 0
(dark blue) to 0.5 (dark red) and above, unscored pixels grey; sparse GT (under 20 % of the view)
is drawn in 3x3 blocks. The evaluation box is outlined in cyan on the GT. The histogram and the
curve are inline SVG; the page needs no network and no script to display (one short script
records, for tests, how many images the browser decoded: ``<body data-images-loaded="k/n">``).
"""
from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import EvalError
from common.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from depth.eval.scoring import Aligned

__all__ = ["ReportView", "REPORT_FORMAT", "write_report", "ERROR_RANGE"]

REPORT_FORMAT = "dabdepth-report-v1"
ERROR_RANGE = 0.5  # abs rel at the top of the error colour scale
PANEL_WIDTH = 640  # pictures wider than this are downsized (display only)


@dataclass
class ReportView:
    """One image for the report: ``rgb`` the network input (``H x W x 3`` uint8, or ``None`` for
    saved disparities without images), ``disp`` the predicted scaled disparity ``(h, w)``, ``gt``
    the GT view ``(H, W)`` (0 = none), ``aligned`` its :func:`depth.eval.scoring.align`, ``box``
    the evaluation box ``(top, bottom, left, right)`` in the GT view."""

    rgb: np.ndarray | None
    disp: np.ndarray
    gt: np.ndarray
    aligned: Aligned
    box: tuple[int, int, int, int]


# ------------------------------------------------------------------------------------------ pictures
def _colour(values: np.ndarray, valid: np.ndarray, cmap: int, lo: float | None = None,
            hi: float | None = None) -> np.ndarray:
    """``values`` mapped linearly from ``lo`` (default: min) to ``hi`` (default: 95th percentile)
    of the valid pixels through an OpenCV colour map; RGB uint8, invalid pixels black."""
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros((*v.shape, 3), np.uint8)
    if not valid.any():
        return out
    vals = v[valid]
    lo = float(vals.min()) if lo is None else lo
    hi = float(np.percentile(vals, 95)) if hi is None else hi
    hi = max(hi, lo + 1e-12)
    u8 = np.clip((np.where(valid, v, lo) - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cmap), cv2.COLOR_BGR2RGB)
    out[valid] = rgb[valid]
    return out


def _sparse_blocks(rgb: np.ndarray, valid: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Sparse maps drawn in 3x3 blocks (a velodyne scan is ~5 % of the pixels: invisible otherwise)."""
    if valid.mean() >= 0.2:
        return rgb
    k = np.ones((3, 3), np.uint8)
    grown = cv2.dilate(valid.astype(np.uint8), k) > 0
    big = cv2.dilate(rgb, k)
    out = np.empty_like(rgb)
    out[:] = background
    out[grown] = big[grown]
    out[valid] = rgb[valid]
    return out


def _display(img: np.ndarray, nearest: bool) -> np.ndarray:
    h, w = img.shape[:2]
    if w <= PANEL_WIDTH:
        return img
    size = (PANEL_WIDTH, max(1, round(h * PANEL_WIDTH / w)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def panels(v: ReportView) -> dict[str, np.ndarray]:
    """The four pictures of one image (RGB uint8): ``input`` (absent without ``rgb``), ``disp``,
    ``gt``, ``error``."""
    out = {}
    if v.rgb is not None:
        out["input"] = _display(np.ascontiguousarray(v.rgb), nearest=False)
    d = np.asarray(v.disp, np.float32)
    out["disp"] = _display(_colour(d, np.isfinite(d), cv2.COLORMAP_MAGMA), nearest=False)
    gt = np.asarray(v.gt, np.float32)
    has = gt > 0
    inv = np.where(has, 1.0 / np.where(has, gt, 1.0), 0.0)
    g = _sparse_blocks(_colour(inv, has, cv2.COLORMAP_MAGMA), has, (0, 0, 0))
    t, b, l, r = v.box
    if (t, b, l, r) != (0, gt.shape[0], 0, gt.shape[1]):
        cv2.rectangle(g, (l, t), (r - 1, b - 1), (0, 255, 255), max(1, gt.shape[1] // 400))
    out["gt"] = _display(g, nearest=True)
    m = v.aligned.mask
    err = np.zeros(gt.shape, np.float64)
    err[m] = np.abs(gt[m] - v.aligned.pred_view[m]) / gt[m]
    e = _colour(err, m, cv2.COLORMAP_TURBO, 0.0, ERROR_RANGE)
    e[~m] = (64, 64, 64)
    out["error"] = _display(_sparse_blocks(e, m, (64, 64, 64)), nearest=True)
    return out


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode a report picture as PNG")
    return buf.tobytes()


# -------------------------------------------------------------------------------------------- charts
def histogram_svg(values: np.ndarray, bins: int = 20, label: str = "abs rel", width: int = 640,
                  height: int = 220) -> str:
    """Inline SVG bar chart of the finite ``values`` in ``bins`` equal bins from 0 to their maximum,
    with the mean marked."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "<p>no image with a valid GT pixel</p>"
    top = float(v.max()) if v.max() > 0 else 1.0
    counts, edges = np.histogram(v, bins=bins, range=(0.0, top))
    pl, pr, pt, pb = 44, 12, 12, 36
    cw, ch = width - pl - pr, height - pt - pb
    cmax = max(1, int(counts.max()))
    bw = cw / bins
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="histogram of per-image {label}">',
             f'<line x1="{pl}" y1="{pt + ch}" x2="{pl + cw}" y2="{pt + ch}" stroke="#333"/>',
             f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ch}" stroke="#333"/>']
    for i, c in enumerate(counts):
        h = ch * c / cmax
        parts.append(f'<rect class="bar" x="{pl + i * bw + 1:.1f}" y="{pt + ch - h:.1f}" '
                     f'width="{bw - 2:.1f}" height="{h:.1f}" fill="#4a78b5">'
                     f'<title>{edges[i]:.3f}-{edges[i + 1]:.3f}: {c}</title></rect>')
    for k in range(5):
        x = pl + cw * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{pt + ch + 16}" font-size="11" text-anchor="{anchor}">'
                     f'{top * k / 4:.3f}</text>')
    parts.append(f'<text x="{pl - 6}" y="{pt + 10}" font-size="11" text-anchor="end">{cmax}</text>'
                 f'<text x="{pl - 6}" y="{pt + ch}" font-size="11" text-anchor="end">0</text>')
    mx = pl + cw * float(v.mean()) / top
    parts.append(f'<line x1="{mx:.1f}" y1="{pt}" x2="{mx:.1f}" y2="{pt + ch}" stroke="#c0392b" '
                 f'stroke-dasharray="4 3"/><text x="{mx + 4:.1f}" y="{pt + 12}" font-size="11" '
                 f'fill="#c0392b">'
                 f'mean {v.mean():.3f}</text>')
    parts.append(f'<text x="{pl + cw / 2:.1f}" y="{height - 4}" font-size="12" text-anchor="middle">'
                 f'per-image {html.escape(label)} ({v.size} images)</text></svg>')
    return "".join(parts)


def curve_svg(points: Sequence[tuple[int, int, float]], width: int = 640, height: int = 240) -> str:
    """Inline SVG of abs rel against network input width; ``points`` ``(w, h, abs_rel)``."""
    pts = sorted(points)
    xs = np.array([p[0] for p in pts], float)
    ys = np.array([p[2] for p in pts], float)
    pl, pr, pt, pb = 52, 16, 14, 40
    cw, ch = width - pl - pr, height - pt - pb
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(min(ys.min(), 0.0)), float(ys.max()) * 1.1 or 1.0
    fx = (lambda x: pl + cw * (x - x0) / (x1 - x0)) if x1 > x0 else (lambda x: pl + cw / 2)
    fy = lambda y: pt + ch - ch * (y - y0) / (y1 - y0)  # noqa: E731
    path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(xs, ys))
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="resolution curve">',
             f'<line x1="{pl}" y1="{pt + ch}" x2="{pl + cw}" y2="{pt + ch}" stroke="#333"/>',
             f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ch}" stroke="#333"/>',
             f'<polyline points="{path}" fill="none" stroke="#4a78b5" stroke-width="2"/>']
    for (w, h, a) in pts:
        parts.append(f'<circle cx="{fx(w):.1f}" cy="{fy(a):.1f}" r="4" fill="#4a78b5"><title>{w}x{h}: '
                     f'{a:.4f}</title></circle><text x="{fx(w):.1f}" y="{pt + ch + 16}" font-size="11" '
                     f'text-anchor="middle">{w}x{h}</text><text x="{fx(w):.1f}" y="{fy(a) - 8:.1f}" '
                     f'font-size="11" text-anchor="middle">{a:.3f}</text>')
    parts.append(f'<text x="{pl + cw / 2:.1f}" y="{height - 4}" font-size="12" text-anchor="middle">network '
                 f'input size (abs rel on the same GT)</text></svg>')
    return "".join(parts)


# ------------------------------------------------------------------------------------------- history
def _read_history(out: Path) -> list[dict]:
    """Runs recorded in an existing report folder; refuses a folder that is not a report."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise EvalError(f"--report {out} is a file, not a folder")
    meta = out / "report.json"
    if not meta.is_file():
        if any(out.iterdir()):
            raise EvalError(f"--report {out} is not empty and holds no report.json: not a report "
                                  f"folder of evaluate.py, so it is left as it is (choose another folder)")
        return []
    try:
        data = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalError(f"{meta} is not valid JSON ({e}): remove it or choose another --report folder") \
            from None
    if not (isinstance(data, dict) and data.get("format") == REPORT_FORMAT
            and isinstance(data.get("runs"), list)):
        raise EvalError(f"{meta} is not a report index of this project (format {REPORT_FORMAT!r} expected)")
    return data["runs"]


def _same_series(a: dict, b: dict) -> bool:
    return a.get("series") == b.get("series")


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    fsync_dir(out.parent)


# ---------------------------------------------------------------------------------------------- page
_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
code.protocol{display:block;white-space:pre-wrap;background:#f4f4f4;padding:8px;border-radius:4px}
table.metrics{border-collapse:collapse}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:4px 10px;text-align:right}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:6px;margin-bottom:14px}
.grid figure{margin:0}.grid img{width:100%;image-rendering:pixelated;border:1px solid #ddd}
.grid figcaption{font-size:12px;color:#555}h3{font-size:15px;margin:10px 0 4px}
.note{color:#555;font-size:13px}"""

_SCRIPT = """<script>window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-loaded',ok+'/'+im.length);});</script>"""


def write_report(out_dir: str | Path, *, run: dict, metric_names: Sequence[str], per_abs_rel: np.ndarray,
                 names: Sequence[str], view: Callable[[int], ReportView], n: int = 4) -> Path:
    """Write the report of one run into ``out_dir`` (replaced whole) and return ``index.html``.

    ``run``: ``{"title", "protocol" (the line), "metrics" (dict), "series" (what must match for two
    runs to share a resolution curve: dataset, split, model, post-processing, scaling),
    "size" ([w, h] network input or None)}``; ``per_abs_rel``: ``(N,)`` (NaN = no valid pixel);
    ``view(i)``: the :class:`ReportView` of image ``i`` (called for the worst and best ``n`` only).
    """
    out = Path(out_dir)
    history = [r for r in _read_history(out)
               if not (_same_series(r, run) and r.get("size") == run.get("size"))]
    history.append({k: _finite(run[k]) for k in ("title", "protocol", "metrics", "series", "size")})
    per = np.asarray(per_abs_rel, np.float64)
    order = [int(i) for i in np.argsort(np.where(np.isfinite(per), per, np.inf), kind="stable")
             if np.isfinite(per[i])]
    k = min(n, len(order))
    worst = order[::-1][:k]
    best = [i for i in order[:k] if i not in worst] if len(order) > k else []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "img").mkdir()
        sections = []
        for title, idx in (("Worst", worst), ("Best", best)):
            if not idx:
                continue
            rows = [f"<h2>{title} {len(idx)} by abs rel</h2>"]
            for i in idx:
                figs, pics = [], panels(view(i))
                for key, caption in (("input", "input"), ("disp", "predicted disparity"),
                                     ("gt", "GT (inverse depth; box: scored region)"),
                                     ("error", f"error |gt-pred|/gt, 0 to {ERROR_RANGE:g}")):
                    if key not in pics:
                        figs.append(f"<figure><figcaption>{caption}: not available</figcaption></figure>")
                        continue
                    fname = f"img/{title.lower()}_{i:05d}_{key}.png"
                    atomic_write_bytes(tmp / fname, _png(pics[key]))
                    figs.append(f'<figure><img src="{fname}" alt="{key} of image {i}"><figcaption>{caption}'
                                f'</figcaption></figure>')
                rows.append(f"<h3>#{i} {html.escape(str(names[i]))}: abs rel {per[i]:.4f}</h3>"
                            f'<div class="grid">{"".join(figs)}</div>')
            sections.append("".join(rows))
        m = run["metrics"]
        cells = "".join(f"<th>{html.escape(k)}</th>" for k in metric_names)
        vals = "".join(f"<td>{m[k]:.4f}</td>" if isinstance(m.get(k), float) and np.isfinite(m[k])
                       else "<td>-</td>" for k in metric_names)
        ratio = (f'<p class="note">median scaling ratio {m["ratio_median"]:.3f}, std {m["ratio_std"]:.3f}</p>'
                 if isinstance(m.get("ratio_median"), float) and np.isfinite(m["ratio_median"]) else "")
        series = [r for r in history if _same_series(r, run) and r.get("size")
                  and r["metrics"].get("abs_rel") is not None]
        curve = ""
        if len({tuple(r["size"]) for r in series}) >= 2:
            pts = [(int(r["size"][0]), int(r["size"][1]), float(r["metrics"]["abs_rel"])) for r in series]
            curve = (f"<h2>Resolution curve</h2>{curve_svg(pts)}<p class=\"note\">{len(pts)} runs of this "
                     f"model written into this folder at different --height/--width</p>")
        title = html.escape(run["title"])
        page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
                f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
                f"<code class=\"protocol\">{html.escape(run['protocol'])}</code>"
                f"<h2>Metrics ({m['n_images']} images)</h2>"
                f"<table class=\"metrics\"><tr>{cells}</tr><tr>{vals}</tr></table>{ratio}"
                f"<h2>Per-image abs rel</h2>{histogram_svg(per)}{curve}{''.join(sections)}"
                f"{_SCRIPT}</body></html>\n")
        atomic_write_text(tmp / "index.html", page)
        index = {"format": REPORT_FORMAT, "runs": history}
        atomic_write_text(tmp / "report.json",
                          json.dumps(index, indent=2, allow_nan=False, default=_json_default) + "\n")
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _json_default(o):
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(v):
    """NaN/inf -> None, recursively (``report.json`` is strict JSON)."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
