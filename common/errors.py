"""One tree for bad input: what a command reports as one line on stderr with exit status 2
(:mod:`depth.cli`), as opposed to a defect, which keeps its traceback.

    InputError                  a file, value, key or command line that cannot be used
    ├── ConfigError             a configuration key or value (depth.config)
    ├── DataError               a dataset's files: missing, unreadable, malformed
    │   ├── DatasetNotFound         no dataset where the config points (data.datasets)
    │   ├── BadSampleError          one sample's file (data.frames; skippable: data.on_bad_sample)
    │   ├── BadBatchError           every sample of a batch was bad (data.samples)
    │   ├── IntrinsicsError         intrinsics that cannot be pixels of their frames (data.calib)
    │   └── IntrinsicsMissing       no intrinsics for a sequence (data.video)
    ├── CheckpointError         a model file: unreadable or not of a known layout (depth.io.checkpoint)
    │   ├── CheckpointRefused       its pickle would build objects (could run code)
    │   ├── Monodepth2FormatError   a Monodepth2 folder (depth.io.monodepth2)
    │   └── DabnetFormatError       a DaB-Net authors' file (depth.io.dabnet)
    ├── MissingWeightsError     ImageNet weights asked for and not found (depth.io.imagenet)
    ├── RunExistsError          a run folder holding another run's checkpoints (depth.train.run_dir)
    ├── UnsupportedOpError      a model that has no standard ONNX form (depth.io.onnx_file)
    └── EvalError               an evaluation input: GT, split, predictions (depth.eval, evaluate.py)

``InputError`` is a ``ValueError`` (one base each, no class has two), so code that caught
``ValueError`` for bad values still catches it; a bare ``ValueError`` / ``KeyError`` / ``OSError``
reaching a command is a defect (a check that is missing) and shows its traceback. Each subclass
lives with the code that raises it and is re-exported there.
"""
from __future__ import annotations

__all__ = ["InputError", "ConfigError", "DataError", "DatasetNotFound", "BadSampleError", "BadBatchError",
           "IntrinsicsError", "IntrinsicsMissing", "CheckpointError", "CheckpointRefused", "Monodepth2FormatError",
           "DabnetFormatError", "MissingWeightsError", "RunExistsError", "UnsupportedOpError", "EvalError"]


class InputError(ValueError):
    """Bad input: the message names the file, key or flag and what was expected."""


class ConfigError(InputError):
    """A bad configuration key or value (the message names it and what was expected)."""


class DataError(InputError):
    """A dataset file or folder that is missing, unreadable or malformed (the message names it)."""


class DatasetNotFound(DataError):
    """No dataset (or no frames of a split) where the configuration points."""


class BadSampleError(DataError):
    """A file of a sample is missing or unreadable; the message names the file."""


class BadBatchError(DataError):
    """Every sample of a batch was bad where the run cannot go on without it (several processes)."""


class IntrinsicsError(DataError):
    """Intrinsics that cannot be pixels of the frames they describe (the message names the source)."""


class IntrinsicsMissing(DataError):
    """No intrinsics for a sequence; the message explains how to find and give them."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read or was not written by this project (the message names it)."""


class CheckpointRefused(CheckpointError):
    """A file whose pickle would build Python objects other than tensors and plain values (loading
    it could run code): never loaded, and never skipped over in a run folder either."""


class Monodepth2FormatError(CheckpointError):
    """A Monodepth2 file that cannot be read, or a model that has no Monodepth2 form; the message
    names the file (or the reason)."""


class DabnetFormatError(CheckpointError):
    """A DaB-Net checkpoint that cannot be read or does not have the authors' layout (names the file)."""


class MissingWeightsError(InputError):
    """ImageNet weights that were asked for (``model.pretrained=true``) cannot be found or do not fit."""


class RunExistsError(InputError):
    """A run would write into a folder holding checkpoints it did not write (the message says the
    ways out: ``--resume``, another ``output.dir``, or ``output.overwrite=true``)."""


class UnsupportedOpError(InputError):
    """The exported graph holds a node that is not a standard ONNX operator."""


class EvalError(InputError):
    """An evaluation input that cannot be used (GT files, split lists, predictions, flags)."""
