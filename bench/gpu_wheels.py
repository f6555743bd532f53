"""Wheels for an offline GPU machine: every package the project needs that its image lacks.

The target image (``bench/gpu_image_packages.txt``: python3 3.12 with torch, timm, numba, opencv,
onnx, tensorboard, ...) has no network. This script, run where pip reaches a package index,
compares ``requirements.txt`` with that list and downloads the cp3XX manylinux x86_64 wheels of
every missing requirement and, recursively, of every missing dependency those wheels declare
(``Requires-Dist``, markers evaluated for the target: CPython 3.12, Linux x86_64, no extras).
Nothing the image has is carried (torch never), except as a *fallback*: for a dependency the image
provides under a version constraint (``typing-extensions>=4.16`` of pydantic, say) a wheel of at
most 2 MiB goes to ``<dir>/fallback/``, installed on the machine only when the image's version
does not satisfy the constraint (``--verify``).

Versions: the pins of ``requirements.txt``; for a dependency, the version installed in the Python
running this script when it satisfies the constraint (the combination the test suite ran with),
else the newest pip finds. A package published only as a pure-Python source archive is built
into a ``py3-none-any`` wheel here.

What is written (``--wheels``, default ``.whl/``, ignored by git; its old ``*.whl`` are removed
first, since two versions of one package stop the install)::

    <dir>/*.whl                   the carried wheels
    <dir>/fallback/*.whl          fallbacks for image packages (see above)
    <dir>/image-requirements.txt  the constraints on image packages, one ``name spec  # who`` a line
    <dir>/manifest.txt            name, version, size and who needs each carried wheel

    python bench/gpu_wheels.py [--python-version 3.12] [--wheels .whl] [--limit-mib 64]
    python3 bench/gpu_wheels.py --verify --wheels .whl --site /tmp/site    # on the GPU machine

The total is printed against ``--limit-mib`` together with what else travels with the working tree
(tracked and untracked files git does not ignore); when over, the largest wheels are named with
what needs them. ``--verify`` needs only the standard library and ``packaging`` (or pip's copy).
"""
from __future__ import annotations

import argparse
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover - pip's vendored copy
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
FALLBACK_MAX_BYTES = 2 * 2 ** 20
# image packages never carried as fallbacks: large compiled builds (the image's are recent ones)
FALLBACK_SKIP = {"torch", "torchvision", "numpy", "scipy", "opencv-python-headless", "opencv-python", "numba",
                 "llvmlite", "triton"}
# manylinux tags pip may match (it matches N exactly): every glibc from 2.5 to 2.39
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 40)]

__all__ = ["normalize", "read_names", "read_requirements", "target_environment", "requires_of",
           "missing_requirements", "resolve", "verify"]


def normalize(name: str) -> str:
    """PEP 503 normal form (``PyYAML`` -> ``pyyaml``, ``typing_extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: Path) -> set[str]:
    """Normalised package names of a list file (one a line, ``#`` comments)."""
    out = set()
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(normalize(re.split(r"[\s=<>!~;\[]", line, maxsplit=1)[0]))
    return out


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a ``requirements.txt`` (comments and blank lines skipped)."""
    reqs = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def target_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the target: CPython ``python_version`` on Linux x86_64, no extra."""
    return {"python_version": python_version, "python_full_version": python_version + ".0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "implementation_version": python_version + ".0", "sys_platform": "linux",
            "os_name": "posix", "platform_system": "Linux", "platform_machine": "x86_64",
            "platform_release": "", "platform_version": "", "extra": ""}


def requires_of(metadata: str, env: dict[str, str]) -> list[Requirement]:
    """The ``Requires-Dist`` entries of a wheel's METADATA text that apply in ``env`` (extras skipped)."""
    msg = email.parser.Parser().parsestr(metadata)
    out = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def missing_requirements(reqs: list[Requirement], image: set[str], env: dict[str, str]) -> list[Requirement]:
    """The requirements (whose markers apply in ``env``) that no package of ``image`` provides."""
    return [r for r in reqs if normalize(r.name) not in image and (r.marker is None or r.marker.evaluate(env))]


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return z.read(name).decode("utf-8")


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def _local_version(name: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def _fetch(spec: str, python_version: str, dest: Path) -> Path:
    """One wheel for ``spec`` (no dependencies) into ``dest``: a binary wheel for the target, else a
    pure-Python wheel built from the source archive. Raises ``RuntimeError`` with pip's last lines."""
    with tempfile.TemporaryDirectory() as tmp:
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        r = _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                 "--implementation", "cp", *plat, "-d", tmp, spec)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            r2 = _pip("wheel", "--no-deps", "--no-binary=:all:", "-w", tmp, spec)
            wheels = [w for w in Path(tmp).glob("*.whl") if w.name.endswith("-none-any.whl")]
            if r2.returncode != 0 or not wheels:
                tail = "\n".join((r.stderr + r2.stderr).strip().splitlines()[-6:])
                raise RuntimeError(f"no wheel for {spec!r} (cp{python_version.replace('.', '')} manylinux "
                                   f"x86_64, nor a pure-Python build):\n{tail}")
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / wheels[0].name
        shutil.move(str(wheels[0]), out)
        return out


def _spec_for(req: Requirement) -> str:
    """``name==version`` to fetch: an exact pin as given, else the local version when it satisfies
    the constraint, else the constraint itself (pip picks the newest)."""
    pins = [s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
    if pins:
        return f"{req.name}=={pins[0]}"
    local = _local_version(req.name)
    if local is not None and req.specifier.contains(local, prereleases=True):
        return f"{req.name}=={local}"
    return f"{req.name}{req.specifier}"


def resolve(requirements: Path, image_list: Path, python_version: str, dest: Path, log=print) -> dict:
    """Fetch the wheels (see the module docstring); returns ``{"wheels": {name: (path, needed_by)},
    "image_constraints": [(req, needed_by)], "fallbacks": {name: path}}``."""
    env = target_environment(python_version)
    image = read_names(image_list)
    queue = [(r, "requirements.txt") for r in missing_requirements(read_requirements(requirements), image, env)]
    wheels: dict[str, tuple[Path, list[str]]] = {}
    constraints: list[tuple[Requirement, str]] = []
    while queue:
        req, by = queue.pop(0)
        name = normalize(req.name)
        if name in image:
            constraints.append((req, by))
            continue
        if name in wheels:
            path, users = wheels[name]
            if not req.specifier.contains(_wheel_version(path), prereleases=True):
                raise RuntimeError(f"{by} needs {req}, but {path.name} was chosen for {', '.join(users)}")
            users.append(by)
            continue
        path = _fetch(_spec_for(req), python_version, dest)
        log(f"  {path.name:<72} {path.stat().st_size / 2 ** 20:6.2f} MiB  (for {by})")
        wheels[name] = (path, [by])
        queue += [(r, name) for r in requires_of(_metadata(path), env)]
    fallbacks: dict[str, Path] = {}
    for req, by in constraints:
        name = normalize(req.name)
        if not str(req.specifier) or name in fallbacks or name in FALLBACK_SKIP:
            continue
        try:
            path = _fetch(_spec_for(req), python_version, dest / "fallback")
        except RuntimeError as e:
            log(f"  (no fallback for {req}: {str(e).splitlines()[0]})")
            continue
        if path.stat().st_size > FALLBACK_MAX_BYTES:
            path.unlink()
            continue
        fallbacks[name] = path
        log(f"  fallback/{path.name:<63} {path.stat().st_size / 2 ** 20:6.2f} MiB  (if the image's "
            f"{req.name} does not satisfy {req.specifier})")
    return {"wheels": wheels, "image_constraints": constraints, "fallbacks": fallbacks}


def _travel_bytes() -> int:
    """Bytes of the files that travel with the working tree: tracked and untracked, not ignored."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    total = 0
    for rel in out.decode().split("\0"):
        p = ROOT / rel
        if rel and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def _write_outputs(result: dict, dest: Path) -> None:
    lines = [f"{req.name}{req.specifier}  # {by}" for req, by in result["image_constraints"] if str(req.specifier)]
    (dest / "image-requirements.txt").write_text("".join(line + "\n" for line in lines))
    rows = [f"{n} {_wheel_version(p)} {p.stat().st_size} {','.join(users)}" for n, (p, users) in
            sorted(result["wheels"].items())]
    (dest / "manifest.txt").write_text("".join(r + "\n" for r in rows))


def download(args) -> int:
    dest = Path(args.wheels)
    dest.mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.whl"), *dest.glob("fallback/*.whl")]:
        old.unlink()
    print(f"wheels for CPython {args.python_version} manylinux x86_64 into {dest}/ (missing from "
          f"{Path(args.image).name}, needed by {Path(args.requirements).name}):")
    try:
        result = resolve(Path(args.requirements), Path(args.image), args.python_version, dest)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _write_outputs(result, dest)
    sizes = {n: p.stat().st_size for n, (p, _) in result["wheels"].items()}
    fb = sum(p.stat().st_size for p in result["fallbacks"].values())
    total = sum(sizes.values()) + fb
    tree = _travel_bytes()
    mib = 2 ** 20
    print(f"{len(sizes)} wheels {sum(sizes.values()) / mib:.2f} MiB + {len(result['fallbacks'])} fallbacks "
          f"{fb / mib:.2f} MiB = {total / mib:.2f} MiB; with the working tree ({tree / mib:.2f} MiB) "
          f"{(total + tree) / mib:.2f} MiB of the {args.limit_mib} MiB limit")
    cons = [f"{r.name}{r.specifier} ({by})" for r, by in result["image_constraints"] if str(r.specifier)]
    if cons:
        print("constraints on the image's packages (checked there by --verify): " + ", ".join(cons))
    if total + tree > args.limit_mib * mib:
        print(f"OVER the limit by {(total + tree) / mib - args.limit_mib:.2f} MiB; the largest wheels:")
        for n, s in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  drop {n} ({s / mib:.2f} MiB, needed by {', '.join(result['wheels'][n][1])})")
        return 1
    return 0


def _install(wheel: Path, site: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), str(wheel)],
                       capture_output=True, text=True)
    if r.returncode != 0:  # no pip: a wheel is a zip of the files that go into site-packages
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)


def verify(wheels: Path, site: Path, log=print) -> int:
    """On the target: check the image's versions against ``image-requirements.txt``; install the
    fallback of each one that fails into ``site`` (when carried). Returns the count still unmet."""
    from importlib import metadata
    req_file = wheels / "image-requirements.txt"
    if not req_file.is_file():
        log(f"{req_file} not found: run bench/gpu_wheels.sh first")
        return 1
    fallbacks = {normalize(p.name.split("-")[0]): p for p in (wheels / "fallback").glob("*.whl")}
    unmet = checked = 0
    for line in req_file.read_text().splitlines():
        spec, _, by = line.partition("#")
        if not spec.strip():
            continue
        req = Requirement(spec.strip())
        checked += 1
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            have = None
        if have is not None and req.specifier.contains(Version(have), prereleases=True):
            continue
        fb = fallbacks.get(normalize(req.name))
        if fb is not None and req.specifier.contains(_wheel_version(fb), prereleases=True):
            _install(fb, site)
            log(f"image has {req.name} {have or 'nothing'}; {by.strip()} needs {req.specifier}: "
                f"installed the carried {fb.name}")
        else:
            unmet += 1
            log(f"WARNING: image has {req.name} {have or 'nothing'}; {by.strip()} needs {req.specifier} "
                f"(no fallback carried)")
    log(f"image packages: {checked} version constraints of the carried wheels checked, {unmet} unmet")
    return unmet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", default=str(ROOT / ".whl"), help="wheel folder (default .whl/)")
    ap.add_argument("--python-version", default="3.12", help="target CPython X.Y (default 3.12)")
    ap.add_argument("--requirements", default=str(ROOT / "requirements.txt"))
    ap.add_argument("--image", default=str(ROOT / "bench" / "gpu_image_packages.txt"),
                    help="the target image's package names")
    ap.add_argument("--limit-mib", type=float, default=64.0, help="what may travel in all (MiB)")
    ap.add_argument("--verify", action="store_true", help="on the target: check image versions, "
                                                          "install needed fallbacks into --site")
    ap.add_argument("--site", default="/tmp/site", help="with --verify: the install target")
    args = ap.parse_args(argv)
    if args.verify:
        verify(Path(args.wheels), Path(args.site))
        return 0
    return download(args)


if __name__ == "__main__":
    sys.exit(main())
