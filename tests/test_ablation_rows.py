"""The ablation benchmark's rows: what each name runs (bench/ablation.py), cheaply (no training)."""
from __future__ import annotations

import json
from pathlib import Path

from bench.ablation import CLEAN, NETWORKS, VARIANTS, run_name, scored_seeds, variant_config, write_summary


def test_clean_rows_share_one_schedule_and_differ_only_by_their_engine(tmp_path):
    cfgs = {n: variant_config(n, 0, None, [], tmp_path) for n in CLEAN}
    assert {tuple(c.optim.step_milestones) for c in cfgs.values()} == {(700,)}
    assert {c.optim.gamma for c in cfgs.values()} == {0.1}
    assert cfgs["baseline_ss"].model.scales == [0] and not cfgs["baseline_ss"].model.dca
    assert cfgs["dca"].model.dca and cfgs["zoom"].augment.zoom_prob == 0.5 and not cfgs["zoom"].model.dca
    assert cfgs["full"].loss.recipe == "dabnet" and cfgs["full"].augment.zoom_source == "network"


def test_frame_source_rows_and_the_exact_network(tmp_path):
    z = variant_config("zoom_frame", 2, None, [], tmp_path)
    assert (z.augment.zoom_source, z.augment.zoom_prob) == ("frame", 0.5)
    assert Path(z.output.dir) == tmp_path / "zoom_frame_s2"
    assert variant_config("full_frame", 0, None, [], tmp_path).augment.zoom_source == "frame"
    e = variant_config("dca", 1, 10, [], tmp_path, network="exact")
    assert (e.model.encoder, e.model.decoder, e.model.dca) == ("hrnet_w18", "diffnet", True)
    assert Path(e.output.dir) == tmp_path / "dca-exact_s1" and e.train.max_steps == 10
    assert run_name("full", "project") == "full" and run_name("full", "exact") == "full-exact"
    assert set(NETWORKS) == {"project", "exact"} and {"zoom_frame", "full_frame"} <= set(VARIANTS)


def test_the_summary_keeps_every_scored_seed_of_every_invocation(tmp_path):
    """Two invocations (--seeds 1, then --seeds 2) share one --out: the summary holds both."""
    for row, seed in [("zoom_frame", 1), ("zoom_frame", 2), ("full", 12)]:
        (tmp_path / f"{row}_s{seed}").mkdir()
        (tmp_path / f"{row}_s{seed}" / "score.json").write_text(json.dumps({"seed": seed}))
    (tmp_path / "zoom_s3").mkdir()  # a run still training: no score yet
    assert scored_seeds(tmp_path) == [1, 2, 12]
    write_summary(tmp_path)
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert {k: [r["seed"] for r in v] for k, v in rows.items()} == {"zoom_frame": [1, 2], "full": [12]}
