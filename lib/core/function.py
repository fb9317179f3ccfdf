"""The training and evaluation loops: `train_one_epoch`, `run_inference`, `validate`.

Read top to bottom like detectron2's `plain_train_net.do_train`: one explicit loop per phase, no hooks.
`tools/train.py` wires config -> data -> model -> these functions; `tools/test.py` calls `validate`.

Multi-process runs (torchrun): each process runs the same loop on its shard; the loss used for logging
and for the finiteness check is averaged over processes, so all processes stop together on a NaN.
`validate` gathers the predictions of all processes and scores each dataset sample once, on rank 0.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from lib.codecs import MSRAHeatmap, flip_back
from lib.core.lr_scheduler import lr_at, set_lr
from lib.evaluation import accuracy, evaluate_predictions
from lib.utils.dist import gather_predictions, get_world_size, is_main_process, reduce_mean

__all__ = ['NonFiniteLossError', 'build_loader', 'train_one_epoch', 'run_inference', 'validate']

logger = logging.getLogger('litehrnet')

# Called every TRAIN.DEBUG_INTERVAL iterations with (iteration, images, target, output, meta).
DebugFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, dict], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops before writing any checkpoint."""


def build_loader(cfg, dataset, train: bool, world_size: int = 1, rank: int = 0) -> DataLoader:
    """The training or test loader of one process, sharded with a DistributedSampler in every case.

    One process is a world of 1: the sampler's (SEED, epoch) shuffle makes the training order a pure
    function of the epoch, which is what makes resuming exact. At test time the sampler pads the shards
    to equal length; `gather_predictions` drops the repeats. The loader owns a generator, re-seeded each
    epoch by tools/train.py, from which the workers' augmentation seeds are drawn.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                 shuffle=train and cfg.TRAIN.SHUFFLE, seed=cfg.SEED)
    batch = cfg.TRAIN.BATCH_SIZE_PER_GPU if train else cfg.TEST.BATCH_SIZE_PER_GPU
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=cfg.WORKERS,
                      pin_memory=cfg.PIN_MEMORY and torch.cuda.is_available(), generator=torch.Generator())


def _progress(total: int, desc: str) -> tqdm:
    """A tqdm bar on rank 0 when stdout is a terminal; silent otherwise (logs, CI, other ranks)."""
    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False,
                disable=not (is_main_process() and sys.stdout.isatty()))


def train_one_epoch(cfg, model: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, *, epoch: int, iteration: int, iters_per_epoch: int,
                    device: torch.device, writer=None, debug_fn: DebugFn | None = None) -> tuple[int, float]:
    """Run one epoch of at most `iters_per_epoch` steps; return (global iteration after it, mean loss).

    The lr is set before every step from the pure schedule `lr_at(cfg.TRAIN, iteration, …)`, so a run
    resumed at any epoch boundary follows the same lr curve as an uninterrupted one.
    """
    model.train()
    amp = scaler.is_enabled()
    loss_sum, acc_sum, seen, tic = 0.0, 0.0, 0, time.perf_counter()
    bar = _progress(iters_per_epoch, f'epoch {epoch}')
    for step, (images, target, target_weight, meta) in enumerate(loader):
        if step >= iters_per_epoch:
            break
        lr = lr_at(cfg.TRAIN, iteration, iters_per_epoch)
        set_lr(optimizer, lr)
        images = images.to(device, non_blocking=True)
        if cfg.TRAIN.CHANNELS_LAST:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        target_weight = target_weight.to(device, non_blocking=True)

        with torch.autocast(device.type, enabled=amp):
            output = model(images)
        loss = criterion(output.float(), target, target_weight)  # fp32 loss even under AMP

        # Averaged over processes: every rank sees the same loss, so a NaN stops all of them together.
        _, acc, _, _ = accuracy(output.detach(), target)  # HRNet's heatmap PCK@0.5, a progress signal
        loss_value, acc = reduce_mean(loss.detach(), acc)
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f'loss is {loss_value} at epoch {epoch}, iteration {iteration} (lr {lr:.3g}); stopping '
                f'without writing a checkpoint. Lower TRAIN.LR or LOSS.LOSS_WEIGHT, or resume from the last one.')
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        iteration += 1
        batch = images.shape[0] * get_world_size()
        loss_sum += loss_value * batch
        acc_sum += acc * batch
        seen += batch
        rate = seen / (time.perf_counter() - tic)
        bar.set_postfix(loss=f'{loss_value:.3g}', acc=f'{acc:.3f}', samples_s=f'{rate:.1f}')
        bar.update()
        if writer is not None:
            writer.add_scalar('train/loss', loss_value, iteration)
            writer.add_scalar('train/acc', acc, iteration)
            writer.add_scalar('train/lr', lr, iteration)
            writer.add_scalar('train/samples_per_s', rate, iteration)
        if step % cfg.PRINT_FREQ == 0 or step == iters_per_epoch - 1:
            logger.info('epoch %d [%d/%d] lr %.3g loss %.4g (mean %.4g) acc %.3f (mean %.3f) %.1f samples/s',
                        epoch, step + 1, iters_per_epoch, lr, loss_value, loss_sum / seen, acc, acc_sum / seen,
                        rate)
        if debug_fn is not None and cfg.TRAIN.DEBUG_INTERVAL and iteration % cfg.TRAIN.DEBUG_INTERVAL == 0:
            debug_fn(iteration, images, target, output.detach(), meta)
    bar.close()
    return iteration, loss_sum / max(seen, 1)


@torch.no_grad()
def run_inference(model: nn.Module, loader, codec: MSRAHeatmap, flip_pairs, flip_test: bool = True,
                  shift: bool = True, device: torch.device | None = None,
                  channels_last: bool = False) -> dict[str, np.ndarray]:
    """Predict every sample of `loader` (this process's shard); returns the preds dict of the contract.

    keys -> shapes (N samples, K joints): 'keypoints' (N,K,3) x, y in image pixels and the joint score;
    'center', 'scale' (N,2); 'area' (N,); 'score' (N,) box score; 'image_id' (N,); 'index' (N,).
    With `flip_test` the output for the mirrored crop is flipped back (`flip_back`, 1-px `shift`) and
    averaged with the plain output, as in the official test pipeline.
    """
    device = device or next(model.parameters()).device
    model.eval()
    parts = defaultdict(list)
    for images, _, _, meta in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        heatmaps = model(images).float()
        if flip_test:
            heatmaps = (heatmaps + flip_back(model(images.flip(3)).float(), flip_pairs, shift=shift)) * 0.5
        center, scale = meta['center'].numpy(), meta['scale'].numpy()
        coords, scores = codec.decode_to_image(heatmaps.cpu().numpy(), center, scale)
        parts['keypoints'].append(np.concatenate([coords, scores[..., None]], axis=2))
        parts['center'].append(center)
        parts['scale'].append(scale)
        parts['area'].append(meta['area'].numpy())
        parts['score'].append(meta['score'].numpy())
        parts['image_id'].append(meta['image_id'].numpy())
        parts['index'].append(meta['index'].numpy())
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def validate(cfg, model: nn.Module, loader, dataset, output_dir: str,
             device: torch.device | None = None) -> tuple[dict[str, float] | None, str | None]:
    """Predict the whole data set (all processes), then score it once on rank 0.

    Returns (metrics, primary key) on rank 0 and (None, None) on the other ranks. Writes the results
    file (COCO json or MPII pred.mat) into `output_dir` through `lib.evaluation.evaluate_predictions`.
    """
    preds = run_inference(model, loader, dataset.codec, dataset.flip_pairs, cfg.TEST.FLIP_TEST,
                          cfg.TEST.SHIFT_HEATMAP, device, cfg.TRAIN.CHANNELS_LAST)
    preds = gather_predictions(preds)  # collective: every rank must call it
    if not is_main_process():
        return None, None
    return evaluate_predictions(dataset, preds, output_dir, in_vis_thre=cfg.TEST.IN_VIS_THRE,
                                oks_thre=cfg.TEST.OKS_THRE, soft_nms=cfg.TEST.SOFT_NMS)
