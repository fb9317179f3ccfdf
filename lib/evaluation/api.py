"""The one evaluation entry point used by validation and tools/test.py, and the metrics table."""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Optional

from .coco_keypoints import DEFAULT_OKS_THR, DEFAULT_VIS_THR, evaluate_coco_predictions, write_json_atomic
from .mpii_pckh import evaluate_mpii_predictions

PRIMARY_KEY = {'coco': 'AP', 'mpii': 'Mean'}


def evaluate_predictions(dataset, preds: dict, output_dir: Optional[str], *, in_vis_thre: float = DEFAULT_VIS_THR,
                         oks_thre: float = DEFAULT_OKS_THR, soft_nms: bool = False, rescore: bool = True,
                         nms: bool = True) -> tuple['OrderedDict[str, float]', str]:
    """Score predictions on a data set -> (metrics, primary key).

    MPII (dataset.name == 'mpii'): PCKh against dataset.gt_mat, percent, primary 'Mean'.
    Any other name with an `ann_file` is COCO-format: rescoring (in_vis_thre), per-image OKS NMS
    (oks_thre, soft_nms) with dataset.metainfo.sigmas, COCOeval; fractions, primary 'AP'.
    preds: {'keypoints' (N,K,3) image px, 'center', 'scale', 'area' (N,), 'score' (N,), 'image_id' (N,),
    'index' (N,)} as produced by lib.core.function.run_inference. Zero rows (an empty detections file, no
    labelled person) give 0 for every metric with one logged warning. A non-finite prediction is a
    ValueError (naming the COCO results file when one is written), never a file with NaN in it.
    """
    if dataset.name == 'mpii':
        return evaluate_mpii_predictions(dataset, preds, output_dir), PRIMARY_KEY['mpii']
    if getattr(dataset, 'ann_file', None):
        metrics = evaluate_coco_predictions(dataset, preds, output_dir, in_vis_thre=in_vis_thre, oks_thre=oks_thre,
                                            soft_nms=soft_nms, rescore=rescore, nms=nms)
        return metrics, PRIMARY_KEY['coco']
    raise ValueError(f"cannot evaluate data set '{dataset.name}': it is not 'mpii' and has no COCO ann_file")


def write_metrics_json(metrics: 'OrderedDict[str, float]', path: str) -> str:
    """Write metrics as a JSON object; NaN (e.g. an MPII joint group never annotated) becomes null, so the
    file is valid JSON that any reader loads (no bare NaN token). Atomic: a temporary file, then rename."""
    clean = {name: (None if isinstance(v, float) and not math.isfinite(v) else v) for name, v in metrics.items()}
    return write_json_atomic(clean, path, indent=2)


def format_metrics_table(metrics: 'OrderedDict[str, float]', title: str) -> str:
    """A two-row markdown table: | title | names... | over | values... | (3 decimals, n/a for NaN)."""
    names = list(metrics)
    values = ['n/a' if math.isnan(v) else f'{v:.3f}' for v in metrics.values()]
    return '\n'.join([f"| Model | {' | '.join(names)} |",
                      '|---' * (len(names) + 1) + '|',
                      f"| {title} | {' | '.join(values)} |"])


def print_metrics_table(metrics: 'OrderedDict[str, float]', title: str,
                        logger: Optional[logging.Logger] = None) -> str:
    """Print (or log with `logger.info`) the markdown table of `format_metrics_table`; returns it."""
    table = format_metrics_table(metrics, title)
    for line in table.splitlines():
        logger.info(line) if logger is not None else print(line)
    return table
