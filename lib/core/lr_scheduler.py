"""Learning rate as a pure function of the training position, so a resumed run gets exactly the same lr.

    lr = lr_at(cfg.TRAIN, iteration, iters_per_epoch)

`iteration` counts optimizer steps from the start of training (0-based, over all epochs) and
`iters_per_epoch` is the length of one epoch's loader; the epoch is `iteration // iters_per_epoch`.

* step (official, mmcv `StepLrUpdaterHook` semantics): lr = LR * LR_FACTOR ** (number of LR_STEP
  entries <= epoch). With LR_STEP [170, 200] the 0-based epochs 0..169 run at LR and epoch 170 is the first
  at LR/10. (The HRNet repository calls `MultiStepLR.step()` before each epoch and so decays one epoch
  early; `test_lr_scheduler.py` pins the exact epoch.)
* cosine: lr = LR * (1 + cos(pi * iteration / total)) / 2 with total = END_EPOCH * iters_per_epoch,
  i.e. smoothly from LR to 0 at the end of the run.
* warmup (both): for iteration < WARMUP_ITERS the scheduled lr is multiplied by
  WARMUP_RATIO + (1 - WARMUP_RATIO) * iteration / WARMUP_ITERS (mmcv's linear warmup).
"""
from __future__ import annotations

import math
from typing import Iterable

from torch.optim import Optimizer

__all__ = ['lr_at', 'set_lr']

SCHEDULES = ('step', 'cosine')


def lr_at(train_cfg, iteration: int, iters_per_epoch: int) -> float:
    """The learning rate of optimizer step `iteration` (0-based, global) under cfg.TRAIN."""
    if iters_per_epoch <= 0:
        raise ValueError(f'iters_per_epoch must be positive, got {iters_per_epoch} (empty training loader?)')
    base = float(train_cfg.LR)
    epoch = iteration // iters_per_epoch
    if train_cfg.LR_SCHEDULE == 'step':
        lr = base * train_cfg.LR_FACTOR ** sum(epoch >= step for step in train_cfg.LR_STEP)
    elif train_cfg.LR_SCHEDULE == 'cosine':
        total = train_cfg.END_EPOCH * iters_per_epoch
        lr = base * 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / total))
    else:
        raise ValueError(f"TRAIN.LR_SCHEDULE must be one of {SCHEDULES}, got '{train_cfg.LR_SCHEDULE}'")
    if iteration < train_cfg.WARMUP_ITERS:
        ratio = train_cfg.WARMUP_RATIO
        lr *= ratio + (1.0 - ratio) * iteration / train_cfg.WARMUP_ITERS
    return lr


def set_lr(optimizer: Optimizer | Iterable, lr: float) -> None:
    """Write `lr` into every parameter group."""
    for group in optimizer.param_groups:
        group['lr'] = lr
