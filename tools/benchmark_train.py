"""Training throughput: samples/s of forward + backward + optimizer step on synthetic batches.

    python tools/benchmark_train.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml
    python tools/benchmark_train.py --cfg ... --device cuda --amp --batch 64

Prints one row per setting: BatchNorm in train or eval mode (eval = frozen statistics, MODEL.NORM_EVAL),
channels_last off/on, and with --amp float16 autocast with a GradScaler (CUDA only). Beside it, the data
pipeline's rate (reading, augmenting, cropping and encoding real samples of the config's training set
with WORKERS loader processes), when that set is on disk. Timings exclude --warmup iterations.
"""
from __future__ import annotations

import argparse
import sys
import time

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import torch

from lib.config import load_config
from lib.core.function import build_loader
from lib.core.loss import build_loss
from lib.models import build_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', required=True)
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--batch', type=int, default=0, help='batch size (default TRAIN.BATCH_SIZE_PER_GPU)')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations per setting')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations per setting')
    parser.add_argument('--amp', action='store_true', help='also time float16 autocast (CUDA)')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (0 = torch default)')
    parser.add_argument('--data-batches', type=int, default=10, help='batches timed for the data pipeline (0 = skip)')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_training(cfg, device, batch: int, bn_train: bool, channels_last: bool, amp: bool,
                  iters: int, warmup: int) -> float:
    """samples/s of full training steps on one fixed random batch (the data pipeline excluded)."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    model.train(bn_train)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    w, h = cfg.MODEL.IMAGE_SIZE
    hw, hh = cfg.MODEL.HEATMAP_SIZE
    images = torch.randn(batch, 3, h, w, device=device).contiguous(memory_format=fmt)
    target = torch.rand(batch, cfg.MODEL.NUM_JOINTS, hh, hw, device=device)
    weight = torch.ones(batch, cfg.MODEL.NUM_JOINTS, 1, device=device)
    criterion = build_loss(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR, eps=cfg.TRAIN.ADAM_EPS)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    for i in range(warmup + iters):
        if i == warmup:
            sync(device)
            tic = time.perf_counter()
        with torch.autocast(device.type, enabled=amp):
            output = model(images)
        loss = criterion(output.float(), target, weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    sync(device)
    return batch * iters / (time.perf_counter() - tic)


def time_data(cfg, batches: int) -> str:
    """samples/s of the training loader (WORKERS processes), or why it could not run."""
    from lib.dataset import build_dataset
    try:
        dataset = build_dataset(cfg, is_train=True)
    except (OSError, ValueError) as err:
        return f'unavailable ({err})'
    loader = build_loader(cfg, dataset, train=True)
    seen, tic = 0, None
    for i, (images, *_rest) in enumerate(loader):
        if i == 1:  # the first batch pays for starting the workers
            seen, tic = 0, time.perf_counter()
        seen += images.shape[0]
        if i == batches:
            break
    if tic is None or seen == 0:
        return 'unavailable (data set smaller than two batches)'
    return f'{seen / (time.perf_counter() - tic):.1f} samples/s ({cfg.WORKERS} workers)'


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    device = torch.device('cuda' if args.device == 'cuda' or (args.device == 'auto' and torch.cuda.is_available())
                          else 'cpu')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    batch = args.batch or cfg.TRAIN.BATCH_SIZE_PER_GPU
    amps = (False, True) if args.amp and device.type == 'cuda' else (False,)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'{cfg.MODEL.NAME} {cfg.MODEL.IMAGE_SIZE[0]}x{cfg.MODEL.IMAGE_SIZE[1]} (WxH), batch {batch}, '
          f'{name}, torch {torch.__version__}')
    print('| BN mode | channels_last | AMP | train samples/s |\n|---|---|---|---|')
    for amp in amps:
        for bn_train in (True, False):
            for channels_last in (False, True):
                rate = time_training(cfg, device, batch, bn_train, channels_last, amp, args.iters, args.warmup)
                print(f"| {'train' if bn_train else 'eval'} | {channels_last} | {amp} | {rate:.1f} |", flush=True)
    if args.data_batches:
        print(f'data pipeline: {time_data(cfg, args.data_batches)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
