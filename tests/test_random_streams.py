"""Each random consumer of a training step has its own stream: zoom draws, dropout (torch's global
generator) and auto-masking noise never share a seed, so they do not correlate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.datasets import build_training_data
from depth.config import load_config
from depth.train import objective as objective_module
from depth.train.trainer import RANDOM_STREAMS, Trainer, collate, step_seed, stream_seed

ROOT = Path(__file__).resolve().parents[1]


def test_streams_are_distinct_and_deterministic():
    seeds = {stream_seed(3, 17, 1, s) for s in RANDOM_STREAMS}
    assert len(seeds) == len(RANDOM_STREAMS)
    assert stream_seed(3, 17, 1, "zoom") == stream_seed(3, 17, 1, "zoom")
    assert stream_seed(3, 17, 1, "zoom") != stream_seed(3, 18, 1, "zoom") != stream_seed(3, 17, 0, "zoom")
    assert step_seed(3, 17, 1) == stream_seed(3, 17, 1, "global")
    assert all(0 <= s < 2 ** 63 for s in seeds)


def test_unknown_stream():
    with pytest.raises(ValueError, match="unknown random stream 'dropout'"):
        stream_seed(0, 0, 0, "dropout")


def test_zoom_stream_uncorrelated_with_global_stream():
    """Over 400 steps, the zoom generator's uniforms and the global generator's uniforms (what
    Dropout2d draws from) are uncorrelated; seeded alike (the old scheme) they were identical."""
    zoom, glob = [], []
    for step in range(400):
        gen = torch.Generator().manual_seed(stream_seed(0, step, 0, "zoom"))
        zoom.append(torch.rand(8, generator=gen, dtype=torch.float64))
        torch.manual_seed(step_seed(0, step, 0))
        glob.append(torch.rand(8, dtype=torch.float64))
    corr = np.corrcoef(torch.cat(zoom).numpy(), torch.cat(glob).numpy())[0, 1]
    assert abs(corr) < 0.1  # 3200 pairs: independent streams give |corr| ~ 0.02


def test_zoom_draws_do_not_depend_on_dropout(tiny_synthetic, tmp_path, monkeypatch):
    """The same step zooms the same way (same intrinsics reach the loss) whether the depth net has
    Dropout2d (DCA) or not."""
    seen = []

    def spy(disparities, target, sources, K, poses, **kw):
        seen.append(K.clone())
        return real(disparities, target, sources, K, poses, **kw)

    real = objective_module.self_supervised_loss
    monkeypatch.setattr(objective_module, "self_supervised_loss", spy)
    for dca in ("false", "true"):
        cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
            f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
            "data.synthetic.generate=false", "data.height=64", "data.width=64", "train.batch_size=4",
            "augment.zoom_prob=1.0", f"model.dca={dca}", f"output.dir={tmp_path / dca}", "train.device=cpu"])
        train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
        train_set.set_epoch(0)
        batch = collate([train_set[i] for i in range(4)])
        trainer = Trainer(cfg, train_set)
        for step in (0, 5):
            torch.manual_seed(step_seed(cfg.train.seed, step, 0))
            with torch.no_grad():
                trainer.compute_loss(batch, step)
    without_dropout, with_dropout = seen[:2], seen[2:]
    for a, b in zip(without_dropout, with_dropout):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(seen[0], seen[1])  # different steps zoom differently
    assert not torch.equal(seen[0], collate([train_set[i] for i in range(4)]).K.float())  # zoomed
