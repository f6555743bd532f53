"""Your own videos: a folder of image sequences and/or video files as a training set.

Layout of ``data.root`` (``data.dataset=video``)::

    <root>/<sequence>/*.{png,jpg,jpeg,...}    one sub-folder per sequence, frames in name order
    <root>/<sequence>/intrinsics.txt          optional: this sequence's intrinsics
    <root>/<name>.{mp4,mov,avi,mkv,...}       or a video file per sequence, decoded once with OpenCV
    <root>/<name>.intrinsics.txt              optional: that video's intrinsics
    <root>/*.png ...                          (frames directly in the root: one sequence)

Video files are decoded (every ``frame_stride``-th frame) into ``<cache_dir/videos or root/.frames>/
<name>-stride<N>/%06d.jpg`` once; a marker (``frames.json``, written last) records the source's size
and modification time, so a changed video is decoded again.

Intrinsics (fx, fy, cx, cy in **pixels of the original frames**), first found wins, per sequence:
the sequence's ``intrinsics.txt``; ``data.intrinsics`` naming a file; ``data.fx/fy/cx/cy``;
Monodepth2's KITTI-like default only with ``data.allow_default_intrinsics=true`` (or
``data.intrinsics=monodepth2``). Otherwise :class:`IntrinsicsMissing` explains how to find them.
An intrinsics file holds ``fx fy cx cy``, or a 3x3 ``K`` (9 numbers, row-major), or ``key: values``
lines such as KITTI's ``P_rect_02`` (with ``S_rect_02`` giving the size the matrix refers to),
KITTI odometry's ``P2``, ``K``/``camera_matrix``; an optional ``size: W H`` (or ``width``/``height``)
line says which image size the numbers refer to (default: the frames on disk). Frames are resized to
the network size and K rescaled with them (:func:`data.frames.resize_intrinsics`: fx, cx by the
width ratio, fy, cy by the height ratio -- also when the aspect ratio changes).

Samples are those of :class:`data.frames.FrameSampleDataset` (:class:`data.samples.FrameSample`:
uint8 ``color``, ``color_aug`` or None, ``K``, ``index``, ``jitter`` / ``jitter_order`` or None),
with the same augmentation as KITTI's. Validation (``data.val_fraction``) holds out
whole sequences when ``round(val_fraction * n_sequences)`` is at least one and leaves at least one
for training (:func:`split_sequences`); otherwise (one or a few sequences) the tail of every
sequence, after a gap of one frame window (:func:`hold_out_tail`), so a tiny dataset gives up
frames, not half of itself. ``data.static_threshold`` > 0 drops triplets whose mean absolute frame
difference (grey, 0..1, on small thumbnails) between the target and any source is below it -- the
Zhou et al. rule against a car standing still; the number dropped is reported.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from common.errors import ConfigError, DataError, DatasetNotFound, IntrinsicsMissing
from common.atomic import atomic_write_text
from data.config import AugmentConfig, DataConfig
from data.calib import check_intrinsics
from data.frames import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    BadSampleError,
    FrameSampleDataset,
    monodepth2_intrinsics,
    read_image,
    resize_image,
    resize_intrinsics,
)

__all__ = [
    "IntrinsicsMissing", "Sequence", "decode_video", "video_frames", "video_frame_count", "discover_sequences",
    "parse_intrinsics_text", "read_intrinsics_file", "split_sequences", "hold_out_tail", "frame_differences",
    "VideoFolderDataset", "build_video_data", "INTRINSICS_HELP",
]

CACHE_MARKER = "frames.json"
THUMB_WIDTH = 128

INTRINSICS_HELP = """\
No camera intrinsics for {what} (data.root={root!r}).

Self-supervised depth warps one frame into another through the camera model, so it needs the focal
lengths and principal point of your camera, in pixels of the original frames. Give one of:
  data.intrinsics=/path/to/file   'fx fy cx cy', a 3x3 K, or a KITTI calib_cam_to_cam.txt
  data.fx=... data.fy=... data.cx=... data.cy=...
  an intrinsics.txt in each sequence folder (for a video v.mp4: v.intrinsics.txt beside it)
How to find them:
  - calibrate: film a printed checkerboard and run OpenCV's calibrateCamera (its camera matrix is K;
    undistort the frames first if the lens distorts visibly), or run COLMAP on a few hundred frames
    with a single shared camera and read fx, fy, cx, cy from cameras.txt;
  - from the spec sheet: fx = focal_mm / sensor_width_mm * image_width_px (fy likewise with the
    height), cx ~ width / 2, cy ~ height / 2;
  - from the horizontal field of view: fx = (width / 2) / tan(HFOV / 2).
Intrinsics are per camera and per recording mode (resolution, crop, zoom, stabilisation).
Last resort: data.allow_default_intrinsics=true uses Monodepth2's KITTI default (fx = 0.58 W,
fy = 1.92 H, centred principal point: about 82 deg horizontal field of view at KITTI's 3.3:1 aspect);
wrong intrinsics give distorted, badly scaled depth.
"""

VIDEO_HELP = """\
No video dataset found at data.root={root!r}.

data.dataset=video expects a folder holding one sub-folder of frames per sequence and/or video files:
  <root>/drive_a/000000.jpg 000001.jpg ...   <root>/drive_b.mp4 ...
Then: python train.py --config configs/custom_video.yaml data.root=<root> data.intrinsics=<file>
(see docs/own_data.md).
"""


@dataclass
class Sequence:
    name: str
    frames: list[Path]  # after the stride
    source: Path  # the folder or video file
    K: np.ndarray | None = None  # pixels of `K_size` (None: not resolved yet)
    K_size: tuple[int, int] | None = None  # (W, H) the K refers to; None = the frames' size
    K_source: str = ""
    image_size: tuple[int, int] | None = field(default=None, repr=False)  # (W, H) on disk


# -------------------------------------------------------------------------------------- decoding
def _source_stamp(path: Path, stride: int) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "stride": stride}


def video_frames(path: str | Path, stride: int = 1, rgb: bool = True) -> Iterator[np.ndarray]:
    """Frames ``0, stride, 2*stride, ...`` of a video file, decoded with OpenCV one at a time:
    ``H x W x 3`` uint8, RGB (``rgb``) or OpenCV's BGR. The one place videos are decoded (training
    folders: :func:`decode_video`; ``python -m depth.predict``). A missing file, one OpenCV cannot
    open, or one without a decodable frame raises :class:`BadSampleError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(f"missing video: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BadSampleError(f"corrupt or unreadable video: {path}")
    n_read = n_kept = 0
    try:
        while True:
            if n_read % stride == 0:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                n_kept += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame
            elif not cap.grab():
                break
            n_read += 1
    finally:
        cap.release()
    if n_kept == 0:
        raise BadSampleError(f"corrupt or unreadable video (no frame decoded): {path}")


def video_frame_count(path: str | Path) -> int:
    """OpenCV's frame count of a video (from its header: may be approximate; 0 when unreadable)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) if cap.isOpened() else 0
    finally:
        cap.release()


def decode_video(path: str | Path, out_dir: str | Path, stride: int = 1, quality: int = 95,
                 verbose: bool = False) -> list[Path]:
    """Frames ``0, stride, 2*stride, ...`` of a video as ``out_dir/%06d.jpg`` (decoded once; reused
    while the marker matches the video's size, mtime and the stride). Returns the frame paths."""
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise BadSampleError(f"missing video: {path}")
    want = _source_stamp(path, stride)
    marker = out_dir / CACHE_MARKER
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            return [out_dir / f"{i:06d}.jpg" for i in range(int(have["frames"]))]
        marker.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.jpg"):
        old.unlink()
    n_kept = 0
    for frame in video_frames(path, stride, rgb=False):
        if not cv2.imwrite(str(out_dir / f"{n_kept:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"could not write decoded frames to {out_dir}")
        n_kept += 1
    atomic_write_text(marker, json.dumps({**want, "frames": n_kept}, indent=2) + "\n")
    if verbose:
        print(f"decoded {path.name}: {n_kept} frames (stride {stride}) -> {out_dir}", flush=True)
    return [out_dir / f"{i:06d}.jpg" for i in range(n_kept)]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def discover_sequences(root: str | Path, stride: int = 1, cache_dir: str | Path | None = None,
                       verbose: bool = False) -> list[Sequence]:
    """Sequences under ``root`` (see the module doc), sorted by name; folders and files whose name
    starts with ``.`` are skipped (the decode cache lives in ``root/.frames`` by default)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFound(VIDEO_HELP.format(root=str(root)))
    cache = Path(cache_dir) / "videos" if cache_dir else root / ".frames"
    seqs: list[Sequence] = []
    direct = _images_in(root)
    if direct:
        seqs.append(Sequence(root.resolve().name or "root", direct[::stride], root))
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            frames = _images_in(p)
            if frames:
                seqs.append(Sequence(p.name, frames[::stride], p))
        elif p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            frames = decode_video(p, cache / f"{p.stem}-stride{stride}", stride, verbose=verbose)
            seqs.append(Sequence(p.stem, frames, p))
    names = [s.name for s in seqs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{root}: several sequences are named {dup} (a folder and a video with the same "
                         f"name?); rename one")
    if not seqs:
        raise DatasetNotFound(VIDEO_HELP.format(root=str(root)))
    return seqs


# ------------------------------------------------------------------------------------ intrinsics
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_intrinsics_text(text: str, name: str = "intrinsics") -> tuple[np.ndarray, tuple[int, int] | None]:
    """``(K, size)`` from the text of an intrinsics file (formats in the module doc); ``size`` is
    the ``(W, H)`` the numbers refer to, or None (the frames on disk)."""
    keyed: dict[str, list[float]] = {}
    loose: list[float] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" in line:
            key, val = line.split(":", 1)
            nums = [float(x) for x in _NUM.findall(val)]
            if nums and not re.search(r"[A-DF-Za-df-z]", val):  # skip e.g. calib_time: 09-Jan-2012
                keyed[key.strip()] = nums
        else:
            loose += [float(x) for x in _NUM.findall(line)]
    size = None
    for k in ("S_rect_02", "size", "image_size", "S_02"):
        if k in keyed and len(keyed[k]) == 2:
            size = (int(round(keyed[k][0])), int(round(keyed[k][1])))
            break
    if size is None and "width" in keyed and "height" in keyed:
        size = (int(round(keyed["width"][0])), int(round(keyed["height"][0])))
    nums = None
    for k in ("P_rect_02", "P2", "K", "camera_matrix", "K_02", "intrinsics"):
        if k in keyed:
            nums = keyed[k]
            break
    if nums is None and all(k in keyed for k in ("fx", "fy", "cx", "cy")):
        nums = [keyed["fx"][0], keyed["fy"][0], keyed["cx"][0], keyed["cy"][0]]
    if nums is None:
        nums = loose
    if len(nums) == 4:
        fx, fy, cx, cy = nums
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    elif len(nums) in (9, 12):
        M = np.asarray(nums, dtype=np.float64).reshape(3, -1)
        K = M[:, :3].copy()
    else:
        raise DataError(f"{name}: expected 'fx fy cx cy', a 3x3 K, a 3x4 P or a KITTI calib file; "
                         f"found {len(nums)} numbers")
    if not (K[0, 0] > 0 and K[1, 1] > 0 and abs(K[2, 2] - 1) < 1e-6 and K[1, 0] == 0 and K[2, 0] == 0
            and K[2, 1] == 0):
        raise DataError(f"{name}: not a pinhole intrinsics matrix (positive fx, fy; last row 0 0 1): {K.tolist()}")
    check_intrinsics(K, name, size)
    return K, size


def read_intrinsics_file(path: str | Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"intrinsics file not found: {path}")
    return parse_intrinsics_text(path.read_text(), str(path))


def _sequence_intrinsics_file(seq: Sequence) -> Path | None:
    p = seq.source / "intrinsics.txt" if seq.source.is_dir() else seq.source.with_suffix(".intrinsics.txt")
    return p if p.is_file() else None


def resolve_intrinsics(seqs: list[Sequence], data_cfg: DataConfig, root: str | Path) -> None:
    """Fill ``K``/``K_size``/``K_source`` of every sequence from the config (order in the module
    doc); raises :class:`IntrinsicsMissing` naming the sequences without any."""
    mode = str(data_cfg.intrinsics or "").strip()
    fxyz = [float(data_cfg.fx or 0.0), float(data_cfg.fy or 0.0), float(data_cfg.cx or 0.0), float(data_cfg.cy or 0.0)]
    default_ok = bool(data_cfg.allow_default_intrinsics) or mode == "monodepth2"
    global_K = None
    if mode and mode not in ("auto", "calib", "monodepth2", "none"):
        K, size = read_intrinsics_file(mode)
        global_K = (K, size, f"file {mode}")
    elif any(fxyz):
        if not (fxyz[0] > 0 and fxyz[1] > 0):
            raise ConfigError(f"data.fx and data.fy must both be > 0, got {fxyz[0]}, {fxyz[1]}")
        fx, fy, cx, cy = fxyz
        global_K = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), None, "data.fx/fy/cx/cy")
        check_intrinsics(global_K[0], global_K[2])
    missing = []
    for s in seqs:
        own = _sequence_intrinsics_file(s)
        if own is not None:
            s.K, s.K_size = read_intrinsics_file(own)
            s.K_source = str(own)
        elif global_K is not None:
            s.K, s.K_size, s.K_source = global_K[0], global_K[1], global_K[2]
        elif default_ok:
            s.K, s.K_size, s.K_source = None, None, "monodepth2 default"
        else:
            missing.append(s.name)
        if s.K is not None and s.frames:  # against the frames themselves, before any training
            h, w = read_image(s.frames[0]).shape[:2]
            check_intrinsics(s.K, f"{s.K_source} (sequence {s.name!r})", s.K_size, (w, h))
    if missing:
        what = f"sequence(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        raise IntrinsicsMissing(INTRINSICS_HELP.format(what=what, root=str(root)))


# ------------------------------------------------------------------------------------- splitting
def split_sequences(names: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, val)`` sequence names: ``round(val_fraction * n)`` sequences chosen by ``seed``, at
    most ``n - 1`` (one sequence always trains). No sequence is held out when that rounds to zero
    (e.g. 2 sequences at 0.1): :func:`hold_out_tail` then holds out frames instead."""
    names = sorted(names)
    n = len(names)
    n_val = min(int(round(val_fraction * n)), n - 1) if val_fraction > 0 and n >= 2 else 0
    order = np.random.default_rng([int(seed), 1717]).permutation(n)
    val = {names[i] for i in order[:n_val]}
    return [x for x in names if x not in val], [x for x in names if x in val]


def hold_out_tail(seq: Sequence, val_fraction: float, frame_ids) -> tuple[Sequence, Sequence | None]:
    """``(train part, val part or None)`` of one sequence: the last ``max(window,
    round(val_fraction * n))`` frames are held out, after a gap of ``window`` frames (``window =
    max(frame_ids) - min(frame_ids) + 1``, a sample's span) that neither part uses, so no training
    sample reads a frame of, or next to, a validation sample. A sequence too short to leave a
    training sample keeps all its frames (val None). Both parts keep the sequence's intrinsics."""
    window = max(frame_ids) - min(frame_ids) + 1
    n = len(seq.frames)
    n_val = max(window, int(round(val_fraction * n)))
    cut = n - n_val - window
    if val_fraction <= 0 or cut < window:
        return seq, None
    return (dataclasses.replace(seq, frames=seq.frames[:cut]),
            dataclasses.replace(seq, name=f"{seq.name}[val]", frames=seq.frames[n - n_val:]))


def _thumb(path: Path) -> np.ndarray:
    img = read_image(path)
    h, w = img.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, int(round(h * tw / w)))
    g = cv2.cvtColor(resize_image(img, (tw, th)), cv2.COLOR_RGB2GRAY)
    return g.astype(np.float32) / 255.0


def frame_differences(frames: list[Path], targets: list[int], offsets: list[int]) -> np.ndarray:
    """``(len(targets),)`` minimum over ``offsets`` of the mean absolute grey difference (0..1)
    between frame ``t`` and frame ``t + offset``, on ``THUMB_WIDTH``-wide thumbnails."""
    cache: dict[int, np.ndarray] = {}

    def get(i):
        if i not in cache:
            cache[i] = _thumb(frames[i])
        return cache[i]

    out = np.empty(len(targets))
    for k, t in enumerate(targets):
        out[k] = min(float(np.abs(get(t) - get(t + o)).mean()) for o in offsets) if offsets else np.inf
    return out


# --------------------------------------------------------------------------------------- dataset
class VideoFolderDataset(FrameSampleDataset):
    """Training samples (target + sources of ``frame_ids``) from :class:`Sequence` objects whose
    intrinsics are resolved; one sample per frame with all its sources inside the sequence (minus
    static ones when ``static_threshold`` > 0: ``n_static`` of them)."""

    def __init__(self, sequences: list[Sequence], height: int, width: int, frame_ids=(0, -1, 1), *,
                 is_train: bool = True, static_threshold: float = 0.0, color_jitter_prob: float = 0.5,
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.1,
                 flip_prob: float = 0.5, seed: int = 0, cache_images: bool = False, zoom_prob: float = 0.0,
                 zoom_min_scale: float = 0.5, jitter_on: str = "device"):
        frame_ids = list(frame_ids)
        super().__init__(height, width, len(frame_ids), is_train=is_train, color_jitter_prob=color_jitter_prob,
                         brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                         flip_prob=flip_prob, seed=seed, cache_images=cache_images, zoom_prob=zoom_prob,
                         zoom_min_scale=zoom_min_scale, jitter_on=jitter_on)
        self.sequences = list(sequences)
        self.frame_ids = frame_ids
        self.static_threshold = float(static_threshold)
        lo, hi = -min(frame_ids), max(frame_ids)
        offsets = [f for f in frame_ids if f != 0]
        self.samples: list[tuple[int, int]] = []
        self.n_static = 0
        self.n_candidates = 0
        for si, s in enumerate(self.sequences):
            targets = list(range(lo, len(s.frames) - hi))
            self.n_candidates += len(targets)
            if self.static_threshold > 0 and targets:
                diffs = frame_differences(s.frames, targets, offsets)
                keep = diffs >= self.static_threshold
                self.n_static += int((~keep).sum())
                targets = [t for t, k in zip(targets, keep) if k]
            self.samples += [(si, t) for t in targets]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        return self.read_resized(path)

    def intrinsics_for(self, seq: Sequence, image_size: tuple[int, int]) -> np.ndarray:
        """K at the network size for frames of ``image_size`` (W, H) on disk."""
        if seq.K is None:
            if seq.K_source != "monodepth2 default":
                raise IntrinsicsMissing(f"sequence {seq.name!r} has no intrinsics")
            return monodepth2_intrinsics(self.width, self.height)
        return resize_intrinsics(seq.K, seq.K_size or image_size, (self.width, self.height))

    def paths(self, index: int) -> list[Path]:
        si, t = self.samples[index]
        return [self.sequences[si].frames[t + f] for f in self.frame_ids]

    def load_frames(self, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        si, t = self.samples[index]
        seq = self.sequences[si]
        frames, size = [], None
        for f in self.frame_ids:
            img, s = self._load(seq.frames[t + f])
            size = size or s
            frames.append(img)
        return frames, self.intrinsics_for(seq, size)


def build_video_data(data_cfg: DataConfig, augment_cfg: AugmentConfig, seed: int = 0, verbose: bool = True):
    """``(train_set, val_set or None)`` for ``data.dataset=video``: sequences discovered and
    decoded, intrinsics resolved, split by sequence (:func:`split_sequences`) or, when no sequence
    can be held out, by frames (:func:`hold_out_tail`), static triplets filtered (train and val
    alike)."""
    seqs = discover_sequences(data_cfg.root, data_cfg.frame_stride, data_cfg.cache_dir or None, verbose=verbose)
    resolve_intrinsics(seqs, data_cfg, data_cfg.root)
    train_names, val_names = split_sequences([s.name for s in seqs], data_cfg.val_fraction, seed)
    by_name = {s.name: s for s in seqs}
    train_seqs, val_seqs = [by_name[n] for n in train_names], [by_name[n] for n in val_names]
    how = f"{len(val_names)} held-out sequence(s)"
    if not val_seqs and data_cfg.val_fraction > 0:
        parts = [hold_out_tail(s, data_cfg.val_fraction, data_cfg.frame_ids) for s in seqs]
        train_seqs, val_seqs = [tr for tr, _ in parts], [va for _, va in parts if va is not None]
        how = f"the last frames of {len(val_seqs)} sequence(s) ({sum(len(v.frames) for v in val_seqs)} frames)"
    common = dict(static_threshold=data_cfg.static_threshold, color_jitter_prob=augment_cfg.color_jitter_prob,
                  brightness=augment_cfg.brightness, contrast=augment_cfg.contrast,
                  saturation=augment_cfg.saturation, hue=augment_cfg.hue, flip_prob=augment_cfg.flip_prob,
                  seed=seed, cache_images=data_cfg.cache_images, jitter_on=augment_cfg.color_jitter_on,
                  **augment_cfg.frame_zoom())
    train = VideoFolderDataset(train_seqs, data_cfg.height, data_cfg.width, data_cfg.frame_ids, is_train=True,
                               **common)
    val = VideoFolderDataset(val_seqs, data_cfg.height, data_cfg.width, data_cfg.frame_ids, is_train=False,
                             **common) if val_seqs else None
    if verbose:
        n_frames = sum(len(s.frames) for s in seqs)
        print(f"video dataset {data_cfg.root}: {len(seqs)} sequences, {n_frames} frames (stride "
              f"{data_cfg.frame_stride}); train {len(train_seqs)} sequences / {len(train)} samples, "
              f"val {how if val else 'none'} / {len(val) if val else 0} samples", flush=True)
        if data_cfg.static_threshold > 0:
            n_static = train.n_static + (val.n_static if val else 0)
            n_cand = train.n_candidates + (val.n_candidates if val else 0)
            print(f"static-frame filter (mean |frame difference| < {data_cfg.static_threshold:g}): dropped "
                  f"{n_static} of {n_cand} samples", flush=True)
        sources = sorted({s.K_source for s in seqs})
        print(f"intrinsics from: {', '.join(sources)}", flush=True)
        if "monodepth2 default" in sources:
            print("warning: Monodepth2's KITTI default intrinsics are in use (data.allow_default_intrinsics); "
                  "depth will be distorted unless your camera resembles KITTI's", file=sys.stderr, flush=True)
    if len(train) == 0:
        raise DataError(f"no training samples in {data_cfg.root}: sequences need at least "
                         f"{max(data_cfg.frame_ids) - min(data_cfg.frame_ids) + 1} frames after the stride "
                         f"(and the static-frame filter)")
    return train, val
