"""What data/ reads from a run's configuration: the ``data.*`` keys (:class:`DataConfig`, with
``data.synthetic.*``: :class:`SyntheticConfig`) and the ``augment.*`` keys (:class:`AugmentConfig`).
:mod:`depth.config` composes them into the run's :class:`depth.config.Config` (defaults, presets,
overrides and their checks live there); data/ reads these typed sections and nothing else of it."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SyntheticConfig", "DataConfig", "AugmentConfig"]


@dataclass
class SyntheticConfig:
    generate: bool = False  # generate the synthetic KITTI-format dataset into data.root when missing
    seed: int = 0
    drives: int = 4  # the last `test_drives` are test-only
    frames: int = 80  # frames per drive
    test_drives: int = 1


@dataclass
class DataConfig:
    dataset: str = "kitti"  # kitti (KITTI raw layout) | video (folders of frames / video files, data/video.py)
    root: str = "kitti_data"  # KITTI raw root (<root>/<date>/<date>_drive_XXXX_sync/...) or the video folder
    split: str = "eigen_zhou"  # built-in split name, or a folder with train_files.txt / val_files.txt
    height: int = 192
    width: int = 640
    frame_ids: list[int] = field(default_factory=lambda: [0, -1, 1])
    img_ext: str = "auto"  # png | jpg | auto (whichever exists)
    intrinsics: str = "calib"  # calib: P_rect_02/03 of the date, rescaled | monodepth2: fixed normalised K
    # (video: calib/auto = per-sequence intrinsics.txt or data.fx..cy | a calib/intrinsics file path | monodepth2)
    fx: float = 0.0  # video: intrinsics in pixels of the original frames (0 = not given)
    fy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0
    allow_default_intrinsics: bool = False  # video: fall back to Monodepth2's KITTI-like K when none is given
    frame_stride: int = 1  # video: keep every N-th frame (subsample high-fps video)
    static_threshold: float = 0.0  # video: drop triplets whose mean |frame difference| (0..1) is below this
    val_fraction: float = 0.1  # video: share held out for validation (sequences; frames when too few)
    # frames [0, -1, 1, 's'] = frame_ids [0, -1, 1] + stereo=true (MS); frame_ids [0] + stereo=true = S
    stereo: bool = False  # add the other camera as a source (Monodepth2's S / MS modes)
    stereo_baseline: float = 0.54  # stereo translation used by the loss (training units); 0.1 = Monodepth2
    stereo_baseline_metric: float = 0.54  # the rig's real baseline in metres (KITTI 0.54); eval scale = metric / baseline
    val_gt: str = "auto"  # ground truth for validation: auto | benchmark (dense PNG) | velodyne | none
    val_split: str = "val"  # validation frames: val (the split's val_files.txt) | test (its test list, Eigen's for built-in splits)
    val_max_images: int = 200  # validate on at most this many frames
    cache_dir: str = ""  # optional on-disk cache of pre-resized training images
    cache_images: bool = False  # keep decoded, resized frames in memory (small datasets / low res)
    check: bool = False  # verify every file of the split exists before training
    on_bad_sample: str = "error"  # error | skip
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class AugmentConfig:
    color_jitter_prob: float = 0.5  # one set of jitter parameters per sample, all frames
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    # device: the parameters travel with the uint8 frames and the jitter runs on the training
    # device (data.color_jitter, kornia); loader: albumentations in the loader, a second set of
    # uint8 frames travels (the jitter of the ablation rows in bench/README.md)
    color_jitter_on: str = "device"
    flip_prob: float = 0.5
    zoom_prob: float = 0.0  # zoom imitation (docs/method.md §4); 0.5 in the paper
    zoom_min_scale: float = 0.5
    # network: crop the network-size batch on the device and resize it back (the authors'); frame:
    # crop the full-resolution frame in the dataset and resize it once (a zoomed view as sharp as a
    # longer lens would give; data.frames.FrameSampleDataset.zoomed_frames)
    zoom_source: str = "network"

    def frame_zoom(self) -> dict:
        """Dataset keyword arguments of zoom from the source frame (none active for ``network``)."""
        on = self.zoom_source == "frame"
        return dict(zoom_prob=self.zoom_prob if on else 0.0, zoom_min_scale=self.zoom_min_scale)
