"""Conversion between Monodepth2 model folders and this project's checkpoints (the command:
``python -m depth.convert``, :mod:`depth.convert`).

A Monodepth2 folder (``encoder.pth``, ``depth.pth``, optionally ``pose_encoder.pth`` + ``pose.pth``)
becomes one checkpoint file that every command of this project reads; a checkpoint of this project
with a ResNet encoder and the baseline decoder becomes a Monodepth2 folder that Monodepth2's tools
load (DCA models are refused: Monodepth2 has no such decoder). Converting there and back gives the
same tensors bit for bit. ``--to`` defaults to the other format of SRC. The output is written
atomically (a checkpoint file may be replaced; a folder must be new or empty) and nothing is written
when the input is bad: the error names the file, exit status 2. Details: docs/monodepth2.md.
"""
from __future__ import annotations

from pathlib import Path

from depth.config import Config, from_dict
from depth.io.checkpoint import atomic_torch_save, load_checkpoint
from depth.io.monodepth2 import (
    EXTRA_KEY,
    from_monodepth2,
    monodepth2_folder,
    monodepth2_state_dicts,
    write_monodepth2,
)
from depth.model import networks_from_checkpoint

__all__ = ["convert", "FORMATS"]

FORMATS = ("checkpoint", "monodepth2")


def _describe(cfg: Config, has_pose: bool) -> str:
    d, m = cfg.data, cfg.model
    kind = "stereo" if d.stereo and d.frame_ids == [0] else "mono+stereo" if d.stereo else "mono"
    return (f"{m.encoder}, {d.width}x{d.height}, {kind}, {'DCA' if m.dca else 'baseline'} decoder, "
            f"{'depth + pose' if has_pose else 'depth only'}")


def convert(src: str | Path, output: str | Path, to: str | None = None) -> list[str]:
    """Convert ``src`` into ``output`` (see the module doc); returns the lines to print.

    Raises ``FileNotFoundError``, ``FileExistsError``, ``ValueError`` or ``RuntimeError``
    (:class:`depth.io.monodepth2.Monodepth2FormatError` is both) naming the file, before writing
    anything."""
    src, output = Path(src), Path(output)
    if not src.exists():
        raise FileNotFoundError(f"{src}: not found")
    folder = monodepth2_folder(src)
    source = "monodepth2" if folder is not None else "checkpoint"
    to = to or ("checkpoint" if source == "monodepth2" else "monodepth2")
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {FORMATS}, got {to!r}")
    if to == source:
        other = "monodepth2" if to == "checkpoint" else "checkpoint"
        raise ValueError(f"{src} is already a {'Monodepth2 model folder' if source == 'monodepth2' else 'checkpoint'}"
                         f" (give --to {other})")
    if to == "checkpoint":
        if output.is_dir():
            raise IsADirectoryError(
                f"{output}: is a folder; give the checkpoint file to write (e.g. {output / 'model.pt'})")
        ckpt = from_monodepth2(folder)
        cfg = from_dict(ckpt["config"])
        networks_from_checkpoint(ckpt)  # the checkpoint loads as it will be loaded
        atomic_torch_save(ckpt, output)
        return [f"wrote {output}: project checkpoint of the Monodepth2 model in {folder} "
                f"({_describe(cfg, ckpt['pose_net'] is not None)})"]
    ckpt = load_checkpoint(src)
    nets, cfg = networks_from_checkpoint(ckpt)
    files, notes = monodepth2_state_dicts(nets, cfg, ckpt.get(EXTRA_KEY))
    paths = write_monodepth2(files, output)
    return [f"wrote {output}: Monodepth2 model folder ({', '.join(p.name for p in paths)}) of {src} "
            f"({_describe(cfg, 'pose.pth' in files)})"] + [f"note: {n}" for n in notes]
