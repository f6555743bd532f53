#!/usr/bin/env python
"""Open an evaluation report (``evaluate.py depth ... --report DIR``) in headless chromium: check
that the browser decoded every picture and save a screenshot (docs/report_screenshot.png is made
with this).

    python bench/report_screenshot.py --report DIR --out shot.png [--width 1280 --height 2400]

Needs chromium (Debian: ``apt-get install -y chromium``). Prints the number of pictures the
browser loaded (``<body data-images-loaded="k/n">``, set by the page on load) and exits 1 when
one failed, 2 when chromium or the report is missing.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", required=True, help="a folder written by evaluate.py depth --report")
    p.add_argument("--out", required=True, help="screenshot PNG")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    args = p.parse_args(argv)
    exe = chromium()
    index = Path(args.report) / "index.html"
    if exe is None:
        print("error: chromium not found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    if not index.is_file():
        print(f"error: {index} not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="report-shot-") as prof:
        dom = run(exe, Path(prof), "--virtual-time-budget=5000", "--dump-dom", index.resolve().as_uri())
        m = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
        if dom.returncode != 0 or m is None:
            print(f"error: chromium did not render {index}: {dom.stderr[-500:]}", file=sys.stderr)
            return 1
        shot = run(exe, Path(prof), f"--window-size={args.width},{args.height}", "--hide-scrollbars",
                   f"--screenshot={Path(args.out).resolve()}", index.resolve().as_uri())
    ok, n = int(m.group(1)), int(m.group(2))
    print(f"{exe}: {ok}/{n} pictures decoded; screenshot {args.out} ({args.width}x{args.height}): "
          f"{'written' if shot.returncode == 0 and Path(args.out).is_file() else 'FAILED'}")
    return 0 if ok == n and shot.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
