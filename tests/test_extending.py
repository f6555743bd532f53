"""Extension points: the registries (names are config values, typos get the closest names, new
files are found), and docs/extending.md done exactly as written -- its two files written into a
copy of the repository, then trained with."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.registry import Registry
from depth.config import load_config
from depth.registry import DECODERS, RECIPES
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
FILE_BLOCK = re.compile(r"```python file=(\S+)\n(.*?)```", re.S)


def doc_files() -> dict[str, str]:
    """The files docs/extending.md prints (``python file=PATH`` code blocks), by path."""
    return {path: body for path, body in FILE_BLOCK.findall(DOC.read_text())}


# ---------------------------------------------------------------- the registry


def test_registered_names_are_the_config_values():
    assert set(DECODERS.names()) == {"monodepth2", "diffnet"}
    assert set(RECIPES.names()) == {"baseline", "dabnet"}
    for key, registry in (("model.decoder", DECODERS), ("loss.recipe", RECIPES)):
        for name in registry.names():
            load_config(overrides=[f"{key}={name}"])


@pytest.mark.parametrize("key, typo, hint", [("model.decoder", "difnet", "'diffnet'"),
                                             ("loss.recipe", "dabnt", "'dabnet'"),
                                             ("loss.recipe", "zzz", None)])
def test_a_typo_names_the_key_and_the_closest_names(key, typo, hint):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[f"{key}={typo}"])
    msg = str(e.value)
    assert msg.startswith(f"{key}: unknown ") and repr(typo) in msg
    assert (f"did you mean {hint}?" in msg) if hint else "did you mean" not in msg
    assert msg.endswith(" | ".join((DECODERS if key == "model.decoder" else RECIPES).names()))


def test_registering_one_name_twice_is_a_defect_and_the_same_object_is_not():
    r = Registry("x.kind", "kind")
    obj = object()
    r.register("a")(obj)
    r.register("a")(obj)  # importing a module twice registers the same object again
    with pytest.raises(ValueError, match="two kinds are registered as 'a'"):
        r.register("a")(object())
    assert r.get("a") is obj and "a" in r and list(r) == ["a"]


def test_discovery_imports_every_module_of_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from common.registry import Registry\nTHINGS = Registry('t.kind', 'thing', "
                                     "discover='plugins_pkg')\n")
    (pkg / "first.py").write_text("from plugins_pkg import THINGS\nTHINGS.register('one')(1)\n")
    (pkg / "second.py").write_text("from plugins_pkg import THINGS\nTHINGS.register('two')(2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_pkg
    assert plugins_pkg.THINGS.get("two") == 2 and set(plugins_pkg.THINGS.names()) == {"one", "two"}


# ---------------------------------------------------------------- docs/extending.md as written


def _copy_of_the_repository(dest: Path) -> Path:
    for name in ("depth", "data", "common", "configs"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "train.py", dest / "train.py")
    return dest


def test_extending_walkthrough_adds_a_loss_term_and_a_decoder_in_one_file_each(tmp_path, tiny_synthetic):
    files = doc_files()
    assert set(files) == {"depth/train/recipes/baseline_logtv.py", "depth/networks/tiny_decoder.py"}
    repo = _copy_of_the_repository(tmp_path / "repo")
    for path, body in files.items():
        assert not (repo / path).exists()
        (repo / path).write_text(body)
    env = dict(os.environ, PYTHONPATH=str(repo))  # the copy shadows the installed project
    # the new recipe's term: the baseline's total plus 1e-3 mean |grad log depth|, nothing else changed
    check = textwrap.dedent("""
        import torch
        from depth.registry import DECODERS, RECIPES
        from depth.train.losses import self_supervised_loss
        assert "baseline_logtv" in RECIPES.names() and "tiny" in DECODERS.names()
        g = torch.Generator().manual_seed(0)
        disp = [torch.rand(2, 1, 16, 24, generator=g) * 0.5 + 0.1]
        target, source = torch.rand(2, 3, 16, 24, generator=g), torch.rand(2, 3, 16, 24, generator=g)
        K = torch.tensor([[20.0, 0, 12], [0, 20.0, 8], [0, 0, 1]]).expand(2, 3, 3)
        T = torch.eye(4).expand(2, 4, 4).clone(); T[:, 0, 3] = 0.1
        kw = dict(min_depth=0.1, max_depth=100.0, automask=False)
        base = self_supervised_loss(disp, target, [source], K, [T], recipe="baseline", **kw)
        tv = self_supervised_loss(disp, target, [source], K, [T], recipe="baseline_logtv", **kw)
        logd = torch.log(base.depth)
        want = 1e-3 * ((logd[..., :, 1:] - logd[..., :, :-1]).abs().mean() + (logd[..., 1:, :] - logd[..., :-1, :]).abs().mean())
        assert torch.allclose(tv.total - base.total, want, atol=1e-7), (tv.total - base.total, want)
        assert torch.equal(tv.photometric, base.photometric) and torch.equal(tv.smoothness, base.smoothness)
        print("term ok", float(want))
    """)
    r = subprocess.run([sys.executable, "-c", check], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "term ok" in r.stdout, r.stdout + r.stderr
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/synthetic.yaml", "loss.recipe=baseline_logtv",
         "model.decoder=tiny", f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
         "data.synthetic.generate=false", "data.height=64", "data.width=64", "train.batch_size=2",
         "train.max_steps=2", "train.num_workers=0", "train.progress=false", "train.image_every=0",
         "train.val_every=0", "train.checkpoint_every=0", "train.device=cpu", *SMALL_NETS, f"output.dir={run}"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 < metrics["abs_rel"] < 10
    saved = (run / "config.yaml").read_text()
    assert "decoder: tiny" in saved and "recipe: baseline_logtv" in saved
