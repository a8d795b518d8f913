"""Distributed data parallel: one process per device, each reading its own shard of every batch.

Launch with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT:

    torchrun --nproc_per_node 2 pretrain.py --objective sop ...

Each process holds a full copy of the model; after each backward pass DDP averages the gradients
across processes (all-reduce), so every copy takes the same optimizer step. A global batch of
world_size * per_device_train_batch_size examples thus gives the same update as one process
holding the whole batch (tests/test_ddp.py checks this on CPU). Backends: gloo on CPU, nccl on GPU.
Only rank 0 logs and writes files; the others wait for it at barriers.
"""

import atexit
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when present, else CPU. Under torchrun each process takes cuda:LOCAL_RANK."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but PyTorch sees no CUDA device; pass --device cpu or auto")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "auto") -> DistributedContext:
    """Read torchrun's environment; join (or reuse) the process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = process_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        atexit.register(_leave_process_group)  # the group this call made: a caller's own is the caller's to end
        logger.info("rank %d of %d joined the %s process group on %s", rank, world_size, backend, torch_device)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def process_rank() -> int:
    """This process's rank as torchrun sets it (RANK; 0 without torchrun), known before any process group."""
    return int(os.environ.get("RANK", "0"))


def log_level(level: int) -> int:
    """The logging level of this process, for the command lines' logging set-up: `level` on the main process
    (RANK 0, or no torchrun), errors alone on the others. Each process runs the same code, so every info line and
    warning (the task, weights newly initialised, the best checkpoint loaded) was printed once per process; an
    error (which may be one process's own) still prints everywhere. (Hugging Face's log_level_replica does this,
    at warning by default.)"""
    return level if process_rank() == 0 else logging.ERROR


def _leave_process_group() -> None:
    """At exit, the process group is destroyed, as PyTorch asks of every program that made one. Left to the
    interpreter's own teardown, a rank of a finished 2-process CPU test run once ended with "terminate called
    without an active exception" (SIGABRT from the gloo backend's threads), failing a run whose work was done."""
    # Not after an uncaught exception (Python sets sys.last_value before the atexit handlers): destroyed then,
    # the group's closed sockets made the other rank fail first, and torchrun named that one as the root cause.
    if dist.is_initialized() and getattr(sys, "last_value", None) is None:
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def _all_reduce_sum(values: list[float], context: DistributedContext) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.to(context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_across_ranks(value: float, context: DistributedContext) -> float:
    """One number summed over all processes (every process gets the sum)."""
    return _all_reduce_sum([value], context)[0] if context.enabled else value


def mean_across_ranks(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average logged scalars over all processes, so rank 0 reports the whole batch, not its shard."""
    if not context.enabled or not values:
        return values
    keys = sorted(values)
    sums = _all_reduce_sum([values[k] for k in keys], context)
    return {k: v / context.world_size for k, v in zip(keys, sums, strict=True)}


def mean_of_present_across_ranks(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """mean_across_ranks for dicts whose keys may differ between processes (a logging window: a process whose
    every batch in it had no labelled token holds no loss and no accuracy), each key averaged over the
    processes that hold it. The key names are gathered first: an all-reduce of lists of other lengths broke
    the collective (gloo aborted: "Received data size doesn't match expected size")."""
    if not context.enabled:
        return values
    keys = sorted(set().union(*gather_objects(sorted(values), context)))
    sums = _all_reduce_sum([values.get(k, 0.0) for k in keys] + [float(k in values) for k in keys], context)
    return {k: sums[i] / sums[len(keys) + i] for i, k in enumerate(keys)}


def gather_objects(value, context: DistributedContext) -> list:
    """Every process's `value` (any picklable object), in rank order; [value] on one process."""
    if not context.enabled:
        return [value]
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered
