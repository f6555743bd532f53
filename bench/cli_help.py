"""How fast every command answers ``--help`` (the parser alone: the commands import torch only after
parsing), against two references measured in the same run: the interpreter starting (``python -c
pass``) and importing torch + timm (what ``--help`` cost when every command imported them first).

    python bench/cli_help.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "reference: python -c pass": ["-c", "pass"],
    "reference: import torch, timm": ["-c", "import torch, timm"],
    "python train.py --help": ["train.py", "--help"],
    "python evaluate.py depth --help": ["evaluate.py", "depth", "--help"],
    "python -m depth.predict --help": ["-m", "depth.predict", "--help"],
    "python -m depth.export --help": ["-m", "depth.export", "--help"],
    "python -m depth.convert --help": ["-m", "depth.convert", "--help"],
    "python -m data.synthetic --help": ["-m", "data.synthetic", "--help"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per command (the median is shown)")
    args = ap.parse_args()
    print(f"| command | median s over {args.repeat} runs | min s |")
    print("|---|---|---|")
    for name, argv in COMMANDS.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
