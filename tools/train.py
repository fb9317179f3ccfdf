"""Train a Lite-HRNet from a YAML config, on one CPU/GPU or many processes with torchrun.

    python tools/train.py --cfg experiments/synthetic/quickstart.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml

Re-running the same command resumes from OUTPUT_DIR/<dataset>/<model>/<config>/checkpoint.pth
(TRAIN.AUTO_RESUME). Writes checkpoint.pth (latest), model_best.pth (best validation metric) and
final_state.pth there, plus the log file and the resolved config; TensorBoard scalars go to LOG_DIR/....

One training per output folder: rank 0 takes OUTPUT_DIR/.../train.lock before writing anything, and a
second run on the same folder stops at once (exit 2). Weights that became NaN or infinite are never saved
(exit 1; the last good checkpoint.pth stays and resumes). A run that fails removes the folders it
created if they are still empty.
"""
from __future__ import annotations

import argparse
import os

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from lib.config import load_config, output_dirs
from lib.core.compile import compile_model
from lib.core.function import NonFiniteLossError, amp_dtype, build_loader, grad_scaler, train_one_epoch, validate
from lib.core.loss import build_loss
from lib.dataset import build_dataset
from lib.models import build_model
from lib.models.layers import convert_sync_batchnorm
from lib.utils.checkpoint import CheckpointError, load_weights
from lib.utils.cli import parse_args_with_overrides
from lib.utils.dist import barrier, broadcast_object, cleanup, exit_process, init_distributed
from lib.utils.logger import UserError, create_logger, run_tool
from lib.utils.run_folder import RunLock, make_dirs, named_file_errors, remove_empty_dirs
from lib.utils.training_state import (apply_training_state, check_finite_model, read_training_state, save_model_file,
                                      save_training_state)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a Lite-HRNet keypoint model.')
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    return parse_args_with_overrides(parser, argv)  # KEY VALUE overrides anywhere on the line


def seed_for(cfg, *parts: int) -> int:
    """A 63-bit seed derived from cfg.SEED and e.g. (epoch, rank): independent streams, reproducible."""
    return int(np.random.SeedSequence([cfg.SEED, *parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam (official), AdamW or SGD from cfg.TRAIN; the lr is set every step by the schedule.
    Adam and AdamW run fused (one kernel over all ~800 parameter tensors: 40 -> 6 ms per step of Lite-HRNet-18
    on 2 CPU threads, 6% of a 128x96 batch-16 step) where this torch has the fused kernel for the
    parameters' device (CUDA; CPU since torch 2.4), and as the usual loop elsewhere: the same update rule."""
    name, params, t = cfg.TRAIN.OPTIMIZER, list(model.parameters()), cfg.TRAIN
    if name in ('adam', 'adamw'):
        adam = torch.optim.Adam if name == 'adam' else torch.optim.AdamW
        try:
            return adam(params, lr=t.LR, eps=t.ADAM_EPS, weight_decay=t.WD, fused=True)
        except RuntimeError:  # "fused=True requires all the params to be ... on a supported device"
            return adam(params, lr=t.LR, eps=t.ADAM_EPS, weight_decay=t.WD)
    if name == 'sgd':
        return torch.optim.SGD(params, lr=t.LR, momentum=t.MOMENTUM, weight_decay=t.WD, nesterov=t.NESTEROV)
    raise ValueError(f"TRAIN.OPTIMIZER must be adam, adamw or sgd, got '{name}'")


def use_sync_bn(cfg, dist_info) -> bool:
    """Whether to convert BatchNorm to SyncBatchNorm: MODEL.SYNC_BN with several processes. torch's
    SyncBatchNorm synchronises CUDA tensors only, so a multi-process CPU run is refused before any work."""
    if not (cfg.MODEL.SYNC_BN and dist_info.distributed):
        return False
    if dist_info.device.type != 'cuda':
        raise UserError(f'MODEL.SYNC_BN: torch.nn.SyncBatchNorm synchronises CUDA tensors only, and these '
                        f'{dist_info.world_size} processes train on {dist_info.device.type}; set MODEL.SYNC_BN False')
    return True


def read_resume_state(path: str) -> dict | CheckpointError | None:
    """The checkpoint to resume from (None if there is none yet), or the error reading it, so that
    rank 0 can hand either to the other ranks instead of leaving them waiting."""
    if not os.path.isfile(path):
        return None
    try:
        return read_training_state(path)
    except CheckpointError as err:
        return err


def make_debug_fn(output_dir: str, codec, metainfo):
    """Save GT and predicted joints (and heatmaps) of a training batch as images under output_dir/debug."""
    from lib.utils.vis import save_debug_images

    def debug_fn(iteration, images, target, output, meta):
        coords, _ = codec.decode(output.float().cpu().numpy())
        prefix = os.path.join(output_dir, 'debug', f'train_{iteration:07d}')
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        save_debug_images(images.cpu(), meta, target.cpu(), coords * codec.stride, output.cpu(), prefix,
                          metainfo=metainfo)  # limbs, not just dots
    return debug_fn


def claim_output_folder(cfg, dist_info) -> tuple[RunLock, list[str], str | None]:
    """(lock, folders created, stale-lock warning): rank 0 creates the output and TensorBoard folders and
    takes the folder's run lock before any file is written. A busy folder raises RunFolderBusyError on
    every rank (rank 0's outcome is broadcast, so no rank waits for the others forever)."""
    lock, created, outcome = RunLock(output_dirs(cfg)[0]), [], None
    if dist_info.is_main:
        try:
            created = make_dirs(*output_dirs(cfg))
            outcome = lock.acquire()
        except UserError as err:
            remove_empty_dirs(created)
            outcome = err
    outcome = broadcast_object(outcome)
    if isinstance(outcome, UserError):
        raise outcome
    return lock, created, outcome


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    dist_info = init_distributed(args.device)
    lock, created, stale_lock_warning = claim_output_folder(cfg, dist_info)
    try:
        with named_file_errors():  # a PermissionError or full disk mid-run: one line naming the file
            return run_training(cfg, args, dist_info, stale_lock_warning)
    finally:
        lock.release()
        remove_empty_dirs(created)  # only folders still empty: a run that failed before writing into them


def run_training(cfg, args: argparse.Namespace, dist_info, stale_lock_warning: str | None) -> int:
    rank, world, device = dist_info.rank, dist_info.world_size, dist_info.device
    logger, output_dir, tb_dir = create_logger(cfg, 'train')
    if stale_lock_warning:
        logger.warning(stale_lock_warning)
    logger.info('resolved config:\n%s', cfg.dump())
    logger.info('%d process(es), device %s', world, device)
    torch.manual_seed(seed_for(cfg, rank))
    np.random.seed(seed_for(cfg, rank) % 2**32)
    if cfg.DETERMINISTIC:
        # CUDA's deterministic cuBLAS needs a fixed workspace, set before its first call. warn_only: the
        # backward passes of adaptive pooling and bilinear upsampling have no deterministic CUDA kernel.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK and not cfg.DETERMINISTIC
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC or cfg.DETERMINISTIC

    sync_bn = use_sync_bn(cfg, dist_info)
    if cfg.MODEL.SYNC_BN and not sync_bn:
        logger.info('MODEL.SYNC_BN: one process, nothing to synchronise; plain BatchNorm')
    model = build_model(cfg)
    if cfg.MODEL.PRETRAINED:
        load_weights(model, cfg.MODEL.PRETRAINED, exclude=cfg.MODEL.PRETRAINED_EXCLUDE)
        logger.info('loaded weights from %s%s', cfg.MODEL.PRETRAINED,
                    f' except {list(cfg.MODEL.PRETRAINED_EXCLUDE)}' if cfg.MODEL.PRETRAINED_EXCLUDE else '')
    model.to(device)
    if sync_bn:  # before the optimizer takes the parameters; batch statistics over all processes, same names
        convert_sync_batchnorm(model)
    if cfg.TRAIN.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    dtype = amp_dtype(cfg, device)
    if cfg.TRAIN.AMP and dtype is None:
        hint = ' (TRAIN.AMP_DTYPE bfloat16 runs on CPUs)' if device.type == 'cpu' else ''
        logger.warning('TRAIN.AMP with TRAIN.AMP_DTYPE %s cannot run on %s; training in float32%s',
                       cfg.TRAIN.AMP_DTYPE, device, hint)

    train_set = build_dataset(cfg, is_train=True)
    val_set = build_dataset(cfg, is_train=False, use_gt_bbox=cfg.TRAIN.VAL_USE_GT_BBOX)
    train_loader = build_loader(cfg, train_set, True, world, rank)
    val_loader = build_loader(cfg, val_set, False, world, rank)
    iters_per_epoch = len(train_loader)
    if cfg.TRAIN.MAX_ITERS_PER_EPOCH:
        iters_per_epoch = min(iters_per_epoch, cfg.TRAIN.MAX_ITERS_PER_EPOCH)
    logger.info('train: %d samples, %d iterations/epoch x %d process(es); val: %d samples',
                len(train_set), iters_per_epoch, world, len(val_set))

    criterion = build_loss(cfg)
    optimizer = build_optimizer(cfg, model)
    scaler = grad_scaler(cfg, device)
    start_epoch, iteration = cfg.TRAIN.BEGIN_EPOCH, cfg.TRAIN.BEGIN_EPOCH * iters_per_epoch
    best_perf, best_epoch, saved_epoch = -float('inf'), -1, None
    ckpt_path = os.path.join(output_dir, 'checkpoint.pth')
    state = read_resume_state(ckpt_path) if cfg.AUTO_RESUME and dist_info.is_main else None
    state = broadcast_object(state)  # rank 0 reads; other machines need not see the file
    if isinstance(state, CheckpointError):
        raise state
    if state is not None:
        state = apply_training_state(state, model=model, optimizer=optimizer, scaler=scaler, source=ckpt_path)
        start_epoch, iteration = state['epoch'], state['iteration']
        best_perf, best_epoch, saved_epoch = state['best_perf'], state['best_epoch'], start_epoch
        logger.info('resumed from %s: epoch %d, iteration %d, best %.4f', ckpt_path, start_epoch, iteration,
                    best_perf)
    if cfg.TRAIN.COMPILE:  # in place, after loading and before DDP: state-dict names stay the official ones
        compile_model(model, mode=cfg.TRAIN.COMPILE_MODE)
    if dist_info.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    writer = None
    if dist_info.is_main:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(tb_dir, purge_step=iteration)
    debug_fn = make_debug_fn(output_dir, train_set.codec, train_set.metainfo) if dist_info.is_main and cfg.TRAIN.DEBUG_INTERVAL else None

    for epoch in range(start_epoch, cfg.TRAIN.END_EPOCH):
        train_loader.sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)  # epoch-dependent augmentation (DATASET.BOX_JITTER_START_EPOCH)
        # Augmentation seeds of this epoch: workers draw theirs from the loader's generator, the main
        # process (WORKERS 0) from torch's; both are a pure function of (SEED, epoch, rank).
        train_loader.generator.manual_seed(seed_for(cfg, epoch, rank))
        torch.manual_seed(seed_for(cfg, epoch, rank))
        last_good = f'{ckpt_path} (written after epoch {saved_epoch - 1})' if saved_epoch is not None else None
        try:
            iteration, loss = train_one_epoch(cfg, model, train_loader, criterion, optimizer, scaler, epoch=epoch,
                                              iteration=iteration, iters_per_epoch=iters_per_epoch, device=device,
                                              writer=writer, debug_fn=debug_fn)
        except NonFiniteLossError as err:  # point at what the user can resume from
            raise NonFiniteLossError(f'{err} Last good checkpoint: {last_good or "none yet (no epoch was saved)"}.'
                                     ) from None
        # The loss is checked before every step, the weights after the last one: a step that diverged at
        # the end of the epoch must be neither validated nor saved. Every rank holds the same weights, so
        # all ranks stop together.
        check_finite_model(model, f'after epoch {epoch}, iteration {iteration}', last_good)

        def save_checkpoint() -> None:
            save_training_state(ckpt_path, model=model, optimizer=optimizer, scaler=scaler, epoch=epoch + 1,
                                iteration=iteration, best_perf=best_perf, best_epoch=best_epoch, cfg=cfg)

        last = epoch + 1 == cfg.TRAIN.END_EPOCH
        checkpoint_epoch = (epoch + 1) % cfg.TRAIN.CHECKPOINT_INTERVAL == 0 or last
        if checkpoint_epoch:  # before validation: a crash or kill there loses no training
            if dist_info.is_main:
                save_checkpoint()
                logger.info('epoch %d done: mean loss %.4g, checkpoint written', epoch, loss)
            saved_epoch = epoch + 1  # on every rank: each names it if the next epoch diverges
        if (epoch + 1) % cfg.TRAIN.VAL_INTERVAL == 0 or last:
            metrics, key = validate(cfg, model, val_loader, val_set, output_dir, device, cfg.TRAIN.CHANNELS_LAST)
            if dist_info.is_main:
                logger.info('epoch %d validation: %s', epoch, ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
                for name, value in metrics.items():
                    writer.add_scalar(f'val/{name}', value, epoch + 1)
                if metrics[key] > best_perf:
                    best_perf, best_epoch = metrics[key], epoch
                    save_model_file(os.path.join(output_dir, 'model_best.pth'), model, cfg,
                                    epoch=epoch + 1, perf=best_perf, metric=key)
                    logger.info('new best %s %.4f -> model_best.pth', key, best_perf)
                    if checkpoint_epoch:
                        save_checkpoint()  # again, so that a resumed run knows this best
        barrier()

    if dist_info.is_main:
        save_model_file(os.path.join(output_dir, 'final_state.pth'), model, cfg, epoch=cfg.TRAIN.END_EPOCH)
        logger.info('finished: best %.4f at epoch %d; weights in %s', best_perf, best_epoch, output_dir)
        writer.close()
    cleanup()
    return 0


if __name__ == '__main__':
    exit_process(run_tool(main))
