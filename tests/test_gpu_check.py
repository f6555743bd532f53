"""The GPU check's pieces that run without a GPU: which wheels it carries, the fallback install on
the target, the synthetic KITTI-layout frames it feeds the project's loader, and its table."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_check, gpu_wheels  # noqa: E402


def test_missing_requirements_are_those_the_image_lacks(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pins\ntorch==2.14.1\nkornia==0.9.0\nPyYAML==6.0.4\nopencv-python-headless==5.0.0.93\n"
                   "omegaconf==2.4.0  # config\ncolorama==0.4; sys_platform == 'win32'\n")
    image = tmp_path / "image.txt"
    image.write_text("# names\ntorch\npyyaml\nopencv_python_headless\n")
    env = gpu_wheels.target_environment("3.12")
    names = [r.name for r in gpu_wheels.missing_requirements(gpu_wheels.read_requirements(req),
                                                             gpu_wheels.read_names(image), env)]
    assert names == ["kornia", "omegaconf"]  # PyYAML = pyyaml, _ = -, the win32-only one dropped


def test_requires_of_evaluates_markers_for_the_target():
    meta = ("Metadata-Version: 2.1\nName: albumentations\nVersion: 2.0.8\n"
            "Requires-Dist: numpy>=1.24.4\n"
            'Requires-Dist: typing-extensions>=4.9.0; python_version < "3.10"\n'
            "Requires-Dist: pydantic>=2.9.2\n"
            'Requires-Dist: pytest; extra == "tests"\n'
            'Requires-Dist: cuda-bindings<14; platform_system == "Linux" and python_version < "3.15"\n'
            'Requires-Dist: pywin32; sys_platform == "win32"\n\nbody\n')
    got = [str(r) for r in gpu_wheels.requires_of(meta, gpu_wheels.target_environment("3.12"))]
    assert got == ["numpy>=1.24.4", "pydantic>=2.9.2", 'cuda-bindings<14; platform_system == "Linux" and '
                   'python_version < "3.15"']
    old = [r.name for r in gpu_wheels.requires_of(meta, gpu_wheels.target_environment("3.9"))]
    assert old == ["numpy", "typing-extensions", "pydantic", "cuda-bindings"]


def _fake_wheel(folder: Path, name: str, version: str, module: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}.py", "VALUE = 42\n")
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return path


def test_verify_installs_a_fallback_only_where_the_image_falls_short(tmp_path):
    wheels, site = tmp_path / "whl", tmp_path / "site"
    site.mkdir()
    _fake_wheel(wheels / "fallback", "gpu_check_fake_pkg", "99.0", "gpu_check_fake_mod")
    # pytest is installed here at a version < 999 and > 1: the first line fails, the second holds
    (wheels / "image-requirements.txt").write_text(
        "gpu-check-fake-pkg>=99.0  # kornia\npytest>=1  # albumentations\nno-such-package-xyz>=1  # pydantic\n")
    lines = []
    unmet = gpu_wheels.verify(wheels, site, log=lines.append)
    assert (site / "gpu_check_fake_mod.py").read_text() == "VALUE = 42\n"
    assert unmet == 1  # the one without a fallback
    assert any("installed the carried gpu_check_fake_pkg-99.0" in m for m in lines)
    assert any(m.startswith("WARNING: image has no-such-package-xyz nothing; pydantic") for m in lines)
    assert not any("pytest" in m for m in lines)


def test_synthetic_frames_load_through_the_project_dataset(tmp_path):
    from data.kitti import KittiRawDataset
    from data.splits import read_split_file
    info = gpu_check.write_frames(tmp_path / "frames", 6, workers=1)
    root = tmp_path / "frames"
    pngs = sorted((root / gpu_check.DATE / gpu_check.DRIVE / "image_02" / "data").glob("*.png"))
    assert len(pngs) == 6 and info["frames"] == 6 and 300 < info["mean_kb"] < 2000
    entries = read_split_file(root / "splits" / "train_files.txt")
    assert [e.frame for e in entries] == [1, 2, 3, 4]  # every frame with both neighbours
    ds = KittiRawDataset(root, entries, 64, 192, (0, -1, 1), intrinsics="calib", color_jitter_prob=0.0,
                         flip_prob=0.0)
    s = ds[0]
    assert tuple(s["color"].shape[-3:]) == (3, 64, 192)
    # K: the written P_rect_02 (fx 721.5377, cx 609.5593, cy 172.854 at 1242x375) rescaled to 192x64
    from data.frames import resize_intrinsics
    K0 = np.array([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    np.testing.assert_allclose(s["K"].numpy(), resize_intrinsics(K0, (1242, 375), (192, 64)), rtol=1e-5)
    # consecutive frames differ (a moving window) but share most of their content
    a, b = (np.asarray(s.images()[0][i]) for i in (0, 2))
    assert 0 < np.abs(a - b).mean() < 0.2
    again = gpu_check.write_frames(root, 6, workers=1)  # reused, not rewritten
    assert again["mean_kb"] == info["mean_kb"] and pngs[0].stat().st_mtime_ns == sorted(
        pngs)[0].stat().st_mtime_ns


def _row(net, samples_s, kind="step", size="640x192", amp="auto", comp="off", **kw):
    return {"key": f"{kind}:{net}:{size}:{amp}:{comp}", "kind": kind, "net": net, "size": size, "batch": 12,
            "amp": amp, "compile": comp, "status": "ok", "steps_s": samples_s / 12, "samples_s": samples_s,
            "warmup_s": 1.0, "peak_gib": 2.0, "syncs": 0, "syncs_per_step": 0.0, "sync_sites": [], **kw}


def test_table_ratio_to_the_minimal_step_and_the_20_epoch_time():
    rows = [_row("baseline", 300.0), _row("minimal", 150.0), _row("baseline", 100.0, comp="on"),
            _row("baseline", 442.3333, kind="e2e"),
            {"key": "step:dabnet:640x192:auto:off", "kind": "step", "net": "dabnet", "size": "640x192", "batch": 12,
             "amp": "auto", "compile": "off", "status": "skipped", "note": "no model.decoder key"}]
    text = gpu_check.table(rows)
    base, compiled = [line.split() for line in text.splitlines() if line.startswith("step   baseline")]
    # columns: kind net size b amp comp warm steps/s samples/s x-min peak syncs/step 20ep-h
    # 300 / 150 = 2.00 x minimal; 20 x 39810 / 300 / 3600 = 0.737 h
    assert base[5] == "off" and base[9] == "2.00" and base[12] == "0.74"
    assert compiled[5] == "on" and compiled[9] == "-"  # no minimal row with compile on: no ratio
    assert "skipped: no model.decoder key" in text
    g = gpu_check.goals(rows, "640x192")
    assert "best 442.3 samples/s" in g and "24.0x" in g and "met" in g  # 442.3 / 18.43 = 24.0
    assert "compile off: 2.00 (goal >= 1.5: met)" in g
    assert gpu_check.epoch20_hours(None) is None


def test_plan_puts_cheap_rows_first_and_the_recipe_first_among_compiled():
    rows = gpu_check.plan([(640, 192), (1024, 320)], [(640, 192), (1024, 320)])
    kinds = [(r.kind, r.compile) for r in rows]
    first_compiled = kinds.index(("step", True))
    assert all(not c for _, c in kinds[:first_compiled]) and ("e2e", False) in kinds[:first_compiled]
    assert rows[first_compiled].size == (640, 192) and rows[first_compiled].amp == "auto"
    assert len({r.key for r in rows}) == len(rows) == 16 + 3 + 16 + 1
    assert not any(r.compile for r in gpu_check.plan([(640, 192)], [], ()))


@pytest.mark.slow
def test_cpu_smoke_runs_every_kind_of_row(tmp_path):
    """The driver end to end on the CPU through the project's public functions (no compile)."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu-smoke", "--no-compile",
                        "--sizes", "192x64", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    for prefix in ("step   baseline", "step   dca", "step   minimal", "loader baseline", "e2e    baseline",
                   "e2e    dca"):
        row = [line for line in lines if line.startswith(prefix)]
        assert row and all("failed" not in x and "skipped" not in x for x in row), (prefix, r.stdout[-3000:])
