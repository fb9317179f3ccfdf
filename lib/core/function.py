"""The training and evaluation loops: `train_one_epoch`, `run_inference`, `validate`.

Read top to bottom like detectron2's `plain_train_net.do_train`: one explicit loop per phase, no hooks.
`tools/train.py` wires config -> data -> model -> these functions; `tools/test.py` calls `validate`.
`run_inference` predicts each batch with `lib.core.inference.predict_keypoints`, the same function
`PoseEstimator` (the demo) uses, so validation, testing and the demo share one flip test and decoding.

Multi-process runs (torchrun): each process runs the same loop on its shard; the loss used for logging
and for the finiteness check is summed over processes at each read, so all processes stop together on a NaN.
`validate` gathers the predictions of all processes and scores each dataset sample once, on rank 0.
"""
from __future__ import annotations

import itertools
import logging
import math
import sys
import time
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from lib.codecs import MSRAHeatmap
from lib.core.inference import predict_keypoints
from lib.core.lr_scheduler import lr_at, set_lr
from lib.evaluation import evaluate_predictions
from lib.evaluation.pck import accuracy_on_device
from lib.utils.dist import gather_predictions, get_world_size, is_main_process
from lib.utils.logger import EXIT_FAILED, UserError

__all__ = ['NonFiniteLossError', 'amp_dtype', 'build_loader', 'empty_predictions', 'grad_scaler', 'train_one_epoch',
           'run_inference', 'validate']

logger = logging.getLogger('litehrnet')

# Batches each loader worker prepares ahead (DataLoader's prefetch_factor; its default is 2).
PREFETCH_BATCHES = 4

# Called every TRAIN.DEBUG_INTERVAL iterations with (iteration, images, target, output, meta).
DebugFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, dict], None]


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the run stops before writing any checkpoint."""

    exit_code = EXIT_FAILED


def amp_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The autocast type of the training forward on `device`, or None for float32.

    TRAIN.AMP with TRAIN.AMP_DTYPE 'float16' runs on CUDA only and needs loss scaling (the GradScaler is
    enabled exactly when this returns torch.float16); 'bfloat16' keeps float32's exponent range, so its
    gradients need no scaling, and runs on CUDA devices that support it and on CPUs.
    """
    if not cfg.TRAIN.AMP:
        return None
    if cfg.TRAIN.AMP_DTYPE == 'bfloat16':
        supported = device.type == 'cpu' or (device.type == 'cuda' and torch.cuda.is_bf16_supported())
        return torch.bfloat16 if supported else None
    return torch.float16 if device.type == 'cuda' else None


def grad_scaler(cfg, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler of a training run: enabled exactly for float16 autocast (bfloat16 keeps float32's
    exponent range and needs no loss scaling; float32 neither)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(cfg, device) == torch.float16)


def build_loader(cfg, dataset, train: bool, world_size: int = 1, rank: int = 0) -> DataLoader:
    """The training or test loader of one process, sharded with a DistributedSampler in every case.

    One process is a world of 1: the sampler's (SEED, epoch) shuffle makes the training order a pure
    function of the epoch, which is what makes resuming exact. At test time the sampler pads the shards
    to equal length; `gather_predictions` drops the repeats. The loader owns a generator, re-seeded each
    epoch by tools/train.py, from which the workers' augmentation seeds are drawn.

    Training drops the last partial batch: every step then has the same shape (a compiled model or a
    CUDA graph would otherwise meet a new one once per epoch), and a data set smaller than one batch is
    an error (exit 2) rather than an epoch of zero steps. The heatmap targets stay generated in the
    workers: encoding costs ~0.05 ms of a ~2.3 ms sample (tools/benchmark.py data), not the limit.

    Workers are not persistent, on purpose: a persistent worker keeps its augmentation generator from
    one epoch to the next, so epoch e's augmentation would depend on how far epoch e-1 drew (prefetched
    batches included) and a resumed run would no longer repeat an uninterrupted one bit for bit
    (tests/test_train.py::test_resume_is_exact). Fresh workers take their seeds from the generator
    tools/train.py seeds per (SEED, epoch, rank); restarting them costs seconds per epoch.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                 shuffle=train and cfg.TRAIN.SHUFFLE, seed=cfg.SEED)
    batch = cfg.TRAIN.BATCH_SIZE_PER_GPU if train else cfg.TEST.BATCH_SIZE_PER_GPU
    if train and len(sampler) < batch:
        raise UserError(f'the training set has {len(dataset)} sample(s), {len(sampler)} per process, fewer than '
                        f'one batch (TRAIN.BATCH_SIZE_PER_GPU {batch}): lower TRAIN.BATCH_SIZE_PER_GPU or add data')
    workers = cfg.WORKERS
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=train,
                      pin_memory=cfg.PIN_MEMORY and torch.cuda.is_available(), generator=torch.Generator(),
                      prefetch_factor=PREFETCH_BATCHES if workers > 0 else None)


def _progress(total: int, desc: str) -> tqdm:
    """A tqdm bar on rank 0 when stdout is a terminal; silent otherwise (logs, CI, other ranks)."""
    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False,
                disable=not (is_main_process() and sys.stdout.isatty()))


def _read_sums(sums: torch.Tensor) -> list[float]:
    """The device sums summed over all processes, on the host: one all_reduce and one sync."""
    if get_world_size() > 1:
        sums = sums.clone()
        dist.all_reduce(sums)
    return sums.tolist()


def train_one_epoch(cfg, model: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, *, epoch: int, iteration: int, iters_per_epoch: int,
                    device: torch.device, writer=None, debug_fn: DebugFn | None = None) -> tuple[int, float]:
    """Run one epoch of at most `iters_per_epoch` steps; return (global iteration after it, mean loss).

    The lr is set before every step from the pure schedule `lr_at(cfg.TRAIN, iteration, …)`, so a run
    resumed at any epoch boundary follows the same lr curve as an uninterrupted one.

    The host never waits for the device inside a step: the loss and HRNet's heatmap accuracy are summed
    on the device and read (one sync; under torchrun one all_reduce, so every rank sees the same sums)
    at the first step, every PRINT_FREQ steps and at the last step. Each read logs a line and writes the
    TensorBoard scalars (means over the steps since the previous read), and stops the run with
    NonFiniteLossError if the loss sum is not finite: a NaN or inf loss anywhere in the window makes it
    so. tools/train.py checks the weights after every epoch too, so nothing non-finite is saved.
    Logged, as in HRNet: `data_time` (waiting for the loader) and `batch_time` (the whole step, that wait
    included), this step's value and the epoch's running mean.
    """
    model.train()
    dtype = amp_dtype(cfg, device)
    world = get_world_size()
    # float64 sums of (loss x samples, accuracy x samples) over the steps since the last read
    window = torch.zeros(2, dtype=torch.float64, device=device)
    window_seen, window_start = 0, iteration
    window_data_time, window_batch_time = 0.0, 0.0
    loss_sum, acc_sum, seen = 0.0, 0.0, 0
    data_time_sum, batch_time_sum = 0.0, 0.0
    bar = _progress(iters_per_epoch, f'epoch {epoch}')
    tic = end = time.perf_counter()
    # islice: a capped epoch (MAX_ITERS_PER_EPOCH) stops without fetching one more batch than it uses.
    for step, (images, target, target_weight, meta) in enumerate(itertools.islice(loader, iters_per_epoch)):
        data_time = time.perf_counter() - end
        lr = lr_at(cfg.TRAIN, iteration, iters_per_epoch)
        set_lr(optimizer, lr)
        images = images.to(device, non_blocking=True)
        if cfg.TRAIN.CHANNELS_LAST:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        target_weight = target_weight.to(device, non_blocking=True)

        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            output = model(images)
        loss = criterion(output.float(), target, target_weight)  # fp32 loss even under AMP
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        # HRNet's heatmap PCK@0.5, a progress signal; computed on the device and read with the loss.
        _, acc, _, _ = accuracy_on_device(output.detach(), target)
        window += torch.stack([loss.detach().double(), acc]) * images.shape[0]
        iteration += 1
        batch = images.shape[0] * world
        window_seen += batch
        window_data_time += data_time
        read = step % cfg.PRINT_FREQ == 0 or step == iters_per_epoch - 1
        if read:
            # The one sync of the window. On CUDA the steps before it only queued work, so their
            # batch_time measured dispatch, and this step's includes waiting for all of them; on the
            # CPU every step runs synchronously and each batch_time is that step's own.
            window_loss, window_acc = _read_sums(window)
            window.zero_()
        batch_time = time.perf_counter() - end
        window_batch_time += batch_time
        data_time_sum += data_time
        batch_time_sum += batch_time
        bar.update()
        if read:
            steps = iteration - window_start
            loss_value, acc_value = window_loss / window_seen, window_acc / window_seen
            if not math.isfinite(window_loss):
                raise NonFiniteLossError(
                    f'loss is {loss_value} at epoch {epoch}, iterations {window_start}-{iteration - 1} (lr '
                    f'{lr:.3g}); stopping without writing a checkpoint. Lower TRAIN.LR or LOSS.LOSS_WEIGHT, or '
                    f'resume from the last one.')
            loss_sum += window_loss
            acc_sum += window_acc
            seen += window_seen
            rate = seen / (time.perf_counter() - tic)
            bar.set_postfix(loss=f'{loss_value:.3g}', acc=f'{acc_value:.3f}', samples_s=f'{rate:.1f}')
            if writer is not None:  # means over the steps since the previous read
                writer.add_scalar('train/loss', loss_value, iteration)
                writer.add_scalar('train/acc', acc_value, iteration)
                writer.add_scalar('train/lr', lr, iteration)
                writer.add_scalar('train/samples_per_s', rate, iteration)
                writer.add_scalar('train/data_time', window_data_time / steps, iteration)
                writer.add_scalar('train/batch_time', window_batch_time / steps, iteration)
            # loss and acc: the mean over the steps since the last line, then over the epoch so far
            logger.info('epoch %d [%d/%d] lr %.3g loss %.4g (mean %.4g) acc %.3f (mean %.3f) '
                        'data_time %.3fs (%.3fs) batch_time %.3fs (%.3fs) %.1f samples/s',
                        epoch, step + 1, iters_per_epoch, lr, loss_value, loss_sum / seen, acc_value, acc_sum / seen,
                        data_time, data_time_sum / (step + 1), batch_time, batch_time_sum / (step + 1), rate)
            window_seen, window_start = 0, iteration
            window_data_time, window_batch_time = 0.0, 0.0
        if debug_fn is not None and cfg.TRAIN.DEBUG_INTERVAL and iteration % cfg.TRAIN.DEBUG_INTERVAL == 0:
            debug_fn(iteration, images, target, output.detach(), meta)
        end = time.perf_counter()  # logging and debug images count in neither time
    bar.close()
    return iteration, loss_sum / max(seen, 1)


@torch.no_grad()
def run_inference(model: nn.Module, loader, codec: MSRAHeatmap, flip_pairs, flip_test: bool = True,
                  shift: bool = True, device: torch.device | None = None,
                  channels_last: bool = False, num_joints: int = 0) -> dict[str, np.ndarray]:
    """Predict every sample of `loader` (this process's shard); returns the preds dict of the contract.

    keys -> shapes (N samples, K joints): 'keypoints' (N,K,3) x, y in image pixels and the joint score;
    'center', 'scale' (N,2); 'area' (N,); 'score' (N,) box score; 'image_id' (N,); 'index' (N,).
    Each batch goes through `predict_keypoints` (flip test with the 1-px `shift`, decoding, mapping
    back to the image), the one inference path `PoseEstimator` uses too.
    An empty loader (no box in the detections file, no labelled person) gives every key with zero rows
    ('keypoints' (0, num_joints, 3)), so gathering and evaluation see an empty prediction set, not a
    missing key.
    """
    device = device or next(model.parameters()).device
    model.eval()
    parts = defaultdict(list)
    for images, _, _, meta in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        center, scale = meta['center'].numpy(), meta['scale'].numpy()
        parts['keypoints'].append(predict_keypoints(model, images, center, scale, codec, flip_pairs,
                                                    flip_test, shift))
        parts['center'].append(center)
        parts['scale'].append(scale)
        parts['area'].append(meta['area'].numpy())
        parts['score'].append(meta['score'].numpy())
        parts['image_id'].append(meta['image_id'].numpy())
        parts['index'].append(meta['index'].numpy())
    if not parts:
        return empty_predictions(num_joints)
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def empty_predictions(num_joints: int) -> dict[str, np.ndarray]:
    """The preds dict of run_inference with zero samples (same keys, dtypes and trailing shapes)."""
    return {'keypoints': np.zeros((0, num_joints, 3), np.float32), 'center': np.zeros((0, 2), np.float32),
            'scale': np.zeros((0, 2), np.float32), 'area': np.zeros(0, np.float64),
            'score': np.zeros(0, np.float64), 'image_id': np.zeros(0, np.int64), 'index': np.zeros(0, np.int64)}


def validate(cfg, model: nn.Module, loader, dataset, output_dir: str, device: torch.device | None = None,
             channels_last: bool = False) -> tuple[dict[str, float] | None, str | None]:
    """Predict the whole data set (all processes), then score it once on rank 0.

    Returns (metrics, primary key) on rank 0 and (None, None) on the other ranks. Writes the results
    file (COCO json or MPII pred.mat) into `output_dir` through `lib.evaluation.evaluate_predictions`.
    channels_last: feed the crops in channels-last memory format (the caller converted the model).
    """
    preds = run_inference(model, loader, dataset.codec, dataset.flip_pairs, cfg.TEST.FLIP_TEST,
                          cfg.TEST.SHIFT_HEATMAP, device, channels_last, num_joints=dataset.num_joints)
    preds = gather_predictions(preds)  # collective: every rank must call it
    if not is_main_process():
        return None, None
    return evaluate_predictions(dataset, preds, output_dir, in_vis_thre=cfg.TEST.IN_VIS_THRE,
                                oks_thre=cfg.TEST.OKS_THRE, soft_nms=cfg.TEST.SOFT_NMS)
