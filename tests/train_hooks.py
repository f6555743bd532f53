"""``python tests/train_hooks.py TRAIN_ARGS...``: ``train.py`` with test hooks (not a test module).

Environment:

* ``HOOK_PAUSE_AT=N`` and ``HOOK_FLAG=FILE``: on rank 0, after the N-th optimiser step's work,
  write this process's id to FILE and wait until it has received a stop signal (at most 120 s) -- so a
  test's signal lands at a known step, whatever the machine's speed (other ranks go on to the next
  step's collective and wait there for rank 0).
* ``HOOK_SIGNAL_IN_SAVE=NAME``: every checkpoint write after a stop request first sends this
  process signal NAME (a second signal arriving during the save).
* ``HOOK_OPTIMIZER=sgd``: the trainer's Adam replaced by plain SGD at the same lr schedule (see
  :func:`use_sgd`): an update proportional to the gradient, so a gradient summed over the ranks
  instead of averaged shows in the weights (Adam's update is invariant to a constant gradient scale).
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import depth.io.checkpoint as checkpoint_module  # noqa: E402
import depth.train.trainer as trainer_module  # noqa: E402
from tests.helpers import use_sgd  # noqa: E402

pause_at = int(os.environ.get("HOOK_PAUSE_AT", "0"))
flag = os.environ.get("HOOK_FLAG", "")
in_save = os.environ.get("HOOK_SIGNAL_IN_SAVE", "")

real_step = trainer_module.Trainer.train_step
real_save = checkpoint_module.save_checkpoint


def train_step(self, batch):
    out = real_step(self, batch)
    if pause_at and self.step_count + 1 == pause_at and self.rank == 0:
        Path(flag + ".tmp").write_text(str(os.getpid()))
        os.replace(flag + ".tmp", flag)  # the test never reads half of it
        t0 = time.time()
        while not self.stop_request.requested and time.time() - t0 < 120:
            time.sleep(0.01)
    return out


def save_checkpoint(state, *args, **kwargs):
    if in_save and hasattr(trainer_module, "_hooked_trainer") and trainer_module._hooked_trainer.stop_request.requested:
        os.kill(os.getpid(), getattr(signal, in_save))
        time.sleep(0.05)
    return real_save(state, *args, **kwargs)


real_init = trainer_module.Trainer.__init__


def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    if os.environ.get("HOOK_OPTIMIZER") == "sgd":
        use_sgd(self)
    trainer_module._hooked_trainer = self


trainer_module.Trainer.train_step = train_step
trainer_module.Trainer.__init__ = init
checkpoint_module.save_checkpoint = save_checkpoint

sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
