"""Training data loading speed: the project's loader against a PIL + torchvision reference.

Both produce the same sample (target and two neighbours, un-jittered and jittered with one draw
per sample, random flip, ``(3, 3, H, W)`` float tensors + K) through a ``DataLoader`` with batch
``--batch`` and 0, 1, 2 workers, in the same run:

* ``project``: :class:`data.kitti.KittiRawDataset` as the trainer reads it (cv2 decoding,
  INTER_AREA resize, albumentations colour jitter, ``(epoch, index)`` sampler, persistent workers);
* ``project+cache``: the same with ``data.cache_dir`` (pre-resized frames, built before timing);
* ``reference``: Monodepth2's recipe -- PIL decoding, ``transforms.Resize`` (LANCZOS, as
  Monodepth2's ``Image.ANTIALIAS``), ``transforms.ColorJitter`` parameters applied to every frame,
  ``ToTensor``.

Data: the project's synthetic KITTI-format drives (1242x375 PNG, like KITTI raw), generated into
``--data`` when missing; ``--jpg`` converts them to JPEG first (as many KITTI users do).

    python bench/loader.py [--size 640x192] [--samples 96] [--jpg]
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
from data.samples import collate
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
        return {"color": color, "color_aug": color_aug, "K": torch.from_numpy(K), "index": key}


def ensure_data(path: Path, jpg: bool) -> Path:
    if not (path / "splits" / "train_files.txt").is_file():
        print(f"generating synthetic drives into {path} ...", flush=True)
        generate(path, seed=0, drives=2, frames=24, test_drives=1, gt_every=24)
    if not jpg:
        return path
    out = path.parent / (path.name + "_jpg")
    if not (out / "splits" / "train_files.txt").is_file():
        for p in path.rglob("*"):
            q = out / p.relative_to(path)
            if p.is_dir():
                continue
            q.parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == ".png" and "image_0" in str(p):
                cv2.imwrite(str(q.with_suffix(".jpg")), cv2.imread(str(p)), [cv2.IMWRITE_JPEG_QUALITY, 95])
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dabdepth_bench_loader")
    ap.add_argument("--size", default="640x192")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=64, help="samples timed per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jpg", action="store_true", help="JPEG copies of the images (as many KITTI users keep)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    w, h = (int(x) for x in args.size.split("x"))
    root = ensure_data(args.data, args.jpg)
    entries = read_split_file(root / "splits" / "train_files.txt")
    ext = "jpg" if args.jpg else "png"
    cache = args.data.parent / (args.data.name + f"_cache_{ext}")

    def project(cache_dir=None):
        ds = KittiRawDataset(root, entries, h, w, img_ext=ext, seed=0, cache_dir=cache_dir)
        if cache_dir:
            paths = [p for i in range(len(ds)) for p in ds.paths(i)]
            ds.disk_cache.build(paths, progress=False)
        return ds

    pipelines = {"project": project(), "project+cache": project(cache),
                 "reference (PIL+tv)": PILReference(root, entries, h, w, ext)}
    load = os.getloadavg()[0]
    print(f"{len(entries)} training samples of 3 frames, 1242x375 {ext} -> {w}x{h}, batch {args.batch}, "
          f"{args.samples} samples timed per cell; {os.cpu_count()} cores, load average {load:.1f} "
          f"(the CPU is shared with other users: absolute numbers are noisy, rows were run back to back)")
    print(f"{'pipeline':>20} " + " ".join(f"{f'{n} workers':>11}" for n in args.workers) + "   (samples/s)")
    for name, ds in pipelines.items():
        row = [measure(ds, args.batch, n, args.samples) for n in args.workers]
        print(f"{name:>20} " + " ".join(f"{r:>11.1f}" for r in row), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
