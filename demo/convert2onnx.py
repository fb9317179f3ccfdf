"""Export a Lite-HRNet model to ONNX and prove the file computes what PyTorch computes.

    python demo/convert2onnx.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml \\
        TEST.MODEL_FILE litehrnet_18_coco_256x192.pth --output litehrnet_18.onnx --dynamic-batch

Steps: build the model of the config and load TEST.MODEL_FILE (ours or an official mmpose
checkpoint); turn it into its deploy form (`--graph deploy`, the default: BatchNorm folded, blocks
computed full width without split/shuffle copies, channels padded to onnxruntime's block on this CPU
or to --channel-block, see lib/export/deploy.py; faster in onnxruntime) or keep it as written
(`--graph plain`: the 'export' kernels, constant sizes, optionally `--fold-bn`; or `--graph official`:
the 'official' kernels, sizes read at run time: the export users know, as a baseline); export with the TorchScript
exporter (input 'input' N x 3 x H x W float32, normalised crops; output 'heatmaps'
N x K x H/4 x W/4); run onnx.checker; run the file in onnxruntime on random
batches and on a real person crop (a tests/data/coco_tiny image, or --image, or a synthetic
image when neither exists) and print the max |onnxruntime - PyTorch|. Exit status 1 when that
exceeds --atol (default 1e-4), 2 on bad arguments or files, checked before the export: an --opset
below 11 (the first whose Resize does bilinear upsampling with align_corners), an --output that is a
folder or sits in a missing or read-only folder.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np

from lib.config import ConfigError, load_config
from lib.core.inference import PoseEstimator
from lib.utils.checkpoint import CheckpointError
from lib.utils.cli import parse_args_with_overrides
from lib.export import DEFAULT_ATOL, DEFAULT_OPSET, GRAPHS, export_and_check
from lib.export.onnx import MIN_OPSET, check_opset, check_output_file

SAMPLE_IMAGES = os.path.join(_init_paths.REPO_ROOT, 'tests', 'data', 'coco_tiny', 'images', 'val2017')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    parser.add_argument('--output', default='', help='ONNX file to write (default: beside the weights, '
                        '<weights>.onnx, or <config name>.onnx)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET})')
    parser.add_argument('--dynamic-batch', action='store_true', help='symbolic batch axis (default: batch 1)')
    parser.add_argument('--graph', choices=GRAPHS, default='deploy', help='deploy (default): the inference form '
                        'of lib/export/deploy.py, BatchNorm folded; plain: the model as written, constant '
                        'sizes; official: as the official code writes it (the usual export, a baseline)')
    parser.add_argument('--channel-block', type=int, default=None, help='--graph deploy: pad channels to '
                        'multiples of this (default: onnxruntime\'s NCHWc block on this CPU, 16 with AVX-512, 8 '
                        'with AVX2; 16 runs without layout reorders on both)')
    parser.add_argument('--fold-bn', action='store_true', help='--graph plain/official: fold BatchNorm into the convolutions '
                        '(the deploy graph always does)')
    parser.add_argument('--image', default='', help='real image for the parity check (default: a coco_tiny '
                        'image from tests/data when present, else a synthetic image)')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL, help='largest accepted difference')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    return parse_args_with_overrides(parser, argv)


def default_output(cfg) -> str:
    if cfg.TEST.MODEL_FILE:
        return os.path.splitext(cfg.TEST.MODEL_FILE)[0] + '.onnx'
    return f'{cfg.CFG_NAME or cfg.MODEL.NAME}_random.onnx'


def load_test_image(path: str) -> tuple[str, np.ndarray]:
    """(description, BGR image): --image, else the first coco_tiny image, else a synthetic one."""
    if path:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f'--image {path}: file missing or not a readable image')
        return f'real image {path}', image
    shared = sorted(glob.glob(os.path.join(SAMPLE_IMAGES, '*.jpg')))
    image = cv2.imread(shared[0], cv2.IMREAD_COLOR) if shared else None
    if image is not None:
        return f'real image {os.path.normpath(shared[0])}', image
    # Smooth random colour blobs: not a photo, but with image-like statistics, unlike white noise.
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    return 'synthetic image (no real image found)', cv2.resize(noise, (640, 480), interpolation=cv2.INTER_CUBIC)


def parity_inputs(estimator: PoseEstimator, image_desc: str, image: np.ndarray,
                  dynamic_batch: bool) -> dict[str, np.ndarray]:
    """Random normal batches (sizes 1 and 3 when the batch is dynamic) and one crop of the image."""
    w, h = estimator.image_size
    rng = np.random.default_rng(0)
    sizes = (1, 3) if dynamic_batch else (1,)
    inputs = {f'random batch of {n}': rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in sizes}
    img_h, img_w = image.shape[:2]
    # Middle 80% of the frame as the person box: a realistic crop with context around it.
    box = np.array([[0.1 * img_w, 0.1 * img_h, 0.8 * img_w, 0.8 * img_h]])
    crops, _, _ = estimator.preprocess(image, box)
    inputs[f'crop of {image_desc}'] = crops
    return inputs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_opset(args.opset, '--opset')
        cfg = load_config(args.cfg, args.opts)
        output = args.output or default_output(cfg)
        # Before the weights are loaded: a path that cannot be written fails in a second, not after the export.
        check_output_file(output, '--output' if args.output else 'output (default: beside the weights)')
        estimator = PoseEstimator(cfg)  # loads TEST.MODEL_FILE; warns when it is empty (random weights)
        image_desc, image = load_test_image(args.image)
    except (ConfigError, CheckpointError, FileNotFoundError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'model {cfg.MODEL.NAME}, input {cfg.MODEL.IMAGE_SIZE[0]}x{cfg.MODEL.IMAGE_SIZE[1]} (WxH), '
          f'weights: {estimator.weights_source}')
    inputs = parity_inputs(estimator, image_desc, image, args.dynamic_batch)
    try:
        report = export_and_check(estimator.model, output, estimator.image_size, inputs, opset=args.opset,
                                  dynamic_batch=args.dynamic_batch, fold_bn=args.fold_bn, atol=args.atol,
                                  threads=args.threads, graph=args.graph, channel_block=args.channel_block)
    except ValueError as err:  # an option this model or graph cannot honour
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == '__main__':
    sys.exit(main())
