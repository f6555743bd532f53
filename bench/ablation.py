"""What each engine buys: baseline, +zoom, +DCA, +both and the paper's full recipe on the synthetic
street, same data, size, batch, schedule and number of steps, several seeds.

Rows (``--variants``; default: the clean rows, one schedule for all -- the preset's: warm-up 50,
lr x0.1 at 700/900 of the steps -- and, at one seed, one pose-net initialisation across rows):

* ``baseline``     ``configs/synthetic.yaml`` (Monodepth2 loss, four-scale decoder);
* ``baseline_ss``  single-scale supervision (``model.scales=[0]``): the authors' reference for DCA;
* ``dca``          + dynamic cross-attention decoder (single output, Dropout2d 0.1 on X_2);
* ``zoom``         + zoom imitation (``augment.zoom_prob=0.5``);
* ``zoom_dca``     + both, with the baseline loss;
* ``full``         ``configs/synthetic_dabnet.yaml`` on the preset's schedule: zoom + DCA + the
  dabnet loss (Charbonnier, second-order smoothness) + gradient clipping;
* dose and mechanism: ``zoom_min0.9``, ``zoom_min0.75`` (``augment.zoom_min_scale``; ``zoom`` is
  0.5), ``baseline_b12`` / ``full_b12`` (batch 12 x 450 steps: the same images), ``full_smooth``
  (the dabnet smoothness weight scaled from the authors' 1024 to this 192 width); ``--bn-recal``
  adds rows ``<variant>+bn`` (BatchNorm statistics re-estimated on un-zoomed training frames, no
  training);
* ``stereo`` / ``zoom_stereo``: mono + stereo (``configs/synthetic_stereo.yaml``), metric depth,
  scored without scaling by ``bench/cameras.py``;
* ``zoom_frame`` / ``full_frame``: ``zoom`` / ``full`` with ``augment.zoom_source=frame`` (the crop
  taken from the full-resolution frame and resized once: no upsampled pixels);
* ``baseline_devjit``: ``baseline`` with the colour jitter on the training device
  (``augment.color_jitter_on=device``, the default since the rows were first measured; every other
  row keeps the loader's albumentations jitter they were measured with, so rows stay comparable);
* ``baseline_posestack``: ``baseline`` with ``train.pose_stacked=true`` (one pose-net call on all
  pairs: its BatchNorm statistics mix them);
* ``--network exact``: the rows on the authors' exact network (HRNet-18 + DIFFNet; rows
  ``<variant>-exact``); ``baseline_ss`` is then its plain head, the reference of ``dca`` and ``full``;
* ``--init-from runs/ablation/baseline_s{seed}``: every row starts from a converged run's weights
  (the pretrained-start regime; ``model.init_from``: encoder, and decoder / pose net where shapes
  match) for ``--steps`` more steps; the continued baseline is the control.

Each run is scored on the synthetic test drive (Eigen protocol, per-image median scaling) through
the one prediction path (``depth.inference.predict_disparities``):

* abs rel, sq rel, RMSE, δ1 on the full image;
* the zoom depth shift and the 2x-zoom gap (``depth.eval.robustness.zoom_robustness``): 1 / 0 =
  zooming the camera leaves the predicted depth alone, 0.5 = depth follows apparent size;
* the resolution curve (``bench/resolution.py``): abs rel with the network run at 0.5x .. 2x the
  training size, relative to 1x; "res. spread" = mean |abs rel(f) / abs rel(1x) - 1| over f != 1.

Resumable: every run lives in ``OUT/<variant>_s<seed>/`` and writes checkpoints as it goes; a rerun
trains only what is missing (continuing an interrupted run from its last checkpoint), rescores
every finished run and rewrites ``OUT/ablation.json`` and the table after every run. Two
invocations with different ``--variants`` or ``--seeds`` may share one ``--out``.

    python bench/ablation.py [--seeds 0 1 2] [--variants baseline full] [--steps N] [key=value ...]
    python bench/ablation.py --table-only          # print the table of what OUT holds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bench.resolution import curve_cells, curve_header, score_resolution
from common.atomic import atomic_write_text
from common.registry import Registry
from data.datasets import build_training_data
from data.kitti import KittiImageSet
from data.samples import collate
from data.splits import read_split_file, split_file
from data.synthetic import ensure_synthetic
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import Config, load_config
from depth.eval.metrics import compute_depth_metrics
from depth.eval.robustness import RESOLUTION_FACTORS, zoom_robustness
from depth.inference import predict_disparities
from depth.io.checkpoint import load_checkpoint
from depth.model import load_model
from depth.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]

BASE = ROOT / "configs" / "synthetic.yaml"
DABNET = ROOT / "configs" / "synthetic_dabnet.yaml"
# every row runs the preset's schedule (synthetic.yaml: warm-up 50, lr x0.1 at step 700), scaled to
# --steps; `full` drops synthetic_dabnet.yaml's own x0.5-at-50/75 % schedule for it
SCHEDULE = ["optim.step_milestones=[700]", "optim.gamma=0.1"]
# the dabnet smoothness weight (1e-3, tuned by the authors at 1024x320) scaled to this width: a
# disparity step spread over k pixels at 1024 spans k * 192 / 1024 pixels at 192
SMOOTH_AT_192 = f"loss.smoothness_weight={1e-3 * 192 / 1024:.6g}"
STEREO = ROOT / "configs" / "synthetic_stereo.yaml"
B12 = ["train.batch_size=12", "train.max_steps=450", "optim.step_milestones=[350]"]
VARIANTS: Registry = Registry("--variants", "ablation variant")  # name -> (preset, overrides)
# the colour jitter every row was measured with (albumentations in the loader); a row may override it
ROW_JITTER = ["augment.color_jitter_on=loader"]


def register_variant(name: str, preset: Path, overrides: list[str]) -> None:
    """An ablation row: ``preset`` with ``overrides`` (``key=value``), run as ``--variants name``."""
    VARIANTS.register(name)((preset, list(overrides)))


register_variant("baseline", BASE, [])
register_variant("baseline_ss", BASE, ["model.scales=[0]"])  # single-scale supervision: the reference of dca
register_variant("dca", BASE, ["model.dca=true"])
register_variant("zoom", BASE, ["augment.zoom_prob=0.5"])
register_variant("zoom_dca", BASE, ["augment.zoom_prob=0.5", "model.dca=true"])
register_variant("full", DABNET, SCHEDULE)
# dose and mechanism
register_variant("zoom_min0.9", BASE, ["augment.zoom_prob=0.5", "augment.zoom_min_scale=0.9"])
register_variant("zoom_min0.75", BASE, ["augment.zoom_prob=0.5", "augment.zoom_min_scale=0.75"])
# batch 12 x 450 steps: the images of the 900 x 6 rows, the decay at the same fraction (700/900)
register_variant("baseline_b12", BASE, [*B12])
register_variant("full_b12", DABNET, [*SCHEDULE, *B12])
register_variant("full_smooth", DABNET, [*SCHEDULE, SMOOTH_AT_192])
# mono + stereo (metric depth from the stereo baseline; its own preset: 250 steps), scored by
# bench/cameras.py with no scaling at all
register_variant("stereo", STEREO, [])
register_variant("zoom_stereo", STEREO, ["augment.zoom_prob=0.5"])
# zoom from the source frame: the crop taken from the full-resolution file and resized once
register_variant("zoom_frame", BASE, ["augment.zoom_prob=0.5", "augment.zoom_source=frame"])
register_variant("full_frame", DABNET, [*SCHEDULE, "augment.zoom_source=frame"])
# the jitter on the training device (kornia, data.color_jitter): must not cost accuracy
register_variant("baseline_devjit", BASE, ["augment.color_jitter_on=device"])
# the pose net once on the stacked pairs (BatchNorm over all pairs together)
register_variant("baseline_posestack", BASE, ["train.pose_stacked=true"])

# --network: the rows' own network (ResNet-18 + Monodepth2's decoder) or the authors' exact one
# (HRNet-18 with their concatenated features + DIFFNet decoder: docs/method.md); exact runs live in
# OUT/<variant>-exact_s<seed>/ and are rows "<variant>-exact"
NETWORKS = {"project": [], "exact": ["model.encoder=hrnet_w18", "model.decoder=diffnet"]}


def run_name(variant: str, network: str = "project") -> str:
    """The row (and run-folder prefix) of ``variant`` on ``network``."""
    return variant if network == "project" else f"{variant}-{network}"

CLEAN = ["baseline", "baseline_ss", "dca", "zoom", "zoom_dca", "full"]
COLS = ("abs_rel", "sq_rel", "rmse", "a1", "depth_shift", "gap")
HEADS = ("abs rel", "sq rel", "RMSE", "δ1", "zoom depth shift (1 = invariant)", "2x-zoom gap")


def variant_config(name: str, seed: int, steps: int | None, extra: list[str], out: Path,
                   init_from: str = "", network: str = "project") -> Config:
    """The config of one run. ``steps`` (None: the variant's own) rescales the lr milestones with
    the run length (the warm-up stays), so a 3x longer run decays at the same fraction of training.
    ``init_from``: a run folder whose weights start this one (``model.init_from``; ``{seed}`` is
    replaced by the seed), the pretrained-start regime. ``network``: a key of :data:`NETWORKS`."""
    preset, overrides = VARIANTS.get(name)
    run = [f"train.seed={seed}", f"output.dir={out / f'{run_name(name, network)}_s{seed}'}", *ROW_JITTER, *overrides,
           *NETWORKS[network], *extra]
    if init_from:
        run.append(f"model.init_from={init_from.format(seed=seed)}")
    own = load_config(preset, run)
    steps = steps or own.train.max_steps
    milestones = [round(m * steps / own.train.max_steps) for m in own.optim.step_milestones]
    # no validation during training (scored afterwards), checkpoints a few times per run (resume)
    return load_config(preset, [*run, f"train.max_steps={steps}", f"optim.step_milestones={milestones}",
                                "data.val_gt=none", "train.val_every=0",
                                f"train.checkpoint_every={max(1, steps // 4)}", "train.image_every=0",
                                "train.progress=false", "output.overwrite=true"])


def finished(run_dir: Path, steps: int) -> bool:
    m = run_dir / "metrics.json"
    return m.is_file() and json.loads(m.read_text()).get("steps") == steps


def train(cfg: Config) -> float:
    """Train (or continue) one run; the training seconds of this call."""
    run_dir = Path(cfg.output.dir)
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set)
    if trainer.init_summary:
        print(f"  {run_dir.name}: {trainer.init_summary}", flush=True)
    if (run_dir / "checkpoints").is_dir():
        try:
            trainer.load_state(load_checkpoint(run_dir))
            print(f"  continuing {run_dir} at step {trainer.step_count}", flush=True)
        except (FileNotFoundError, RuntimeError):
            pass
    t0 = time.time()
    trainer.fit()
    return time.time() - t0


def score(run_dir: Path, images, gt, factors, bn_recal: bool = False) -> dict:
    """Full-image metrics, zoom robustness and the resolution curve of a finished run; with
    ``bn_recal``, after :func:`recalibrate_batchnorm` (the weights untouched)."""
    nets, cfg = load_model(run_dir)
    net, size = nets.depth_net, (cfg.data.width, cfg.data.height)
    if bn_recal:
        recalibrate_batchnorm(net, cfg)
    kw = dict(min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth)
    full = compute_depth_metrics(predict_disparities(net, images, size, **kw), gt)
    return {**{k: full[k] for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")},
            **zoom_robustness(net, images, gt, size, 2.0, **kw),
            "resolution": score_resolution(net, cfg, images, gt, factors)}


def recalibrate_batchnorm(net: nn.Module, cfg: Config, batches: int = 50) -> None:
    """Re-estimate ``net``'s BatchNorm running statistics on un-zoomed training frames: the
    jittered targets the depth net sees in training (flip and colour jitter of epoch 0), without
    zoom imitation, ``batches`` batches of ``train.batch_size`` in a fixed random order, as
    cumulative averages (``momentum=None``); no gradient, weights and dropout (eval) untouched.
    Leaves ``net`` in eval mode."""
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.eval()
    for m in bns:
        m.train()
    b = cfg.train.batch_size
    order = np.random.default_rng([cfg.train.seed, 77]).permutation(len(train_set))
    with torch.no_grad():
        for i in range(min(batches, len(order) // b)):
            batch = collate([train_set[int(j)] for j in order[i * b:(i + 1) * b]])
            net(batch.network_images("cpu")[1][:, 0])
    net.eval()


BN_SCORE = "score_bnrecal.json"


def collect(out: Path, variants, seeds, file: str = "score.json", suffix: str = "") -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for name in variants:
        for seed in seeds:
            f = out / f"{name}_s{seed}" / file
            if f.is_file():
                rows.setdefault(name + suffix, []).append(json.loads(f.read_text()))
    return rows


def scored_seeds(out: Path) -> list[int]:
    """Every seed with a scored run in ``out`` (``<row>_s<seed>/score.json``), whichever invocation
    scored it: ``ablation.json`` holds them all, not only the seeds of the latest invocation."""
    seeds = {d.name.rsplit("_s", 1)[1] for d in out.glob("*_s*") if (d / "score.json").is_file()}
    return sorted(int(s) for s in seeds if s.isdigit())


def write_summary(out: Path) -> None:
    """``out/ablation.json``: every scored run in ``out``, of every row, network and seed."""
    every = [run_name(v, n) for n in NETWORKS for v in VARIANTS]
    atomic_write_text(out / "ablation.json", json.dumps(collect(out, every, scored_seeds(out)), indent=2))


def _cell(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.4f} ± {v.std():.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def print_table(rows: dict[str, list[dict]], factors) -> None:
    print("| variant | seeds | " + " | ".join(HEADS) + " | res. spread | train s/run |")
    print("|---|---|" + "---|" * (len(HEADS) + 2))
    for name, rs in rows.items():
        spread = [np.mean([abs(r["resolution"][str(f)]["abs_rel_vs_1x"] - 1) for f in factors if f != 1.0])
                  for r in rs]
        secs = [r["train_seconds"] for r in rs if r.get("train_seconds")]
        seconds = f"{np.mean(secs):.0f}" if secs else "—"
        print(f"| {name} | {len(rs)} | " + " | ".join(_cell([r[k] for r in rs]) for k in COLS)
              + f" | {_cell(spread)} | {seconds} |")
    print("\nResolution curve: abs rel at f x the training size (mean ± std over seeds; in brackets: "
          "relative to 1x)")
    print(curve_header(factors))
    for name, rs in rows.items():
        print(f"| {name} | " + " | ".join(curve_cells([r["resolution"] for r in rs], factors)) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: the preset's train.max_steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=CLEAN, choices=list(VARIANTS),
                    help=f"default: the clean rows {CLEAN}")
    ap.add_argument("--factors", type=float, nargs="+", default=list(RESOLUTION_FACTORS),
                    help="resolution-curve factors (must include 1)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--no-train", action="store_true", help="only score the finished runs in --out")
    ap.add_argument("--init-from", default="", metavar="RUN",
                    help="start every run from this run folder's weights (model.init_from; '{seed}' = the "
                         "seed), e.g. runs/ablation/baseline_s{seed}: the pretrained-start regime")
    ap.add_argument("--network", choices=list(NETWORKS), default="project",
                    help="project: the rows' ResNet-18 + Monodepth2 decoder; exact: the authors' HRNet-18 + "
                         "DIFFNet (rows '<variant>-exact')")
    ap.add_argument("--bn-recal", action="store_true",
                    help="also score every finished run after re-estimating its BatchNorm statistics on "
                         "un-zoomed training frames (rows '<variant>+bn'; no training)")
    ap.add_argument("--table-only", action="store_true", help="print the table of the scores in --out")
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    args = ap.parse_args()
    if 1.0 not in args.factors:
        ap.error("--factors must include 1 (the training size)")
    factors = sorted(args.factors)

    if not args.table_only:
        cfg = load_config(BASE, args.overrides)
        s = cfg.data.synthetic
        if s.generate:
            ensure_synthetic(cfg.data.root, s.seed, s.drives, s.frames, s.test_drives, verbose=True)
        root = Path(cfg.data.root)
        test = read_split_file(split_file(cfg.data.split, "test"))
        images = list(KittiImageSet(root, test))
        gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in test]
        args.out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # seed-major: an interrupted sitting still compares every variant
            for name in args.variants:
                cfg = variant_config(name, seed, args.steps, args.overrides, args.out, args.init_from, args.network)
                row = run_name(name, args.network)
                run_dir = Path(cfg.output.dir)
                seconds = None
                if not finished(run_dir, cfg.train.max_steps):
                    if args.no_train:
                        print(f"{name} seed {seed}: not finished, skipped (--no-train)")
                        continue
                    seconds = train(cfg)
                old = run_dir / "score.json"
                if seconds is None and old.is_file():  # keep the training time of the sitting that trained it
                    seconds = json.loads(old.read_text()).get("train_seconds")
                r = {"variant": row, "seed": seed, "steps": cfg.train.max_steps,
                     "size": [cfg.data.width, cfg.data.height], "batch": cfg.train.batch_size,
                     "train_seconds": seconds, **score(run_dir, images, gt, factors)}
                atomic_write_text(old, json.dumps(r, indent=2))
                print(f"{row} seed {seed}: abs_rel {r['abs_rel']:.4f} a1 {r['a1']:.4f} "
                      f"shift {r['depth_shift']:.3f} gap {r['gap']:.4f}", flush=True)
                recal = run_dir / BN_SCORE
                if args.bn_recal and not recal.is_file():
                    rb = {**r, "variant": f"{row}+bn", **score(run_dir, images, gt, factors, bn_recal=True)}
                    atomic_write_text(recal, json.dumps(rb, indent=2))
                    print(f"{row}+bn seed {seed}: abs_rel {rb['abs_rel']:.4f}", flush=True)
                write_summary(args.out)
    names = [run_name(v, args.network) for v in args.variants]
    rows = collect(args.out, names, args.seeds)
    if args.bn_recal:
        rows.update(collect(args.out, names, args.seeds, BN_SCORE, "+bn"))
    if not rows:
        print(f"no scored runs in {args.out}")
        return 1
    steps = {r["steps"] for rs in rows.values() for r in rs}
    sizes = {tuple(r["size"]) for rs in rows.values() for r in rs}
    print(f"\nsynthetic test drive; steps per run {sorted(steps)}, size {sorted(sizes)}, "
          f"seeds {args.seeds}; mean ± std over seeds")
    print_table(rows, factors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
