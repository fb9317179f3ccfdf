"""Evaluation as pure functions, separate from the data sets.

* `coco_keypoints`: rescoring, per-image OKS NMS, results JSON, pycocotools COCOeval (10 stats).
* `mpii_pckh`: PCKh@0.5 per joint group and PCKh@0.1 against a gt_valid.mat-style file.
* `pck`: the heatmap accuracy monitored during training.
* `evaluate_predictions(dataset, preds, output_dir, ...)`: the entry point used by validation/test.
* `write_metrics_json(metrics, path)`: the metrics file, NaN written as null (no file holds a NaN token).

A per-sample normaliser of zero (MPII head size, the accuracy's factor) means the sample is not
counted, rather than counted as a miss (mmpose's rule).
"""
from .api import PRIMARY_KEY, evaluate_predictions, format_metrics_table, print_metrics_table, write_metrics_json
from .coco_keypoints import STAT_NAMES, coco_keypoint_eval, make_coco_results, rescore_instances
from .mpii_pckh import METRIC_NAMES as PCKH_NAMES, load_gt_mat, pckh_metrics
from .pck import accuracy

__all__ = ['evaluate_predictions', 'print_metrics_table', 'format_metrics_table', 'write_metrics_json',
           'PRIMARY_KEY', 'STAT_NAMES',
           'coco_keypoint_eval', 'make_coco_results', 'rescore_instances', 'PCKH_NAMES', 'load_gt_mat',
           'pckh_metrics', 'accuracy']
