"""Export a Lite-HRNet model to ONNX or OpenVINO (float32 or int8) and prove the file computes what PyTorch computes.

    python demo/convert2onnx.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml \\
        TEST.MODEL_FILE litehrnet_18_coco_256x192.pth --output litehrnet_18.onnx --dynamic-batch
    ... --format openvino --output litehrnet_18.xml                 # OpenVINO IR (.xml + .bin), float32
    ... --format openvino --precision int8 --output litehrnet_18_int8.xml    # calibrated on the config's train set

Steps: build the model of the config and load TEST.MODEL_FILE (ours or an official mmpose
checkpoint); turn it into its deploy form (`--graph deploy`, the default: BatchNorm folded, blocks
computed full width without split/shuffle copies, channels padded to onnxruntime's block on this CPU
or to --channel-block, see lib/export/deploy.py; faster in onnxruntime) or keep it as written
(`--graph plain`: the 'export' kernels, constant sizes, optionally `--fold-bn`; or `--graph official`:
the 'official' kernels, sizes read at run time: the export users know, as a baseline); export with the TorchScript
exporter (input 'input' N x 3 x H x W float32, normalised crops; output 'heatmaps'
N x K x H/4 x W/4); run onnx.checker; with --format openvino convert it to OpenVINO IR (float32 weights);
run the file (onnxruntime, or OpenVINO in float32) on random batches and on a real person crop (a
tests/data/coco_tiny image, or --image, or a synthetic image when neither exists) and compare it with
the PyTorch model in float64: it passes when its error is at most --factor (default 4) times PyTorch
float32's own error on that input, plus --atol (default 1e-6). Exit status 1 when it fails, 2 on bad
arguments or files, checked before the export: an --opset
below 11 (the first whose Resize does bilinear upsampling with align_corners), an --output that is a
folder or sits in a missing or read-only folder.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np

from lib.config import ConfigError, load_config
from lib.core.inference import PoseEstimator
from lib.utils.checkpoint import CheckpointError
from lib.utils.cli import parse_args_with_overrides
from lib.utils.logger import UserError
from lib.export import DEFAULT_ATOL, DEFAULT_FACTOR, DEFAULT_OPSET, GRAPHS, export_and_check
from lib.export.onnx import MIN_OPSET, check_opset, check_output_file
from lib.export.quantize import DEFAULT_HOLDOUT, DEFAULT_NUM_CROPS, MIN_CALIB_NUM

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
    parser.add_argument('--format', choices=('onnx', 'openvino'), default='onnx', help='onnx (default): a .onnx '
                        'file for onnxruntime (or any ONNX runtime); openvino: OpenVINO IR, --output ending in .xml')
    parser.add_argument('--precision', choices=('fp32', 'int8'), default='fp32', help='int8: post-training static '
                        'quantisation (onnxruntime QDQ or OpenVINO/NNCF) calibrated on --calib-num crops, the most '
                        'sensitive layers kept in float (listed in the report); checked by heatmap-peak agreement')
    parser.add_argument('--calib-dir', default='', help='int8: a folder of person images (each taken whole as one '
                        'person box) to calibrate on (default: the config\'s training set, ground-truth boxes)')
    parser.add_argument('--calib-num', type=int, default=DEFAULT_NUM_CROPS,
                        help=f'int8: number of calibration crops (default {DEFAULT_NUM_CROPS})')
    parser.add_argument('--float-layers', default='auto', help='int8: how many of the most sensitive layers stay in '
                        'float: a number, or auto (default)')
    parser.add_argument('--factor', type=float, default=DEFAULT_FACTOR, help='float parity: accepted multiple of '
                        'PyTorch float32\'s own error against float64 (default %(default)g)')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL, help='float parity: absolute floor added to '
                        'the tolerance (default %(default)g)')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    return parse_args_with_overrides(parser, argv)


def default_output(cfg, fmt: str = 'onnx', precision: str = 'fp32') -> str:
    stem = os.path.splitext(cfg.TEST.MODEL_FILE)[0] if cfg.TEST.MODEL_FILE else f'{cfg.CFG_NAME or cfg.MODEL.NAME}_random'
    return stem + ('_int8' if precision == 'int8' else '') + ('.xml' if fmt == 'openvino' else '.onnx')


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


def check_format_args(args: argparse.Namespace, output: str) -> None:
    if args.format == 'openvino' and not output.lower().endswith('.xml'):
        raise ValueError(f'--output {output}: --format openvino writes OpenVINO IR, a file name ending in .xml')
    if args.precision == 'int8' and (args.graph != 'deploy' or not args.dynamic_batch):
        raise ValueError('--precision int8 quantises the deploy graph with a dynamic batch: drop --graph and add '
                         '--dynamic-batch')
    if args.calib_num < MIN_CALIB_NUM:  # fewer leave no crop to hold out for the int8 check (crops_to_draw)
        raise ValueError(f'--calib-num must be >= {MIN_CALIB_NUM} (a third as many crops again, up to '
                         f'{DEFAULT_HOLDOUT}, are drawn to check the int8 file), got {args.calib_num}')
    if args.float_layers != 'auto' and not args.float_layers.isdigit():
        raise ValueError(f"--float-layers must be a number or 'auto', got '{args.float_layers}'")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_opset(args.opset, '--opset')
        cfg = load_config(args.cfg, args.opts)
        output = args.output or default_output(cfg, args.format, args.precision)
        check_format_args(args, output)
        # Before the weights are loaded: a path that cannot be written fails in a second, not after the export.
        check_output_file(output, '--output' if args.output else 'output (default: beside the weights)')
        # The PyTorch model whatever TEST.BACKEND says: it is what the file is made from and checked against.
        estimator = PoseEstimator(cfg, backend='torch', precision='fp32')  # warns when TEST.MODEL_FILE is empty
        image_desc, image = load_test_image(args.image)
    except (ConfigError, CheckpointError, UserError, FileNotFoundError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'model {cfg.MODEL.NAME}, input {cfg.MODEL.IMAGE_SIZE[0]}x{cfg.MODEL.IMAGE_SIZE[1]} (WxH), '
          f'weights: {estimator.weights_source}')
    inputs = parity_inputs(estimator, image_desc, image, args.dynamic_batch)
    with tempfile.TemporaryDirectory() as folder:
        # The ONNX graph is the output itself, or (OpenVINO, int8) the float graph the output is made from.
        onnx_path = output if args.format == 'onnx' and args.precision == 'fp32' else os.path.join(folder, 'float.onnx')
        openvino_path = output if args.format == 'openvino' and args.precision == 'fp32' else None
        try:
            report = export_and_check(estimator.model, onnx_path, estimator.image_size, inputs, opset=args.opset,
                                      dynamic_batch=args.dynamic_batch, fold_bn=args.fold_bn, atol=args.atol,
                                      threads=args.threads, graph=args.graph, channel_block=args.channel_block,
                                      factor=args.factor, openvino_path=openvino_path)
        except ValueError as err:  # an option this model or graph cannot honour
            print(f'error: {err}', file=sys.stderr)
            return 2
        print(report.summary())
        if not report.passed or args.precision == 'fp32':
            return 0 if report.passed else 1
        return write_int8(args, cfg, estimator, onnx_path, output)


def write_int8(args: argparse.Namespace, cfg, estimator: PoseEstimator, float_onnx: str, output: str) -> int:
    """Quantise the checked float graph for --format's runtime; print the report (exit 1 when it fails)."""
    from lib.export.quantize import calibration_crops, crops_to_draw, quantize_file
    try:  # --calib-num crops to calibrate on, and more that quantize_file holds out to check the file on
        crops, source = calibration_crops(cfg, crops_to_draw(args.calib_num), calib_dir=args.calib_dir or None)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    float_layers = args.float_layers if args.float_layers == 'auto' else int(args.float_layers)
    try:
        report = quantize_file(estimator.model, float_onnx, output, 'onnxruntime' if args.format == 'onnx' else
                               'openvino', crops, calib_source=source, float_layers=float_layers, threads=args.threads)
    except ValueError as err:  # e.g. a calibration set too small to hold crops out for the check
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == '__main__':
    sys.exit(main())
