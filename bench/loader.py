"""Training data loading speed: the project's loader against a PIL + torchvision reference.

All pipelines draw the same kind of sample (target and two neighbours, un-jittered and jittered
with one draw per sample, random flip, + K) through a ``DataLoader`` with batch ``--batch`` and 0,
1, 2 workers, in the same run:

* ``project``: :class:`data.kitti.KittiRawDataset` as the trainer reads it (cv2 decoding,
  INTER_AREA resize, ``(epoch, index)`` sampler, persistent workers): uint8 frames and the colour
  jitter's parameters (``augment.color_jitter_on=device``: the jitter itself runs on the training
  device, :mod:`data.color_jitter`, so it is not in this loader's time);
* ``project+cache``: the same with ``data.cache_dir`` (pre-resized frames, built before timing);
* ``project, loader jitter``: ``augment.color_jitter_on=loader`` (albumentations' ``ColorJitter``
  in the loader, a second set of uint8 frames);
* ``reference``: Monodepth2's recipe -- PIL decoding, ``transforms.Resize`` (LANCZOS, as
  Monodepth2's ``Image.ANTIALIAS``), ``transforms.ColorJitter`` parameters applied to every frame,
  ``ToTensor``: two sets of float32 frames.

Data: the project's synthetic KITTI-format drives (1242x375 PNG, like KITTI raw), generated into
``--data`` when missing; ``--source WxH`` resizes the frames on disk to that size first (default
1242x375, KITTI's); ``--jpg`` converts them to JPEG (as many KITTI users do). Besides samples/s the
table gives the bytes of one batch as it leaves the loader.

    python bench/loader.py [--size 640x192] [--batch 12] [--source 1242x375] [--samples 96] [--jpg]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from data.frames import resize_intrinsics
from data.kitti import KittiRawDataset, image_path, kitti_intrinsics
from data.samples import FrameSample, collate
from data.splits import read_split_file
from data.synthetic import generate
from depth.train.sampling import EpochIndexed, ResumableSampler


class PILReference(Dataset):
    """Monodepth2-style sample: PIL decode, LANCZOS resize, torchvision ColorJitter, ToTensor."""

    def __init__(self, root, entries, height, width, ext, seed=0):
        self.root, self.entries, self.h, self.w, self.ext = Path(root), entries, height, width, ext
        self.resize = transforms.Resize((height, width), interpolation=transforms.InterpolationMode.LANCZOS)
        self.jitter = transforms.ColorJitter(0.2, 0.2, 0.2, 0.1)
        self.to_tensor = transforms.ToTensor()
        self.seed = seed

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        key = index if not isinstance(index, tuple) else index[1]
        e = self.entries[key]
        rng = np.random.default_rng([self.seed, key])
        flip, jit = rng.random() < 0.5, rng.random() < 0.5
        frames = []
        size = None
        for f in (0, -1, 1):
            with Image.open(image_path(self.root, e, e.side, self.ext, e.frame + f)) as im:
                im = im.convert("RGB")
                size = size or im.size
                im = self.resize(im)
            if flip:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            frames.append(im)
        if jit:
            order, b, c, s, h = self.jitter.get_params(self.jitter.brightness, self.jitter.contrast,
                                                       self.jitter.saturation, self.jitter.hue)
            aug = []
            for im in frames:
                for i in order:
                    im = [lambda x: TF.adjust_brightness(x, b), lambda x: TF.adjust_contrast(x, c),
                          lambda x: TF.adjust_saturation(x, s), lambda x: TF.adjust_hue(x, h)][i](im)
                aug.append(im)
        else:
            aug = frames
        K, _ = kitti_intrinsics(self.root / e.date, e.side)
        K = resize_intrinsics(K, size, (self.w, self.h))
        color = torch.stack([self.to_tensor(im) for im in frames])
        color_aug = torch.stack([self.to_tensor(im) for im in aug]) if jit else color
        return FrameSample(color=color, color_aug=color_aug, K=torch.from_numpy(K), index=key)


NATIVE = (1242, 375)  # what the synthetic generator writes (KITTI raw's size)


def ensure_data(path: Path, jpg: bool, source: tuple[int, int] = NATIVE) -> Path:
    """The generated drives, their frames resized to ``source`` and/or as JPEG in a sibling folder
    (for timing: the calibration files stay those of 1242x375)."""
    if not (path / "splits" / "train_files.txt").is_file():
        print(f"generating synthetic drives into {path} ...", flush=True)
        generate(path, seed=0, drives=2, frames=24, test_drives=1, gt_every=24)
    if not jpg and tuple(source) == NATIVE:
        return path
    out = path.parent / (path.name + ("_jpg" if jpg else "") + ("" if tuple(source) == NATIVE else
                                                                 f"_{source[0]}x{source[1]}"))
    if not (out / "splits" / "train_files.txt").is_file():
        for p in path.rglob("*"):
            q = out / p.relative_to(path)
            if p.is_dir():
                continue
            q.parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == ".png" and "image_0" in str(p):
                img = cv2.imread(str(p))
                if tuple(source) != NATIVE:
                    img = cv2.resize(img, tuple(source), interpolation=cv2.INTER_AREA if source[0] < NATIVE[0]
                                     else cv2.INTER_LINEAR)
                if jpg:
                    cv2.imwrite(str(q.with_suffix(".jpg")), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                else:
                    cv2.imwrite(str(q), img)
            else:
                shutil.copyfile(p, q)
    return out


def measure(ds, batch, workers, samples, seed=0):
    sampler = ResumableSampler(len(ds), seed, True, with_epoch=True)
    loader = DataLoader(EpochIndexed(ds), batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
                        prefetch_factor=2 if workers else None)
    epoch, n = 0, 0
    # warm-up: the first batch (worker start-up, imports) is not timed
    sampler.set_epoch(epoch)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    while n < samples:
        for b in it:
            n += len(b)
            if n >= samples:
                break
        else:
            epoch += 1
            sampler.set_epoch(epoch)
            it = iter(loader)
    dt = time.perf_counter() - t0
    del it, loader
    return n / dt


def batch_bytes(ds, batch: int) -> int:
    """Bytes of the tensors of one collated batch (what travels from a worker to the trainer)."""
    b = collate([ds[i] for i in range(batch)])
    return sum(v.nbytes for v in vars(b).values() if isinstance(v, torch.Tensor))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dabdepth_bench_loader")
    ap.add_argument("--size", default="640x192")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=64, help="samples timed per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jpg", action="store_true", help="JPEG copies of the images (as many KITTI users keep)")
    ap.add_argument("--source", default="1242x375", help="WxH of the frames on disk (default KITTI's 1242x375)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    w, h = (int(x) for x in args.size.split("x"))
    source = tuple(int(x) for x in args.source.split("x"))
    root = ensure_data(args.data, args.jpg, source)
    entries = read_split_file(root / "splits" / "train_files.txt")
    ext = "jpg" if args.jpg else "png"
    cache = args.data.parent / (args.data.name + f"_cache_{ext}_{source[0]}x{source[1]}")

    def project(cache_dir=None, jitter_on="device"):
        ds = KittiRawDataset(root, entries, h, w, img_ext=ext, seed=0, cache_dir=cache_dir, jitter_on=jitter_on)
        if cache_dir:
            paths = [p for i in range(len(ds)) for p in ds.paths(i)]
            ds.disk_cache.build(paths, progress=False)
        return ds

    # the project's frames travel as uint8 with the jitter's parameters (the jitter runs on the
    # training device); "loader jitter" runs albumentations here and ships a second set of frames
    pipelines = {"project": project(), "project+cache": project(cache),
                 "project, loader jitter": project(jitter_on="loader"),
                 "reference (PIL+tv)": PILReference(root, entries, h, w, ext)}
    load = os.getloadavg()[0]
    print(f"{len(entries)} training samples of 3 frames, {source[0]}x{source[1]} {ext} -> {w}x{h}, batch {args.batch}, "
          f"{args.samples} samples timed per cell; {os.cpu_count()} cores, load average {load:.1f} "
          f"(the CPU is shared with other users: absolute numbers are noisy, rows were run back to back)")
    print(f"{'pipeline':>20} " + " ".join(f"{f'{n} workers':>11}" for n in args.workers) + f" {'MB/batch':>9}"
          + "   (samples/s)")
    for name, ds in pipelines.items():
        row = [measure(ds, args.batch, n, args.samples) for n in args.workers]
        print(f"{name:>20} " + " ".join(f"{r:>11.1f}" for r in row) + f" {batch_bytes(ds, args.batch) / 2 ** 20:>9.1f}",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
