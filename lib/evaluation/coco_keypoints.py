"""COCO keypoint evaluation as pure functions: rescoring, per-image OKS NMS, results JSON, COCOeval.

The steps and thresholds are those of HRNet's `COCODataset.evaluate` (and mmpose 0.x, which produced
the published Lite-HRNet numbers): each pose's score becomes box score x mean of its joint scores
above `in_vis_thre` (0.2), poses of one image go through OKS NMS at `oks_thre` (0.9), the survivors
are written in the standard results format and scored by pycocotools with the data set's OKS sigmas.

Only valid input is scored: `check_ground_truth` refuses annotations with non-finite keypoints, and
`check_results` refuses (or drops, counting why) results that are malformed, non-finite, of another
category or of an image the ground truth does not have. A results file is never written with NaN or
inf in it (`write_results_json`), and no results at all score 0 everywhere with one logged warning.

Shapes: N poses, K joints. Keypoints are (N,K,3) = x, y, score in image pixels.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections import Counter, OrderedDict
from typing import Collection, Iterable, Optional, Sequence, Union

import numpy as np

from lib.nms import oks_nms, soft_oks_nms

logger = logging.getLogger(__name__)

# pycocotools' COCOeval.stats order for iouType='keypoints', with our names.
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
# The official test-time thresholds (HRNet TEST.IN_VIS_THRE / TEST.OKS_THRE).
DEFAULT_VIS_THR = 0.2
DEFAULT_OKS_THR = 0.9


def rescore_instances(keypoints: np.ndarray, box_scores: np.ndarray, vis_thr: float = DEFAULT_VIS_THR) -> np.ndarray:
    """Pose scores (N,) = box score x mean of the joint scores above vis_thr (0 when none is above).

    keypoints: (N,K,3) with joint scores in [..., 2]; box_scores: (N,).
    """
    joint_scores = np.asarray(keypoints, dtype=np.float64)[..., 2]
    above = joint_scores > vis_thr
    count = above.sum(axis=1)
    mean = np.where(count > 0, np.where(above, joint_scores, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean


def oks_nms_per_image(instances: Sequence[dict], sigmas: np.ndarray, oks_thr: float = DEFAULT_OKS_THR,
                      soft: bool = False) -> list[dict]:
    """OKS NMS within each image. instances: dicts with 'image_id', 'keypoints' (K,3), 'area', 'score'.

    Returns the kept instances, grouped by image in first-seen image order, best score first.
    """
    by_image: dict[int, list[dict]] = OrderedDict()
    for inst in instances:
        by_image.setdefault(int(inst['image_id']), []).append(inst)
    kept = []
    for img_instances in by_image.values():
        keep = (soft_oks_nms if soft else oks_nms)(img_instances, oks_thr, sigmas)
        kept.extend(img_instances[i] for i in keep)
    return kept


def to_coco_results(instances: Iterable[dict], category_id: int = 1) -> list[dict]:
    """Standard COCO keypoint results: {'image_id', 'category_id', 'keypoints' [x,y,s]*K, 'score'}."""
    return [{'image_id': int(inst['image_id']),
             'category_id': int(category_id),
             'keypoints': [float(v) for v in np.asarray(inst['keypoints'], dtype=np.float64).reshape(-1)],
             'score': float(inst['score'])} for inst in instances]


def make_coco_results(preds: dict, sigmas: np.ndarray, *, in_vis_thre: float = DEFAULT_VIS_THR,
                      oks_thre: float = DEFAULT_OKS_THR, soft_nms: bool = False, rescore: bool = True,
                      nms: bool = True, category_id: int = 1) -> list[dict]:
    """Predictions (the contract's preds dict) -> results list, after optional rescoring and OKS NMS.

    preds needs 'keypoints' (N,K,3) image px, 'score' (N,) box scores, 'area' (N,) box areas (used by
    OKS NMS) and 'image_id' (N,).
    """
    keypoints = np.asarray(preds['keypoints'], dtype=np.float64)
    n = keypoints.shape[0]
    for key in ('score', 'area', 'image_id'):
        if np.asarray(preds[key]).shape != (n,):
            raise ValueError(f"preds['{key}'] has shape {np.asarray(preds[key]).shape}, expected ({n},) "
                             f"like preds['keypoints'] {keypoints.shape}")
    box_scores = np.asarray(preds['score'], dtype=np.float64)
    scores = rescore_instances(keypoints, box_scores, in_vis_thre) if rescore else box_scores
    instances = [{'image_id': int(img), 'keypoints': kpts, 'area': float(area), 'score': float(score)}
                 for img, kpts, area, score in zip(preds['image_id'], keypoints, preds['area'], scores)]
    if nms:
        instances = oks_nms_per_image(instances, sigmas, oks_thre, soft=soft_nms)
    return to_coco_results(instances, category_id)


def write_results_json(results: list[dict], path: str) -> str:
    """Write the results list atomically (a temporary file, then rename) and return the path.

    A result with a non-finite keypoint or score (a diverged model) raises ValueError naming the file
    and the result, and nothing is written: JSON has no NaN, and bare `NaN` tokens would make other
    readers fail or, worse, score them.
    """
    for i, res in enumerate(results):
        values = np.asarray(res['keypoints'], dtype=np.float64)
        if not (np.isfinite(values).all() and math.isfinite(res['score'])):
            raise ValueError(f"{path}: result {i} (image_id {res['image_id']}) has a non-finite keypoint or score "
                             f"(NaN or inf: did the model diverge?); the results file was not written")
    return write_json_atomic(results, path)


def write_json_atomic(obj, path: str, indent: int | None = None) -> str:
    """Write `obj` as JSON (no NaN tokens: allow_nan=False) through a temporary file and a rename, so a
    reader never sees half a file; an OSError names `path`, not the temporary file. Returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent, allow_nan=False)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_coco_gt(ann_file: Union[str, dict], verbose: bool = False):
    """pycocotools COCO object for an annotation file path, or its already parsed dict (quiet unless verbose)."""
    from pycocotools.coco import COCO

    if isinstance(ann_file, dict):
        missing = [k for k in ('images', 'annotations', 'categories') if k not in ann_file]
        if missing:
            raise ValueError(f'COCO annotations lack {missing}')
        coco = COCO()
        coco.dataset = ann_file
        with _maybe_quiet(verbose):
            coco.createIndex()
        return coco
    with _maybe_quiet(verbose):
        return COCO(ann_file)


def keypoint_category(coco_gt) -> tuple[int, int]:
    """(category id, K) of the one keypoint category in the ground truth (COCO: person, 17)."""
    cats = [c for c in coco_gt.loadCats(coco_gt.getCatIds()) if c.get('keypoints')]
    if len(cats) != 1:
        raise ValueError(f'expected exactly one category with keypoints in the annotation file, found '
                         f'{[c.get("name") for c in cats]}')
    return int(cats[0]['id']), len(cats[0]['keypoints'])


def check_ground_truth(coco_gt, source: str = 'annotations') -> None:
    """Raise ValueError naming the annotation id when an annotation of the keypoint category has keypoints
    that are not 3K finite numbers, or a non-finite 'area' or 'bbox' (pycocotools would score a NaN joint
    as a perfect match: AP 1.0)."""
    cat_id, num_joints = keypoint_category(coco_gt)
    for ann in coco_gt.dataset.get('annotations', []):
        if ann.get('category_id') != cat_id:
            continue
        where = f"{source}: annotation id {ann.get('id')} (image_id {ann.get('image_id')})"
        kpts = ann.get('keypoints')
        if not isinstance(kpts, list) or len(kpts) != 3 * num_joints:
            length = len(kpts) if isinstance(kpts, list) else type(kpts).__name__
            raise ValueError(f"{where}: 'keypoints' has {length} values, expected {3 * num_joints}")
        problem = _numbers_problem(kpts, 'keypoints')
        for field in ('area', 'bbox'):
            if problem is None and field in ann:
                value = ann[field]
                problem = _numbers_problem(value if isinstance(value, list) else [value], field)
        if problem is not None:
            raise ValueError(f'{where}: {problem[1]}')


def _numbers_problem(values: list, field: str) -> Optional[tuple[str, str]]:
    """(reason, detail) when `values` holds something that is not a finite number, else None."""
    for j, v in enumerate(values):
        name = field if len(values) == 1 else f'{field} value {j}'
        if field == 'keypoints':
            name += f' (joint {j // 3} {"xy"[j % 3] if j % 3 < 2 else "score"})'
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f'non-numeric {field}', f'{name} is {v!r}, not a number'
        if not math.isfinite(v):
            return f'non-finite {field}', f'{name} is {v}'
    return None


def result_problem(res, num_joints: int, category_id: Optional[int] = None,
                   image_ids: Optional[Collection] = None) -> Optional[tuple[str, str]]:
    """Why one result cannot be scored, as (reason, detail), or None when it can.

    reason is one of: 'malformed' (not an object, a field missing, a keypoint list of the wrong length),
    'non-numeric keypoints', 'non-finite keypoints', 'non-numeric score', 'non-finite score',
    'wrong category_id' (not `category_id`), 'unknown image_id' (not in `image_ids`).
    """
    if not isinstance(res, dict):
        return 'malformed', 'is not an object'
    missing = [k for k in ('image_id', 'category_id', 'keypoints', 'score') if k not in res]
    if missing:
        return 'malformed', f'has no {missing}'
    kpts = res['keypoints']
    if not isinstance(kpts, list) or len(kpts) != 3 * num_joints:
        length = len(kpts) if isinstance(kpts, list) else type(kpts).__name__
        return 'malformed', f"'keypoints' has {length} values, expected {3 * num_joints} ({num_joints} joints x 3)"
    problem = _numbers_problem(kpts, 'keypoints') or _numbers_problem([res['score']], 'score')
    if problem is not None:
        return problem
    if category_id is not None and res['category_id'] != category_id:
        return 'wrong category_id', (f"category_id is {res['category_id']!r}, but the ground truth's keypoint "
                                     f'category is {category_id}')
    if image_ids is not None:
        try:
            known = res['image_id'] in image_ids
        except TypeError:  # unhashable
            return 'malformed', f"image_id {res['image_id']!r} is not an id"
        if not known:
            return 'unknown image_id', f"image_id {res['image_id']!r} is not in the annotation file"
    return None


def check_results(results: list, num_joints: int, source: str = 'results', *, category_id: Optional[int] = None,
                  image_ids: Optional[Collection] = None, drop_invalid: bool = False) -> tuple[list, Counter]:
    """(the results that can be scored, Counter of dropped reasons) -- see `result_problem`.

    Without drop_invalid the first invalid result raises ValueError naming `source` and its index;
    with it, every invalid result is left out and counted by reason. category_id / image_ids: the
    ground truth's keypoint category and image ids (None: not checked).
    """
    if not isinstance(results, list):
        raise ValueError(f'{source}: expected a JSON list of results, got {type(results).__name__}')
    kept, dropped = [], Counter()
    for i, res in enumerate(results):
        problem = result_problem(res, num_joints, category_id, image_ids)
        if problem is None:
            kept.append(res)
        elif drop_invalid:
            dropped[problem[0]] += 1
        else:
            image = f" (image_id {res['image_id']!r})" if isinstance(res, dict) and 'image_id' in res else ''
            raise ValueError(f'{source}: entry {i}{image}: {problem[1]}')
    return kept, dropped


def coco_keypoint_eval(coco_gt, results: list[dict], sigmas: Optional[np.ndarray] = None,
                       verbose: bool = False) -> 'OrderedDict[str, float]':
    """Run pycocotools COCOeval(iouType='keypoints') and return the 10 stats (fractions, AP first).

    coco_gt: a pycocotools COCO object or an annotation file path. sigmas: (K,) OKS constants of the
    keypoint set (None = pycocotools' COCO-17 values). Every result must pass `check_results` (the
    ground truth's category and images, finite numbers): ValueError naming the first one that does not.
    No results gives 0 for every stat (AP and AR of nothing), with one logged warning; COCOeval is not
    run (it would say -1, "undefined", where the ground truth has no person either).
    """
    from pycocotools.cocoeval import COCOeval

    if isinstance(coco_gt, (str, os.PathLike)):
        coco_gt = load_coco_gt(str(coco_gt), verbose)
    cat_id, num_joints = keypoint_category(coco_gt)
    if sigmas is not None and len(sigmas) != num_joints:
        raise ValueError(f'{len(sigmas)} OKS sigmas given, but the annotation file has {num_joints} keypoints')
    check_results(results, num_joints, category_id=cat_id, image_ids=set(coco_gt.getImgIds()))
    if not results:
        logger.warning('COCO evaluation: no predictions to score (an empty detections file, or no labelled '
                       'person); every AP/AR is 0')
        return OrderedDict((name, 0.0) for name in STAT_NAMES)
    with _maybe_quiet(verbose):
        # loadRes adds 'area', 'bbox' and 'id' to each result; give it copies.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        coco_eval = COCOeval(coco_gt, coco_dt, iouType='keypoints')
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return OrderedDict((name, float(v)) for name, v in zip(STAT_NAMES, coco_eval.stats))


@contextlib.contextmanager
def _maybe_quiet(verbose: bool):
    """Silence pycocotools' prints unless verbose (it writes progress and the summary to stdout)."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def results_set_name(dataset) -> str:
    """The set name in `keypoints_<set>_results.json`: dataset.image_set, else the annotation file's suffix."""
    name = getattr(dataset, 'image_set', None)
    if name:
        return str(name)
    stem = os.path.splitext(os.path.basename(dataset.ann_file))[0]
    return stem.split('_')[-1]  # person_keypoints_val2017 -> val2017


def evaluate_coco_predictions(dataset, preds: dict, output_dir: Optional[str], *,
                              in_vis_thre: float = DEFAULT_VIS_THR, oks_thre: float = DEFAULT_OKS_THR,
                              soft_nms: bool = False, rescore: bool = True, nms: bool = True,
                              verbose: bool = False) -> 'OrderedDict[str, float]':
    """Rescoring + OKS NMS + results JSON + COCOeval for a COCO-format data set.

    Reads only dataset.ann_file, dataset.metainfo.sigmas and the set name. Writes
    output_dir/keypoints_<set>_results.json when output_dir is given (`[]` for zero predictions, which
    score 0 with a warning; ValueError naming the file for a non-finite prediction).
    """
    sigmas = np.asarray(dataset.metainfo.sigmas, dtype=np.float64)
    coco_gt = load_coco_gt(dataset.ann_file, verbose)
    check_ground_truth(coco_gt, dataset.ann_file)
    cat_id, _ = keypoint_category(coco_gt)
    results = make_coco_results(preds, sigmas, in_vis_thre=in_vis_thre, oks_thre=oks_thre, soft_nms=soft_nms,
                                rescore=rescore, nms=nms, category_id=cat_id)
    if output_dir:
        name = f'keypoints_{results_set_name(dataset)}_results.json'
        path = write_results_json(results, os.path.join(output_dir, name))
        logger.info('wrote %d keypoint results to %s', len(results), path)
    return coco_keypoint_eval(coco_gt, results, sigmas, verbose)


def load_results_json(path: str) -> list:
    """The results list of a JSON file; ValueError naming the file when it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err})') from None

