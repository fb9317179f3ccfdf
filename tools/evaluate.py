"""Score a keypoint results file, from this repo or any other model, without running a network.

    python tools/evaluate.py coco --ann-file ANN.json --results RES.json [--out stats.json] [--rescore] [--oks-nms]
                                  [--drop-invalid]
    python tools/evaluate.py mpii --gt-mat gt_valid.mat --preds PREDS [--out pckh.json] [--one-based]

coco: RES.json is a standard COCO keypoint results list ({image_id, category_id, keypoints, score}). It is
scored as it is, like pycocotools itself. --rescore (score x mean joint score above 0.2) and --oks-nms
(per-image OKS NMS at 0.9) apply the official test-time steps that tools/test.py already applies before
writing its results; use them only for files that did not get them. --out writes the 10 COCO stats.
Only valid input is scored: an annotation of the keypoint category with a non-finite keypoint, area or
bbox is an error naming its id; so is a result (named by its index) that is malformed, has a non-numeric
or non-finite keypoint or score, another category_id than the ground truth's keypoint category, or an
image_id the ground truth does not have. --drop-invalid leaves such results out instead and counts them.
A summary line says how many results were scored and dropped (by reason); scores above 1 get a warning.

mpii: PREDS is a .json {"preds": N x 16 x 2}, or a .mat (variable 'preds') or .npy of that array: 0-based
pixels, one row per person of GT.mat, in annotation order. --one-based says the file holds 1-based
(MATLAB) coordinates; a .mat written by this repo says so itself (variable 'index_base'). --out writes
Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean (PCKh@0.5) and Mean@0.1, in percent. A non-finite
prediction, or a non-finite annotated joint or head box in GT.mat, is an error; a person whose head box
has zero size is not counted.

Bad input (missing file, malformed JSON, wrong shape, invalid values) ends with one error line naming the
file, exit status 2.
"""
import argparse
import json
import os
import sys

import _init_paths  # noqa: F401  (puts the repo root on sys.path)
import numpy as np

from lib.evaluation import coco_keypoints as ck
from lib.evaluation import mpii_pckh
from lib.evaluation.api import print_metrics_table, write_metrics_json


class InputError(Exception):
    """A problem with a user-supplied file; reported as one line without a traceback."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='dataset', required=True)
    coco = sub.add_parser('coco', help='COCO keypoint AP/AR of a results JSON (pycocotools)')
    coco.add_argument('--ann-file', required=True, help='COCO keypoint annotation file (ground truth)')
    coco.add_argument('--results', required=True, help='COCO keypoint results JSON list')
    coco.add_argument('--out', help='write the 10 stats to this JSON file')
    coco.add_argument('--rescore', action='store_true',
                      help=f'score = score x mean of joint scores above {ck.DEFAULT_VIS_THR} (official rescoring)')
    coco.add_argument('--oks-nms', action='store_true', help=f'per-image OKS NMS at {ck.DEFAULT_OKS_THR}')
    coco.add_argument('--vis-thr', type=float, default=ck.DEFAULT_VIS_THR, help='joint score threshold of --rescore')
    coco.add_argument('--oks-thr', type=float, default=ck.DEFAULT_OKS_THR, help='OKS threshold of --oks-nms')
    coco.add_argument('--metainfo', default='coco',
                      help='keypoint table in lib/dataset/metainfo.py whose OKS sigmas are used (default coco)')
    coco.add_argument('--drop-invalid', action='store_true',
                      help='leave out (and count) results that cannot be scored instead of stopping with an error')
    coco.add_argument('--verbose', action='store_true', help="show pycocotools' own output")
    mpii = sub.add_parser('mpii', help='MPII PCKh of a predictions array')
    mpii.add_argument('--gt-mat', required=True, help='gt_valid.mat-style ground truth with head boxes')
    mpii.add_argument('--preds', required=True, help='.json {"preds": N x 16 x 2}, .mat or .npy, 0-based pixels')
    mpii.add_argument('--out', help='write the PCKh values (percent) to this JSON file')
    mpii.add_argument('--one-based', action='store_true', help='PREDS holds 1-based (MATLAB) coordinates')
    return parser.parse_args(argv)


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise InputError(f'{path}: {what} not found')


def _load_json(path: str, what: str):
    _require_file(path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f'{path}: {what} is not valid JSON ({err})') from None


def _result_area(res: dict, index: int, path: str) -> float:
    """Area for OKS NMS: the result's 'area', else its 'bbox' w*h, else the extent of its keypoints."""
    try:
        if 'area' in res:
            area = float(res['area'])
        elif 'bbox' in res:
            area = float(res['bbox'][2]) * float(res['bbox'][3])
        else:
            kpts = np.asarray(res['keypoints'], dtype=np.float64).reshape(-1, 3)
            area = float(np.ptp(kpts[:, 0]) * np.ptp(kpts[:, 1]))
    except (TypeError, ValueError, IndexError, KeyError):
        area = float('nan')
    if not np.isfinite(area):
        raise InputError(f"{path}: entry {index} (image_id {res['image_id']!r}): its 'area' or 'bbox' "
                         f"({res.get('area', res.get('bbox'))!r}) is not a finite area, which --oks-nms needs")
    return area


def _areas(results: list, read: list, path: str) -> np.ndarray:
    """(N,) areas of the kept results for OKS NMS; an error names an entry by its index in the file."""
    index_in_file = {id(res): i for i, res in enumerate(read)}  # the kept results are the file's own dicts
    return np.asarray([_result_area(res, index_in_file[id(res)], path) for res in results], dtype=np.float64)


def evaluate_coco(args) -> 'tuple[dict[str, float], str]':
    """(the 10 stats, the summary line)."""
    ann = _load_json(args.ann_file, 'annotation file')
    try:
        coco_gt = ck.load_coco_gt(ann, args.verbose)
        cat_id, num_joints = ck.keypoint_category(coco_gt)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f'{args.ann_file}: not a COCO keypoint annotation file ({err})') from None
    try:
        ck.check_ground_truth(coco_gt, args.ann_file)
    except ValueError as err:
        raise InputError(str(err)) from None
    sigmas = _sigmas(args.metainfo, num_joints, args.ann_file)
    read = _load_json(args.results, 'results file')
    try:
        results, dropped = ck.check_results(read, num_joints, args.results, category_id=cat_id,
                                            image_ids=set(coco_gt.getImgIds()), drop_invalid=args.drop_invalid)
    except ValueError as err:
        hint = ' (--drop-invalid leaves such results out)' if isinstance(read, list) else ''
        raise InputError(f'{err}{hint}') from None
    _warn_scores_above_1(results, args.results)
    valid = len(results)
    if args.rescore or args.oks_nms:
        keypoints = np.asarray([r['keypoints'] for r in results], dtype=np.float64)
        preds = {'keypoints': keypoints.reshape(-1, num_joints, 3),
                 'score': np.asarray([r['score'] for r in results], dtype=np.float64),
                 'area': _areas(results, read, args.results) if args.oks_nms else np.zeros(len(results)),
                 'image_id': np.asarray([r['image_id'] for r in results], dtype=np.int64)}
        results = ck.make_coco_results(preds, sigmas, in_vis_thre=args.vis_thr, oks_thre=args.oks_thr,
                                       rescore=args.rescore, nms=args.oks_nms, category_id=cat_id)
    try:
        metrics = ck.coco_keypoint_eval(coco_gt, results, sigmas, args.verbose)
    except ValueError as err:
        raise InputError(f'{args.results}: {err}') from None
    summary = f'{args.results}: scored {len(results)} of {len(read)} results'
    if dropped:
        reasons = ', '.join(f'{n} {why}' for why, n in sorted(dropped.items()))
        summary += f'; dropped {sum(dropped.values())}: {reasons}'
    if args.oks_nms:
        summary += f'; OKS NMS removed {valid - len(results)}'
    return metrics, summary


def _warn_scores_above_1(results: list, path: str) -> None:
    """A warning line (not an error) for scores above 1: detector and pose scores are usually in [0, 1]."""
    high = [r['score'] for r in results if r['score'] > 1]
    if high:
        print(f'warning: {path}: {len(high)} of {len(results)} results have a score above 1 (max {max(high):g}); '
              f'scores are usually in [0, 1], so check the file was written as intended', file=sys.stderr)


def _sigmas(metainfo: str, num_joints: int, ann_file: str) -> np.ndarray:
    """OKS sigmas of the named keypoint table, checked against the annotation file's joint count."""
    from lib.dataset.metainfo import get_metainfo  # imported late: lib.dataset pulls in torch

    try:
        sigmas = get_metainfo(metainfo).sigmas
    except KeyError as err:
        raise InputError(str(err.args[0])) from None
    if len(sigmas) != num_joints:
        raise InputError(f"{ann_file}: {num_joints} keypoints, but metainfo '{metainfo}' has "
                         f'{len(sigmas)} sigmas; pass --metainfo NAME')
    return sigmas


def load_mpii_preds(path: str, one_based: bool) -> np.ndarray:
    """PREDS file -> (N,16,2) 0-based float array (shape checked later against the ground truth)."""
    _require_file(path, 'predictions file')
    ext = os.path.splitext(path)[1].lower()
    base = 1 if one_based else 0
    if ext == '.json':
        data = _load_json(path, 'predictions file')
        if not isinstance(data, dict) or 'preds' not in data:
            raise InputError(f'{path}: expected a JSON object with a "preds" array (N x 16 x 2)')
        raw = data['preds']
    elif ext == '.npy':
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise InputError(f'{path}: not a readable .npy array ({err})') from None
    elif ext == '.mat':
        from scipy.io import loadmat
        try:
            mat = loadmat(path)
        except Exception as err:  # scipy raises several types for a corrupt file
            raise InputError(f'{path}: not a readable .mat file ({err})') from None
        if 'preds' not in mat:
            raise InputError(f"{path}: variable 'preds' is missing")
        raw = mat['preds']
        if 'index_base' in mat and not one_based:
            base = int(np.asarray(mat['index_base']).reshape(-1)[0])
    else:
        raise InputError(f'{path}: unknown predictions format {ext!r} (use .json, .mat or .npy)')
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f'{path}: "preds" is not a rectangular N x 16 x 2 array of numbers') from None
    return arr - base


def evaluate_mpii(args) -> 'tuple[dict[str, float], str]':
    """(PCKh values, the summary line)."""
    try:
        gt = mpii_pckh.load_gt_mat(args.gt_mat)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None
    preds = load_mpii_preds(args.preds, args.one_based)
    try:
        preds = mpii_pckh.check_preds(preds, gt.num_people, source=args.preds)
    except ValueError as err:
        raise InputError(str(err)) from None
    bad = np.argwhere(~np.isfinite(preds).all(axis=-1))
    if len(bad):
        person, joint = (int(v) for v in bad[0])
        raise InputError(f'{args.preds}: person {person} joint {joint} ({mpii_pckh.MAT_JOINT_NAMES[joint]}) is '
                         f'{preds[person, joint].tolist()}, not finite ({len(bad)} such joints)')
    counted = mpii_pckh.countable(gt)
    summary = (f'{args.preds}: scored {int(counted.any(axis=1).sum())} of {gt.num_people} people '
               f'({int(counted.sum())} annotated joints)')
    return mpii_pckh.pckh_metrics(preds, gt), summary


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.dataset == 'coco':
            (metrics, summary), title = evaluate_coco(args), os.path.basename(args.results)
        else:
            (metrics, summary), title = evaluate_mpii(args), os.path.basename(args.preds)
        print_metrics_table(metrics, title)
        print(summary)
        if args.out:
            try:
                write_metrics_json(metrics, args.out)
            except OSError as err:
                raise InputError(f'{args.out}: cannot write the metrics file ({err.strerror or err})') from None
            print(f'wrote {args.out}')
    except InputError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
