"""Data-parallel training (stage 3, and stage 1's plain variant): the processes a launcher started,
sharing every global batch.

Every process follows the same plan (the same global batches, from the seed), takes its rows of each
batch (``shard``: every ``world``-th row from its rank on) and weights its mean loss by its share of the
rows, so that the gradients summed over the processes (``sum_``) are those of the mean loss over the
whole batch, as one process would take them. Stage 3's paired step sums both gradients before
surgery, so surgery, clipping and the optimizer see the global gradients and update the same tensors alike
on every process. Predictions are sharded too and gathered (``predict``), so dev-based selection decides alike
everywhere. Alone (``SINGLE``), nothing is sharded and nothing is sent: training is exactly as without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist

from dawgen.models.processes import launched, process_state

T = TypeVar("T")
BUCKET_NUMEL = 1 << 25  # numbers per message when summing (a flat copy of at most 128 MB in float32)


@dataclass(frozen=True)
class Processes:
    """This process's rank among ``world`` processes, and the device their messages go through."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def of(cls, device: torch.device) -> Processes:
        """The processes of a run on ``device``: this one alone, or, under a launcher of several, all it
        started (joining their process group); ``device`` must then be the one the launcher gave this process."""
        if not launched():
            return SINGLE
        state = process_state("cpu" if device.type == "cpu" else "auto")
        if torch.device(device) != state.device:
            raise ValueError(
                f"process {state.process_index} of {state.num_processes} runs on {state.device}, but its model is on "
                f"{device}; under a launcher leave the device at auto (or cpu)"
            )
        return cls(state.process_index, state.num_processes, state.device)

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (metrics, checkpoints, adapter, result)."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's rows of a global batch: all of them alone, else every ``world``-th from ``rank``."""
        return list(items[self.rank :: self.world]) if self.world > 1 else list(items)

    def sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace every tensor by its sum over the processes (in place; one message per dtype and bucket)."""
        if self.world == 1:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            for bucket in _buckets(group):
                flat = torch.cat([tensor.detach().reshape(-1).to(self.device) for tensor in bucket])
                dist.all_reduce(flat)
                with torch.no_grad():
                    for tensor, part in zip(bucket, flat.split([t.numel() for t in bucket]), strict=True):
                        tensor.copy_(part.view_as(tensor))

    def total(self, value: torch.Tensor | None) -> float:
        """The sum over the processes of a scalar (None: nothing on this process)."""
        scalar = torch.zeros((), device=self.device) if value is None else value.detach().float().reshape(())
        self.sum_([scalar])
        return scalar.item()

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum every parameter's ``.grad`` over the processes; one that no process has a gradient for keeps None."""
        if self.world == 1:
            return
        present = torch.tensor([param.grad is not None for param in params], dtype=torch.float32)
        self.sum_([present])
        used = [param for param, count in zip(params, present.tolist(), strict=True) if count > 0]
        for param in used:
            if param.grad is None:  # this process had no rows of the batch
                param.grad = torch.zeros_like(param)
        self.sum_([param.grad for param in used if param.grad is not None])

    def predict(self, predict: Callable[[list[T]], torch.Tensor], items: Sequence[T]) -> torch.Tensor:
        """``predict(items)`` (a row per item, in order), every process predicting its share (``shard``)."""
        if self.world == 1:
            return predict(list(items))
        mine = predict(self.shard(items))
        out = torch.zeros((len(items), *mine.shape[1:]), dtype=mine.dtype)
        out[self.rank :: self.world] = mine.cpu()
        self.sum_([out])  # every row is one process's, the others add zeros: exact
        return out

    def wait(self) -> None:
        """Wait until every process gets here."""
        if self.world > 1:
            dist.barrier()


SINGLE = Processes()


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``tensors`` cut into runs of at most ``BUCKET_NUMEL`` numbers (a larger tensor goes alone)."""
    buckets: list[list[torch.Tensor]] = [[]]
    size = 0
    for tensor in tensors:
        if buckets[-1] and size + tensor.numel() > BUCKET_NUMEL:
            buckets.append([])
            size = 0
        buckets[-1].append(tensor)
        size += tensor.numel()
    return [bucket for bucket in buckets if bucket]
