"""Distributed helpers, read straight from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE).

One process (plain `python tools/train.py`) and `torchrun --nproc_per_node N tools/train.py` run the
same code: without torchrun's variables every helper behaves as rank 0 of a world of 1.
Backend: nccl when the process owns a CUDA device, gloo on CPU.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

__all__ = ['DistInfo', 'barrier', 'broadcast_object', 'cleanup', 'exit_process', 'gather_predictions', 'get_rank', 'get_world_size',
           'init_distributed', 'is_main_process']


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = 'auto') -> DistInfo:
    """Join the process group torchrun set up (if any) and pick this process's device.

    device: 'auto' (CUDA if available, else CPU), 'cpu' or 'cuda'. Under torchrun each process takes
    the GPU `LOCAL_RANK`.
    """
    rank = int(os.environ.get('RANK', 0))
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    use_cuda = torch.cuda.is_available() if device == 'auto' else device == 'cuda'
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
    else:
        dev = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo',
                                device_id=dev if use_cuda else None)
    return DistInfo(rank, local_rank, world_size, dev)


def cleanup() -> None:
    """Leave the process group at the end of a run, except a gloo group, which stays until `exit_process`.

    Destroying a gloo group can deadlock: its destructor joins the group's worker threads while holding the
    GIL, and a worker that frees the last reference to a finished collective's Python-owned tensors (e.g.
    all_gather_object's) waits for the GIL. Seen at the end of CPU torchrun trainings, about one run in three,
    when DDP's reducer dropped the last reference to the group.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_backend() != 'gloo':
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a tool with exit status `code`. A process still in a (gloo) process group ends with os._exit
    after flushing its output, so that no destructor of the group can deadlock (see `cleanup`)."""
    if dist.is_available() and dist.is_initialized():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s (picklable) object on every rank; `obj` itself in one process."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _all_gather_object(obj: Any) -> list[Any]:
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_predictions(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate every process's prediction dict and keep each dataset sample exactly once.

    DistributedSampler pads the index list so every rank gets the same number of samples, which repeats
    a few samples; de-duplicating by preds['index'] (then sorting by it) makes the gathered dict identical
    to the one a single process produces. Every array must have the sample axis first.
    """
    parts = _all_gather_object(preds)
    merged = {key: np.concatenate([np.asarray(p[key]) for p in parts], axis=0) for key in preds}
    _, first = np.unique(merged['index'], return_index=True)  # sorted unique indices
    return {key: value[first] for key, value in merged.items()}
