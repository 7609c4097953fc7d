"""Training processes under torchrun (DDP with gloo on the CPU, NCCL on CUDA); one process needs none of it.

Work that fills a shared cache (downloading the base model or the metric's weights, preparing the dataset)
runs through `Distributed.main_first`: the main process does it alone while the others wait, then the
others find it done. If the main process fails, every process stops with its message instead of hanging.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch
import torch.distributed as torch_dist

from ..devices import default_device

__all__ = ["Distributed", "init_distributed"]

T = TypeVar("T")


@dataclass
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1, no communication)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def all_reduce_mean_(self, tensor: torch.Tensor) -> None:
        """Average `tensor` over processes, in place."""
        if self.world_size > 1:
            torch_dist.all_reduce(tensor)
            tensor.div_(self.world_size)

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over processes, in place."""
        if self.world_size > 1:
            torch_dist.all_reduce(tensor)

    def any_true(self, flag: bool) -> bool:
        """Whether `flag` is true on any process (every process calls it at the same point)."""
        if self.world_size == 1:
            return flag
        box = torch.tensor([float(flag)], device=self.device)  # on the device: NCCL reduces only those
        torch_dist.all_reduce(box)
        return bool(box.item())

    def all_gather(self, obj: object) -> list:
        """Every process's `obj` (picklable), in rank order."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait until every process got here."""
        if self.world_size > 1:
            torch_dist.barrier()

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on the main process first, then on the others (downloads, caches). When it fails on the
        main process, it raises there and the others raise a RuntimeError naming the main process's error."""
        if self.world_size == 1:
            return fn()
        if self.rank == 0:
            try:
                result = fn()
            except BaseException as exc:
                self._broadcast(f"{type(exc).__name__}: {exc}")
                raise
            self._broadcast(None)
            return result
        failure = self._broadcast(None)
        if failure is not None:
            raise RuntimeError(f"the main training process (rank 0) failed: {failure}")
        return fn()

    def on_main(self, fn: Callable[[], T]) -> T:
        """`fn()` on the main process only; the others get its (picklable) result, or a RuntimeError naming
        the main process's error."""
        if self.world_size == 1:
            return fn()
        if self.rank == 0:
            try:
                result = fn()
            except BaseException as exc:
                self._broadcast((False, f"{type(exc).__name__}: {exc}"))
                raise
            self._broadcast((True, result))
            return result
        ok, value = self._broadcast(None)
        if not ok:
            raise RuntimeError(f"the main training process (rank 0) failed: {value}")
        return value

    def _broadcast(self, obj: object) -> object:
        """The main process's `obj` on every process."""
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def init_distributed(device: str | None) -> tuple[Distributed, bool]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns it and whether we started it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = default_device(device)
    if world_size <= 1:
        return Distributed(device=dev), False
    rank = int(os.environ["RANK"])
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    started = not torch_dist.is_initialized()
    if started:
        _init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank, world_size, dev), started


def _init_process_group(backend: str) -> None:
    """`torch.distributed.init_process_group(backend)` (rank and world size from torchrun's environment), after
    importing torch.distributed.nn. That module's functions take the default group as a default argument, read
    when it is first imported, and building an optimizer imports it (through torch._dynamo). Imported after the
    group exists, it keeps the group alive past `destroy_process_group()`: gloo's threads then outlive the training
    and are torn down while the interpreter exits, where a thread releasing a finished collective's tensors needs
    the GIL and aborts the process ("terminate called without an active exception", now and then)."""
    import torch.distributed.nn  # noqa: F401 (imported for its side effect: default arguments without a group)

    torch_dist.init_process_group(backend)
