"""Which process this is, and its device, when a launcher (``torchrun``, ``accelerate launch``) starts several.

A plain process is alone and uses the device it is told (``pick_device``). Under a launcher of several
processes, accelerate's ``PartialState`` sets up the process group (gloo on CPUs, nccl on GPUs) and gives
every process its own device (``cuda:LOCAL_RANK``, or the CPU): an explicit GPU index is not used then.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from dawgen.models.precision import pick_device

if TYPE_CHECKING:
    from accelerate import PartialState


def launched() -> bool:
    """Whether a launcher started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state(device: str = "auto") -> PartialState:
    """accelerate's state of this process, on the CPU for ``device`` cpu (or auto without CUDA); under a
    launcher, creating it joins the process group."""
    from accelerate import PartialState  # imported here: a plain process of stage 3 does without it

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return PartialState(cpu=cpu)


def process_device(device: str = "auto") -> torch.device:
    """This process's device: ``device`` alone; under a launcher of several processes, the one it was given."""
    if not launched():
        return pick_device(device)
    return process_state(device).device
