"""Conversion between Monodepth2 model folders and this project's checkpoints, and from the
DaB-Net authors' checkpoint files to this project's (the command: ``python -m depth.convert``,
:mod:`depth.convert`).

A Monodepth2 folder (``encoder.pth``, ``depth.pth``, optionally ``pose_encoder.pth`` + ``pose.pth``)
becomes one checkpoint file that every command of this project reads; a checkpoint of this project
with a ResNet encoder and the baseline decoder becomes a Monodepth2 folder that Monodepth2's tools
load (DCA models are refused: Monodepth2 has no such decoder). Converting there and back gives the
same tensors bit for bit. A DaB-Net authors' file (``state_dict`` with ``DepthEncoder.*`` keys,
:mod:`depth.io.dabnet`) becomes a checkpoint (their network: ``hrnet_w18`` + ``diffnet``). ``--to`` defaults to the other format of SRC. The output is written
atomically (a checkpoint file may be replaced; a folder must be new or empty) and nothing is written
when the input is bad: the error names the file, exit status 2. Details: docs/monodepth2.md.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import CheckpointError, InputError
from depth.io.formats import CONVERT_FORMATS
from depth.config import Config, from_dict
from depth.io.checkpoint import atomic_torch_save, load_checkpoint
from depth.io.dabnet import dabnet_file, from_dabnet
from depth.io.monodepth2 import (
    EXTRA_KEY,
    from_monodepth2,
    monodepth2_folder,
    monodepth2_state_dicts,
    write_monodepth2,
)
from depth.model import networks_from_checkpoint

__all__ = ["convert", "FORMATS"]

FORMATS = CONVERT_FORMATS


def _describe(cfg: Config, has_pose: bool) -> str:
    d, m = cfg.data, cfg.model
    kind = "stereo" if d.stereo and d.frame_ids == [0] else "mono+stereo" if d.stereo else "mono"
    decoder = ("DCA" if m.dca else "baseline") if m.decoder == "monodepth2" else m.decoder + (" + DCA" if m.dca else "")
    return (f"{m.encoder}, {d.width}x{d.height}, {kind}, {decoder} decoder, "
            f"{'depth + pose' if has_pose else 'depth only'}")


def convert(src: str | Path, output: str | Path, to: str | None = None) -> list[str]:
    """Convert ``src`` into ``output`` (see the module doc); returns the lines to print.

    Raises :class:`common.errors.InputError` subclasses naming the file, before writing anything."""
    src, output = Path(src), Path(output)
    if not src.exists():
        raise CheckpointError(f"{src}: not found")
    folder = monodepth2_folder(src)
    source = "monodepth2" if folder is not None else "dabnet" if dabnet_file(src) else "checkpoint"
    to = to or ("monodepth2" if source == "checkpoint" else "checkpoint")
    if to not in FORMATS:
        raise InputError(f"--to must be one of {FORMATS}, got {to!r}")
    if source == "dabnet" and to != "checkpoint":
        raise InputError(f"{src} is a DaB-Net authors' checkpoint: it converts to a project checkpoint only "
                         f"(--to checkpoint; their DIFFNet decoder has no Monodepth2 form)")
    if to == source:
        other = "monodepth2" if to == "checkpoint" else "checkpoint"
        raise InputError(f"{src} is already a {'Monodepth2 model folder' if source == 'monodepth2' else 'checkpoint'}"
                         f" (give --to {other})")
    if to == "checkpoint":
        if output.is_dir():
            raise InputError(
                f"{output}: is a folder; give the checkpoint file to write (e.g. {output / 'model.pt'})")
        ckpt = from_dabnet(src) if source == "dabnet" else from_monodepth2(folder)
        cfg = from_dict(ckpt["config"])
        networks_from_checkpoint(ckpt)  # the checkpoint loads as it will be loaded
        atomic_torch_save(ckpt, output)
        what = f"the DaB-Net authors' model in {src}" if source == "dabnet" else f"the Monodepth2 model in {folder}"
        return [f"wrote {output}: project checkpoint of {what} ({_describe(cfg, ckpt['pose_net'] is not None)})"]
    ckpt = load_checkpoint(src)
    nets, cfg = networks_from_checkpoint(ckpt)
    files, notes = monodepth2_state_dicts(nets, cfg, ckpt.get(EXTRA_KEY))
    paths = write_monodepth2(files, output)
    return [f"wrote {output}: Monodepth2 model folder ({', '.join(p.name for p in paths)}) of {src} "
            f"({_describe(cfg, 'pose.pth' in files)})"] + [f"note: {n}" for n in notes]
