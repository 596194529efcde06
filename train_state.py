"""The resumable state of a training run, and the files it lives in.

A state file ``state-step-NNNNNNNNN.pt`` holds the model, the optimizer, the gradient scaler, epoch, step, all
arguments and the position of every data stream: everything needed to continue bit for bit (randomness comes
from seeds, documentation/training.md "Checkpoints and resuming"). ``epoch-N.pth`` holds the weights alone.
Files are written under a temporary name and renamed, so a crash never leaves a half-written one.
"""
import argparse
import glob
import logging
import os
import re
from typing import Dict, Optional

import torch
from torch import nn

from model.atomic import atomic_output
from train_data import TrainingData

logger = logging.getLogger("train")

STATE_PATTERN = re.compile(r"state-step-(\d+)\.pt$")
KEPT_STATES = 2


def save_atomically(obj: object, path: str) -> None:
    """``torch.save`` to a temporary name then rename, so a crash never leaves a half-written file."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def latest_state(checkpoint_dir: str) -> str:
    """The training state with the highest step in ``checkpoint_dir``."""
    states = [p for p in glob.glob(os.path.join(checkpoint_dir, "state-step-*.pt")) if STATE_PATTERN.search(p)]
    if not states:
        raise FileNotFoundError(
            f"--resume found no state-step-*.pt in {checkpoint_dir}; pass the state file itself or start without --resume."
        )
    return max(states, key=lambda p: int(STATE_PATTERN.search(p).group(1)))


class TrainingState:
    """Model, optimizer, gradient scaler, epoch, step, arguments and data positions of one run.

    ``save`` writes a state file (and the weights as ``epoch-N.pth``) into ``args.checkpoint_dir``; ``load``
    restores a saved one in place. The file format is a plain dict of tensors and numbers (``weights_only``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        data: TrainingData,
        args: argparse.Namespace,
        *,
        epoch: int = 0,
        step: int = 0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.data = data
        self.args = args
        self.epoch = epoch
        self.step = step

    def state_dict(self) -> Dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "args": dict(vars(self.args)),
            "streams": self.data.state_dict(),
        }

    def save(self, weights_epoch: Optional[int] = None) -> str:
        """Write the state, and the weights alone as ``epoch-N.pth``; keep the two latest states. Returns the path.

        ``weights_epoch`` names the weights file (default: the current epoch, rewritten until the epoch ends).
        """
        folder = self.args.checkpoint_dir
        os.makedirs(folder, exist_ok=True)
        state = self.state_dict()
        path = os.path.join(folder, f"state-step-{self.step:09d}.pt")
        save_atomically(state, path)
        epoch = self.epoch if weights_epoch is None else weights_epoch
        save_atomically(state["model"], os.path.join(folder, f"epoch-{epoch}.pth"))
        states = sorted(glob.glob(os.path.join(folder, "state-step-*.pt")))
        for old in states[:-KEPT_STATES]:
            os.remove(old)
        logger.info("saved step %d to %s", self.step, folder)
        return path

    def load(self, path: str, device: torch.device = torch.device("cpu")) -> None:
        """Continue from the state file at ``path`` (written by ``save``, today or by earlier versions)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"--resume {path} does not exist; pass a state-step-*.pt file or a --checkpoint-dir holding one."
            )
        state = torch.load(path, map_location=device, weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        load_scaler_state(self.scaler, state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.data.load_state_dict(state["streams"], source=path)
        changed = {
            k: (v, getattr(self.args, k, None)) for k, v in state["args"].items() if getattr(self.args, k, None) != v
        }
        changed.pop("resume", None)
        if changed:
            logger.warning("Resuming with settings that differ from the saved run: %s", changed)
        logger.info("resumed from %s at epoch %d step %d", path, self.epoch, self.step)


def load_scaler_state(scaler: torch.amp.GradScaler, state: Dict) -> None:
    """Restore the loss scaler; a state saved without mixed precision (CPU, ``--disable-mixed-precision``) is empty,
    and a scaler that is enabled now (resuming on CUDA) then starts from its initial scale instead of failing."""
    if not state:
        if scaler.is_enabled():
            logger.info("The saved state has no loss scale (saved without mixed precision); starting from the first.")
        return
    scaler.load_state_dict(state)
