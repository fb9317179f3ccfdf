"""Evaluate a trained model: AP on COCO-format data, PCKh on MPII.

    python tools/test.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml TEST.MODEL_FILE m.pth
    torchrun --nproc_per_node 2 tools/test.py --cfg ... TEST.MODEL_FILE m.pth TEST.USE_GT_BBOX True

TEST.MODEL_FILE may be one of our checkpoints (model_best.pth, final_state.pth, checkpoint.pth) or an
official mmpose-format one. Flip test, heatmap shift, DARK and GT vs detector boxes follow cfg.TEST;
TEST.COMPILE compiles the network block by block (lib/core/compile.py). TEST.BACKEND onnxruntime / openvino
with TEST.PRECISION fp32 / bf16 / int8 evaluates a deployed file (TEST.MODEL_FILE m.onnx or m.xml from
demo/convert2onnx.py; a .pth is exported on the fly) through the same flip test, decoding and scoring. Writes the results file (COCO
keypoints json / MPII pred.mat) and metrics.json into the output folder and prints the metrics table. Under torchrun every process predicts a shard; rank 0 scores each
sample once.
"""
from __future__ import annotations

import argparse
import os

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import torch

from lib.config import load_config
from lib.core.compile import compile_model
from lib.core.function import build_loader, validate
from lib.dataset import build_dataset
from lib.export.backends import load_network
from lib.utils.cli import parse_args_with_overrides
from lib.utils.dist import cleanup, exit_process, init_distributed
from lib.utils.logger import create_logger, run_tool
from lib.utils.run_folder import named_file_errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a Lite-HRNet keypoint model.')
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    return parse_args_with_overrides(parser, argv)  # KEY VALUE overrides, e.g. TEST.MODEL_FILE m.pth


def main(argv: list[str] | None = None) -> int:
    with named_file_errors():  # a results file that cannot be written: one line naming it (exit 2)
        return evaluate_model(parse_args(argv))


def evaluate_model(args: argparse.Namespace) -> int:
    cfg = load_config(args.cfg, args.opts)
    if not cfg.TEST.MODEL_FILE:
        raise ValueError('TEST.MODEL_FILE: empty, so there is no model to test; pass TEST.MODEL_FILE path/to/weights.pth')
    # Loaded (and checked against the config) before any process group or output folder exists.
    backend, precision = cfg.TEST.BACKEND, cfg.TEST.PRECISION
    model = load_network(cfg, cfg.TEST.MODEL_FILE, backend, precision)

    dist_info = init_distributed(args.device)
    logger, output_dir, _ = create_logger(cfg, 'test')
    logger.info('model %s from %s (%s, %s); boxes: %s; flip test %s', cfg.MODEL.NAME, cfg.TEST.MODEL_FILE, backend,
                precision, 'ground truth' if cfg.TEST.USE_GT_BBOX else cfg.TEST.COCO_BBOX_FILE, cfg.TEST.FLIP_TEST)
    device = dist_info.device if backend == 'torch' else torch.device('cpu')  # the runtimes run on the CPU
    model.to(device)
    if cfg.TEST.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    if cfg.TEST.COMPILE:  # block by block, in place; eager with one warning where it cannot compile
        compile_model(model, mode=cfg.TEST.COMPILE_MODE)
    dataset = build_dataset(cfg, is_train=False)
    loader = build_loader(cfg, dataset, False, dist_info.world_size, dist_info.rank)
    metrics, key = validate(cfg, model, loader, dataset, output_dir, device, cfg.TEST.CHANNELS_LAST)

    if dist_info.is_main:
        from lib.evaluation import print_metrics_table, write_metrics_json
        runtime = '' if backend == 'torch' and precision == 'fp32' else f', {backend} {precision}'
        print_metrics_table(metrics, f'{cfg.MODEL.NAME}{runtime} on {cfg.DATASET.DATASET} {cfg.DATASET.TEST_SET} '
                                     f'({len(dataset)} samples)', logger=logger)  # console and log file
        write_metrics_json(metrics, os.path.join(output_dir, 'metrics.json'))  # null, never a bare NaN
        logger.info('%s %.4f; results and metrics.json in %s', key, metrics[key], output_dir)
    cleanup()
    return 0


if __name__ == '__main__':
    exit_process(run_tool(main))
