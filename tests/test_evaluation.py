"""Evaluation: COCO keypoint AP against pycocotools itself, MPII PCKh known answers, heatmap accuracy."""
import json
import logging
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from lib.evaluation import (PCKH_NAMES, STAT_NAMES, accuracy, evaluate_predictions, format_metrics_table,
                            load_gt_mat, pckh_metrics)
from lib.evaluation import coco_keypoints as ck
from lib.evaluation import mpii_pckh


def coco_sigmas():
    from lib.dataset.metainfo import get_metainfo
    return get_metainfo('coco').sigmas


# ----------------------------------------------------------------------------------------------- COCO
def test_rescore_hand_computed():
    kpts = np.zeros((3, 4, 3))
    kpts[0, :, 2] = [0.9, 0.5, 0.1, 0.2]  # above 0.2: 0.9, 0.5 -> mean 0.7 (0.2 itself is not above)
    kpts[1, :, 2] = [0.1, 0.1, 0.2, 0.0]  # none above -> 0
    kpts[2, :, 2] = 1.0
    scores = ck.rescore_instances(kpts, np.array([0.5, 0.9, 0.8]), vis_thr=0.2)
    np.testing.assert_allclose(scores, [0.35, 0.0, 0.8])


def test_nms_is_per_image_and_results_format():
    pose = np.tile([[10.0, 20.0, 0.9]], (17, 1))
    preds = {'keypoints': np.stack([pose, pose, pose]), 'score': np.array([0.5, 1.0, 1.0]),
             'area': np.full(3, 1000.0), 'image_id': np.array([7, 7, 8])}
    results = ck.make_coco_results(preds, coco_sigmas())  # rescoring + OKS NMS, official thresholds
    # Image 7 keeps only its best copy (index 1); image 8's identical pose is not compared across images.
    assert [(r['image_id'], r['score']) for r in results] == [(7, pytest.approx(0.9)), (8, pytest.approx(0.9))]
    assert set(results[0]) == {'image_id', 'category_id', 'keypoints', 'score'}
    assert results[0]['category_id'] == 1 and len(results[0]['keypoints']) == 51
    assert all(type(v) is float for v in results[0]['keypoints'])  # plain JSON numbers
    raw = ck.make_coco_results(preds, coco_sigmas(), rescore=False, nms=False)
    assert [r['score'] for r in raw] == [0.5, 1.0, 1.0]


def gt_as_preds(ann_file):
    """The annotated persons of a COCO file as predictions (joint score = visibility flag, box score 1)."""
    with open(ann_file) as f:
        anns = [a for a in json.load(f)['annotations'] if a['num_keypoints'] > 0]
    return {'keypoints': np.array([a['keypoints'] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3),
            'score': np.ones(len(anns)), 'area': np.array([a['bbox'][2] * a['bbox'][3] for a in anns]),
            'image_id': np.array([a['image_id'] for a in anns]), 'index': np.arange(len(anns))}


def coco_standin(ann_file, metainfo=None, image_set='val2017'):
    """The attributes evaluate_predictions reads from a data set."""
    from lib.dataset.metainfo import get_metainfo
    return SimpleNamespace(name='coco', ann_file=ann_file, metainfo=metainfo or get_metainfo('coco'),
                           image_set=image_set)


def test_coco_tiny_ground_truth_scores_ap_1(coco_tiny, tmp_path):
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    metrics, primary = evaluate_predictions(coco_standin(ann), gt_as_preds(ann), str(tmp_path))
    assert primary == 'AP' and tuple(metrics) == STAT_NAMES
    assert all(v == pytest.approx(1.0) for v in metrics.values()), metrics
    with open(tmp_path / 'keypoints_val2017_results.json') as f:
        written = json.load(f)
    assert len(written) == 12 and {r['image_id'] for r in written} == {785, 40083, 196141, 197388}


def perturbed_results(ann_file, seed=0):
    """GT poses with Gaussian noise of a few pixels, random joint scores and random box scores."""
    preds = gt_as_preds(ann_file)
    rng = np.random.default_rng(seed)
    preds['keypoints'][..., :2] += rng.normal(0, 4.0, preds['keypoints'][..., :2].shape)
    preds['keypoints'][..., 2] = rng.uniform(0.05, 1.0, preds['keypoints'].shape[:2])
    preds['score'] = rng.uniform(0.2, 1.0, len(preds['score']))
    return preds


def pycocotools_stats(ann_file, results_file):
    """pycocotools used directly, as its own README shows, with its built-in COCO sigmas."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(ann_file)
    e = COCOeval(gt, gt.loadRes(results_file), iouType='keypoints')
    e.evaluate()
    e.accumulate()
    e.summarize()
    return e.stats


@pytest.mark.parametrize('rescore_nms', [False, True])
def test_coco_agrees_with_pycocotools_directly(coco_tiny, tmp_path, rescore_nms, capsys):
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    preds = perturbed_results(ann)
    metrics, _ = evaluate_predictions(coco_standin(ann), preds, str(tmp_path), rescore=rescore_nms, nms=rescore_nms)
    reference = pycocotools_stats(ann, str(tmp_path / 'keypoints_val2017_results.json'))
    np.testing.assert_allclose(list(metrics.values()), reference, rtol=0, atol=1e-12)
    assert 0.2 < metrics['AP'] < 0.99  # the noise really costs AP, so the comparison is not trivial


def test_custom_keypoint_set_uses_its_own_sigmas(tmp_path):
    """A 3-joint COCO-format set: pycocotools' built-in 17 sigmas would not even broadcast."""
    from lib.dataset.metainfo import KeypointMeta

    meta = KeypointMeta(name='tri3', joint_names=('a', 'b', 'c'), flip_pairs=(), upper_body_ids=(0,),
                        lower_body_ids=(1, 2), joint_weights=np.ones(3), sigmas=np.array([0.05, 0.08, 0.1]))
    gt = {'images': [{'id': 1, 'width': 200, 'height': 200}, {'id': 2, 'width': 200, 'height': 200}],
          'categories': [{'id': 3, 'name': 'tri', 'keypoints': ['a', 'b', 'c'], 'skeleton': []}],
          'annotations': [
              {'id': 1, 'image_id': 1, 'category_id': 3, 'iscrowd': 0, 'area': 5000.0, 'bbox': [10, 10, 100, 50],
               'num_keypoints': 3, 'keypoints': [20, 20, 2, 60, 30, 2, 100, 50, 1]},
              {'id': 2, 'image_id': 2, 'category_id': 3, 'iscrowd': 0, 'area': 12000.0, 'bbox': [0, 0, 120, 100],
               'num_keypoints': 2, 'keypoints': [10, 10, 2, 0, 0, 0, 110, 90, 2]}]}
    ann = tmp_path / 'tri.json'
    ann.write_text(json.dumps(gt))
    preds = gt_as_preds(str(ann))
    # No image_set: the results file is named after the annotation file's last '_' part.
    metrics, _ = evaluate_predictions(coco_standin(str(ann), meta, image_set=None), preds, str(tmp_path))
    assert metrics['AP'] == pytest.approx(1.0)
    written = json.loads((tmp_path / 'keypoints_tri_results.json').read_text())
    assert {r['category_id'] for r in written} == {3}  # the file's own keypoint category


def test_zero_predictions_give_zero_ap_with_a_warning(coco_tiny, caplog):
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    empty = {'keypoints': np.zeros((0, 17, 3)), 'score': np.zeros(0), 'area': np.zeros(0),
             'image_id': np.zeros(0, dtype=int)}
    with caplog.at_level(logging.WARNING):
        metrics, _ = evaluate_predictions(coco_standin(ann), empty, None)
    assert metrics['AP'] == 0.0 and metrics['AR'] == 0.0
    assert [r.getMessage() for r in caplog.records if 'no predictions' in r.getMessage()]


def test_coco_bad_inputs(coco_tiny):
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    preds = gt_as_preds(ann)
    preds['image_id'] = preds['image_id'] + 1  # images that are not in the annotation file
    with pytest.raises(ValueError, match='not in the annotation file'):
        evaluate_predictions(coco_standin(ann), preds, None)
    preds = gt_as_preds(ann)
    preds['score'] = preds['score'][:3]
    with pytest.raises(ValueError, match=r"preds\['score'\] has shape \(3,\)"):
        evaluate_predictions(coco_standin(ann), preds, None)
    with pytest.raises(ValueError, match=r"r.json: entry 1 \(image_id 1\): 'keypoints' has 6 values, expected 51"):
        ck.check_results([{'image_id': 1, 'category_id': 1, 'keypoints': [0.0] * 51, 'score': 1},
                          {'image_id': 1, 'category_id': 1, 'keypoints': [0.0] * 6, 'score': 1}], 17, 'r.json')
    with pytest.raises(ValueError, match=r"17 OKS sigmas given, but the annotation file has 3 keypoints"):
        gt = {'images': [{'id': 1}], 'annotations': [],
              'categories': [{'id': 1, 'name': 'x', 'keypoints': ['a', 'b', 'c']}]}
        ck.coco_keypoint_eval(ck.load_coco_gt(gt), [], coco_sigmas())


# ----------------------------------------------------------------------------------------------- MPII
@pytest.fixture
def mpii_gt(mpii_tiny):
    return load_gt_mat(os.path.join(mpii_tiny, 'annot', 'gt_valid_synthetic_headboxes.mat'))


def mpii_index(name):
    from lib.dataset.metainfo import get_metainfo
    return get_metainfo('mpii').joint_names.index(name)


def test_mpii_ground_truth_scores_100(mpii_gt):
    preds = mpii_gt.joints - 1.0  # 0-based, as predictions come
    np.testing.assert_array_equal(mpii_pckh.normalized_errors(preds, mpii_gt)[~mpii_gt.missing], 0.0)
    metrics = pckh_metrics(preds, mpii_gt)
    assert tuple(metrics) == PCKH_NAMES
    assert all(v == 100.0 for v in metrics.values()), metrics


def moved(mpii_gt, person, joint, factor):
    """0-based GT predictions with one joint moved by factor x that person's head size (along x)."""
    preds = mpii_gt.joints - 1.0
    preds[person, joint, 0] += factor * mpii_pckh.head_sizes(mpii_gt.headboxes)[person]
    return preds


# 66 annotated joints count towards Mean: 76 annotated minus 5 pelvis and 5 thorax.
ONE_MISS = 100.0 * 65 / 66


def test_pckh_threshold_is_inclusive_just_inside_and_outside(mpii_gt):
    wrist = mpii_index('right_wrist')
    inside = pckh_metrics(moved(mpii_gt, 0, wrist, 0.5 - 1e-9), mpii_gt)
    assert inside['Wrist'] == 100.0 and inside['Mean'] == 100.0
    assert inside['Mean@0.1'] == pytest.approx(ONE_MISS)
    outside = pckh_metrics(moved(mpii_gt, 0, wrist, 0.5 + 1e-9), mpii_gt)
    # Right wrist 4/5 = 80 %, left wrist 100 % -> the group reads 90.
    assert outside['Wrist'] == pytest.approx(90.0) and outside['Mean'] == pytest.approx(ONE_MISS)
    assert outside['Shoulder'] == 100.0


def test_mean_at_0_1_is_exactly_0_1_not_0_11(mpii_gt):
    # 0.105 head sizes: wrong at 0.1, but would pass HRNet's 0.11 (printed as Mean@0.1 there).
    metrics = pckh_metrics(moved(mpii_gt, 1, mpii_index('left_knee'), 0.105), mpii_gt)
    assert metrics['Mean'] == 100.0 and metrics['Mean@0.1'] == pytest.approx(ONE_MISS)


def test_head_group_is_upper_neck_and_head_top(mpii_gt):
    metrics = pckh_metrics(moved(mpii_gt, 2, mpii_index('head_top'), 0.6), mpii_gt)
    assert metrics['Head'] == pytest.approx((80.0 + 100.0) / 2)


def test_pelvis_thorax_and_missing_joints_do_not_count(mpii_gt):
    preds = moved(mpii_gt, 0, mpii_index('pelvis'), 5.0)
    preds[0, mpii_index('thorax')] += 1000.0
    assert mpii_gt.missing[2, mpii_index('right_ankle')]  # person 2 has no ankles annotated
    preds[2, mpii_index('right_ankle')] += 1000.0
    assert all(v == 100.0 for v in pckh_metrics(preds, mpii_gt).values())


def test_mpii_evaluate_predictions_reorders_by_index_and_writes_pred_mat(mpii_gt, mpii_tiny, tmp_path):
    n = mpii_gt.num_people
    perm = np.array([3, 0, 4, 1, 2])
    coords = (mpii_gt.joints - 1.0)[perm]
    preds = {'keypoints': np.concatenate([coords, np.ones((n, 16, 1))], axis=-1), 'index': perm,
             'score': np.ones(n), 'area': np.ones(n), 'image_id': np.arange(n)}
    ds = SimpleNamespace(name='mpii', gt_mat=os.path.join(mpii_tiny, 'annot', 'gt_valid_synthetic_headboxes.mat'))
    metrics, primary = evaluate_predictions(ds, preds, str(tmp_path))
    assert primary == 'Mean' and all(v == 100.0 for v in metrics.values())
    mat = loadmat(str(tmp_path / 'pred.mat'))
    np.testing.assert_allclose(mat['preds'], mpii_gt.joints)  # 1-based, annotation order, as HRNet writes it
    assert int(mat['index_base'].reshape(-1)[0]) == 1
    preds['index'] = np.array([0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"each of 0..4"):
        evaluate_predictions(ds, preds, None)
    # No ground truth (MPII test split): pred.mat is still written, then the error names the missing file.
    ds.gt_mat = str(tmp_path / 'gt_test.mat')
    preds['index'] = perm
    with pytest.raises(FileNotFoundError, match='gt_test.mat'):
        evaluate_predictions(ds, preds, str(tmp_path / 'test'))
    assert (tmp_path / 'test' / 'pred.mat').is_file()


def test_mpii_bad_inputs(mpii_gt, tmp_path):
    with pytest.raises(ValueError, match=r'predictions have shape \(4, 16, 2\), expected \(5, 16, 2\)'):
        pckh_metrics(np.zeros((4, 16, 2)), mpii_gt)
    bad = tmp_path / 'gt.mat'
    savemat(str(bad), {'pos_gt_src': np.zeros((16, 2, 3)), 'jnt_missing': np.zeros((16, 3))})
    with pytest.raises(ValueError, match=r"gt.mat: variable 'headboxes_src' is missing"):
        load_gt_mat(str(bad))
    savemat(str(bad), {'pos_gt_src': np.zeros((16, 2, 3)), 'jnt_missing': np.zeros((14, 3)),
                       'headboxes_src': np.zeros((2, 2, 3))})
    with pytest.raises(ValueError, match=r"'jnt_missing' has shape \(14, 3\), expected \(16, 3\)"):
        load_gt_mat(str(bad))
    with pytest.raises(FileNotFoundError, match='nope.mat'):
        load_gt_mat(str(tmp_path / 'nope.mat'))


# ----------------------------------------------------------------------------------------- accuracy
def peak_maps(points, h=64, w=48):
    """(1,K,H,W) heatmaps with a single 1 at each (x, y); None gives an all-zero (unlabelled) map."""
    maps = np.zeros((1, len(points), h, w), dtype=np.float32)
    for j, p in enumerate(points):
        if p is not None:
            maps[0, j, p[1], p[0]] = 1.0
    return maps


def test_accuracy_normalises_x_by_h_and_y_by_w_like_hrnet():
    # 64x48 maps (H=64, W=48): default factor [H, W] / 10 = [6.4, 4.8] applied to (x, y).
    target = peak_maps([(20, 30), (20, 30)])
    output = peak_maps([(23, 30), (20, 33)])  # 3 px along x, 3 px along y
    acc, avg, cnt, pred = accuracy(output, target)
    # x: 3 / 6.4 = 0.47 < 0.5 correct; y: 3 / 4.8 = 0.625 wrong.
    np.testing.assert_allclose(acc, [0.5, 1.0, 0.0])
    assert avg == 0.5 and cnt == 2
    np.testing.assert_array_equal(pred[0], [[23, 30], [20, 33]])
    # The axis-consistent factor [W, H] / 10 flips both verdicts.
    acc_wh, _, _, _ = accuracy(output, target, normalize=np.array([48, 64]) / 10)
    np.testing.assert_allclose(acc_wh, [0.5, 0.0, 1.0])


def test_accuracy_skips_unlabelled_and_border_targets_and_takes_tensors():
    torch = pytest.importorskip('torch')
    target = peak_maps([(20, 30), None, (1, 30)])  # joint 1 unlabelled; joint 2 peaks at x = 1 (not > 1)
    output = peak_maps([(20, 30), (5, 5), (1, 30)])
    acc, avg, cnt, _ = accuracy(torch.from_numpy(output), torch.from_numpy(target))
    np.testing.assert_allclose(acc, [1.0, 1.0, -1.0, -1.0])
    assert cnt == 1 and avg == 1.0
    with pytest.raises(ValueError, match='must both be'):
        accuracy(output, target[:, :2])


def test_accuracy_uses_the_codec_argmax_with_hrnet_origin_rule():
    """One argmax in the repo: accuracy's peaks are the codec's get_heatmap_maximum, except that a map with
    no positive value sits at (0, 0) (HRNet's get_max_preds) where the codec says -1 (no detection)."""
    from lib.codecs import get_heatmap_maximum
    from lib.evaluation import pck

    rng = np.random.default_rng(0)
    output = rng.normal(size=(3, 5, 16, 12))
    output[0, 1] = 0.0  # all zero: no positive maximum
    output[1, 2] = -np.abs(output[1, 2]) - 0.1  # all negative
    output[2, 3, 4, 5] = output[2, 3, 7, 2] = 50.0  # a tie: both take the first in row-major order, (5, 4)
    codec_xy, _ = get_heatmap_maximum(output)
    assert codec_xy[0, 1].tolist() == [-1, -1] and codec_xy[1, 2].tolist() == [-1, -1]
    *_, pred = accuracy(output, output)
    assert pred.dtype == np.float64
    np.testing.assert_array_equal(pred, np.where(codec_xy < 0, 0.0, codec_xy))
    assert pred[0, 1].tolist() == [0, 0] and pred[1, 2].tolist() == [0, 0] and pred[2, 3].tolist() == [5, 4]
    assert pck.get_heatmap_maximum is get_heatmap_maximum  # not a copy of it


def test_metrics_table():
    from collections import OrderedDict
    table = format_metrics_table(OrderedDict([('AP', 0.71234), ('AR', float('nan'))]), 'litehrnet_18')
    assert table.splitlines() == ['| Model | AP | AR |', '|---|---|---|', '| litehrnet_18 | 0.712 | n/a |']


def test_real_coco_dataset_object_feeds_evaluation(coco_tiny, tmp_path):
    """The data set built from a config exposes what evaluate_predictions reads (name, ann_file, metainfo, set)."""
    from lib.config import load_config
    from lib.dataset import build_dataset

    cfg = load_config(None, ['DATASET.ROOT', coco_tiny, 'DATASET.TEST_SET', 'val2017', 'TEST.USE_GT_BBOX', 'True'])
    dataset = build_dataset(cfg, is_train=False)
    metrics, primary = evaluate_predictions(dataset, gt_as_preds(dataset.ann_file), str(tmp_path))
    assert primary == 'AP' and metrics['AP'] == pytest.approx(1.0)
    assert (tmp_path / 'keypoints_val2017_results.json').is_file()


def test_real_mpii_dataset_object_feeds_evaluation(mpii_tiny, mpii_gt, tmp_path):
    from lib.config import load_config
    from lib.dataset import build_dataset

    cfg = load_config(None, ['DATASET.DATASET', 'mpii', 'DATASET.METAINFO', 'mpii', 'MODEL.NUM_JOINTS', '16',
                             'DATASET.ROOT', mpii_tiny, 'DATASET.TEST_SET', 'valid'])
    dataset = build_dataset(cfg, is_train=False)
    # mpii_tiny has no real head boxes: point the data set at the synthetic-head-box file (see data/README).
    dataset.gt_mat = os.path.join(mpii_tiny, 'annot', 'gt_valid_synthetic_headboxes.mat')
    n = mpii_gt.num_people
    preds = {'keypoints': np.concatenate([mpii_gt.joints - 1.0, np.ones((n, 16, 1))], axis=-1),
             'index': np.arange(n), 'score': np.ones(n), 'area': np.ones(n), 'image_id': np.arange(n)}
    metrics, primary = evaluate_predictions(dataset, preds, str(tmp_path))
    assert primary == 'Mean' and metrics['Mean'] == 100.0 and len(dataset) == n


# ------------------------------------------------------------------------ invalid input, nothing silently wrong
def test_results_json_is_never_written_with_nan(coco_tiny, tmp_path):
    """A diverged model's NaN keypoint is an error naming the results file and the result, not `NaN` tokens."""
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    preds = gt_as_preds(ann)
    preds['keypoints'][4, 2, 1] = np.nan
    path = tmp_path / 'keypoints_val2017_results.json'
    with pytest.raises(ValueError, match=rf'^{re.escape(str(path))}: result \d+ \(image_id \d+\) has a non-finite'):
        evaluate_predictions(coco_standin(ann), preds, str(tmp_path), rescore=False, nms=False)
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary copy
    with pytest.raises(ValueError, match=r"entry 4 \(image_id \d+\): keypoints value 7 \(joint 2 y\) is nan"):
        evaluate_predictions(coco_standin(ann), preds, None, rescore=False, nms=False)  # not scored either
    results = [{'image_id': 1, 'category_id': 1, 'keypoints': [0.0] * 51, 'score': float('inf')}]
    with pytest.raises(ValueError, match=r'r\.json: result 0 \(image_id 1\) has a non-finite'):
        ck.write_results_json(results, str(tmp_path / 'r.json'))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('with_output_dir', [False, True])
def test_zero_row_preds_with_every_key_score_zero_with_one_warning(coco_tiny, tmp_path, caplog, with_output_dir):
    """What run_inference returns for an empty detections file: every key, zero rows."""
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    empty = {'keypoints': np.zeros((0, 17, 3)), 'center': np.zeros((0, 2)), 'scale': np.zeros((0, 2)),
             'area': np.zeros(0), 'score': np.zeros(0), 'image_id': np.zeros(0, dtype=np.int64),
             'index': np.zeros(0, dtype=np.int64)}
    with caplog.at_level(logging.WARNING):
        metrics, primary = evaluate_predictions(coco_standin(ann), empty, str(tmp_path) if with_output_dir else None)
    assert primary == 'AP' and tuple(metrics) == STAT_NAMES and all(v == 0.0 for v in metrics.values())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'no predictions' in warnings[0].getMessage()
    if with_output_dir:  # the (empty) results file is still there: the run happened
        assert json.loads((tmp_path / 'keypoints_val2017_results.json').read_text()) == []


def test_mpii_zero_row_preds_score_zero_with_one_warning(mpii_tiny, caplog):
    empty = {'keypoints': np.zeros((0, 16, 3)), 'center': np.zeros((0, 2)), 'scale': np.zeros((0, 2)),
             'area': np.zeros(0), 'score': np.zeros(0), 'image_id': np.zeros(0, dtype=np.int64),
             'index': np.zeros(0, dtype=np.int64)}
    ds = SimpleNamespace(name='mpii', gt_mat=os.path.join(mpii_tiny, 'annot', 'gt_valid_synthetic_headboxes.mat'))
    with caplog.at_level(logging.WARNING):
        metrics, primary = evaluate_predictions(ds, empty, None)
    assert primary == 'Mean' and tuple(metrics) == PCKH_NAMES and all(v == 0.0 for v in metrics.values())
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_ground_truth_with_nan_keypoints_is_an_error(coco_tiny, tmp_path):
    """pycocotools scores a NaN ground-truth joint as a match (AP 1.000); we refuse it, naming the annotation."""
    ann = os.path.join(coco_tiny, 'annotations', 'person_keypoints_val2017.json')
    with open(ann) as f:
        gt = json.load(f)
    victim = next(a for a in gt['annotations'] if a['num_keypoints'] > 0)
    victim['keypoints'][3] = float('nan')
    bad = tmp_path / 'person_keypoints_val2017.json'
    bad.write_text(json.dumps(gt))  # json writes the bare NaN token, as a careless converter would
    with pytest.raises(ValueError, match=rf"^{re.escape(str(bad))}: annotation id {victim['id']} "
                                         rf"\(image_id {victim['image_id']}\): keypoints value 3 \(joint 1 x\) is nan"):
        evaluate_predictions(coco_standin(str(bad)), gt_as_preds(ann), None)


def test_check_results_reasons_and_drop_invalid():
    good = {'image_id': 1, 'category_id': 1, 'keypoints': [1.0] * 51, 'score': 0.5}
    bad = [dict(good, keypoints=[1.0] * 50 + [float('nan')]), dict(good, score='0.9'), dict(good, score=float('inf')),
           dict(good, category_id=2), dict(good, image_id=9), dict(good, keypoints=[1.0] * 50 + ['x']), [1, 2],
           dict(good, score=True)]
    kept, dropped = ck.check_results([good] + bad + [good], 17, 'r.json', category_id=1, image_ids={1},
                                     drop_invalid=True)
    assert kept == [good, good]
    assert dropped == {'non-finite keypoints': 1, 'non-numeric score': 2, 'non-finite score': 1,
                       'wrong category_id': 1, 'unknown image_id': 1, 'non-numeric keypoints': 1, 'malformed': 1}
    with pytest.raises(ValueError, match=r"^r\.json: entry 1 \(image_id 1\): category_id is 2, but the ground "
                                         r"truth's keypoint category is 1$"):
        ck.check_results([good, dict(good, category_id=2)], 17, 'r.json', category_id=1)


def test_pckh_person_with_zero_head_size_is_not_counted(mpii_gt, caplog):
    """mmpose's rule: no normaliser, no count -- not a miss for each of that person's joints."""
    boxes = mpii_gt.headboxes.copy()
    boxes[1, 1] = boxes[1, 0]  # person 1: a head box of zero size
    gt = mpii_pckh.MpiiGroundTruth(mpii_gt.joints, mpii_gt.missing, boxes)
    preds = mpii_gt.joints - 1.0
    preds[1] += 1000.0  # every joint of person 1 far off: would be 14 misses
    with caplog.at_level(logging.WARNING):
        metrics = pckh_metrics(preds, gt)
    assert all(v == 100.0 for v in metrics.values()), metrics
    assert '1 of 5 people have a zero head size' in caplog.text
    assert np.isnan(mpii_pckh.normalized_errors(preds, gt)[1]).all()
    preds[0, mpii_index('right_wrist'), 0] += 1000.0  # the other people still count
    assert pckh_metrics(preds, gt)['Wrist'] < 100.0


def test_mpii_ground_truth_with_nan_is_an_error(mpii_gt, tmp_path):
    pos = np.transpose(mpii_gt.joints, (1, 2, 0)).copy()
    pos[3, 0, 2] = np.nan  # person 2, joint 3 (left hip, annotated)
    assert not mpii_gt.missing[2, 3]
    bad = tmp_path / 'gt.mat'
    savemat(str(bad), {'pos_gt_src': pos, 'jnt_missing': mpii_gt.missing.T.astype(float),
                       'headboxes_src': np.transpose(mpii_gt.headboxes, (1, 2, 0))})
    with pytest.raises(ValueError, match=r"gt\.mat: person 2 \(0-based\): an annotated joint in 'pos_gt_src' is not "
                                         r"finite"):
        load_gt_mat(str(bad))


def test_accuracy_sample_with_zero_normaliser_is_not_counted():
    target = np.concatenate([peak_maps([(20, 30), (20, 30)])] * 2)
    output = np.concatenate([peak_maps([(20, 30), (20, 30)]), peak_maps([(40, 5), (40, 5)])])
    normalize = np.array([[6.4, 4.8], [0.0, 4.8]])  # sample 1 has no x normaliser
    with np.errstate(all='raise'):  # and no division by zero happens
        acc, avg, cnt, _ = accuracy(output, target, normalize=normalize)
    np.testing.assert_allclose(acc, [1.0, 1.0, 1.0])  # sample 1's misses are not counted
    assert avg == 1.0 and cnt == 2
    acc, avg, cnt, _ = accuracy(output, target, normalize=np.zeros(2))
    np.testing.assert_allclose(acc, [0.0, -1.0, -1.0])
    assert cnt == 0 and avg == 0.0


def test_metrics_json_has_null_not_nan(tmp_path):
    from collections import OrderedDict
    from lib.evaluation import write_metrics_json
    path = write_metrics_json(OrderedDict([('Head', 97.5), ('Ankle', float('nan')), ('Mean', float('inf'))]),
                              str(tmp_path / 'sub' / 'metrics.json'))
    text = open(path).read()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} token')) == {'Head': 97.5, 'Ankle': None,
                                                                                    'Mean': None}
    assert os.listdir(tmp_path / 'sub') == ['metrics.json']


# ------------------------------------------------------------------------------- accuracy on the device
def assert_same_accuracy(output, target, **kwargs):
    """accuracy_on_device gives accuracy's numbers bit for bit: per-joint and mean accuracy, count, peaks."""
    import torch
    from lib.evaluation.pck import accuracy_on_device
    acc, avg, cnt, pred = accuracy(output, target, **kwargs)
    if 'normalize' in kwargs:
        kwargs['normalize'] = torch.as_tensor(kwargs['normalize'])
    d_acc, d_avg, d_cnt, d_pred = accuracy_on_device(torch.as_tensor(output), torch.as_tensor(target), **kwargs)
    assert d_acc.dtype == d_avg.dtype == d_pred.dtype == torch.float64 and d_cnt.dtype == torch.int64
    np.testing.assert_array_equal(d_acc.numpy(), acc)  # exact, not allclose
    assert d_avg.item() == avg and d_cnt.item() == cnt
    np.testing.assert_array_equal(d_pred.numpy(), pred)


def test_accuracy_on_device_equals_numpy_on_random_heatmaps():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, k, h, w = rng.integers(1, 9), rng.integers(1, 18), rng.integers(3, 24), rng.integers(3, 24)
        target = rng.normal(size=(n, k, h, w)).astype(np.float32)
        target[rng.random((n, k)) < 0.2] = 0.0  # unlabelled joints
        output = target + rng.normal(scale=rng.choice([0.1, 1.0, 3.0]), size=target.shape).astype(np.float32)
        thr = float(rng.choice([0.5, 0.2, 1.0]))
        assert_same_accuracy(output, target, thr=thr)
        if trial % 4 == 0:  # a per-sample normaliser, some samples with none
            normalize = rng.uniform(0.5, 5.0, size=(n, 2))
            normalize[rng.random(n) < 0.3, rng.integers(0, 2)] = 0.0
            assert_same_accuracy(output, target, thr=thr, normalize=normalize)


def test_accuracy_on_device_equals_numpy_on_edge_cases():
    rng = np.random.default_rng(1)
    zeros = np.zeros((2, 3, 8, 6), np.float32)
    assert_same_accuracy(zeros, zeros)  # nothing counted: avg 0, cnt 0
    negative = -np.abs(rng.normal(size=(2, 3, 8, 6))) - 0.1
    assert_same_accuracy(negative, negative)  # no positive maximum: HRNet's (0, 0)
    border = peak_maps([(1, 30), (20, 1), (0, 0), (47, 63)])  # x or y not > 1 is not counted
    assert_same_accuracy(peak_maps([(2, 30), (20, 2), (5, 5), (47, 63)]), border)
    tie = rng.normal(size=(1, 2, 16, 12))
    tie[0, 0, 4, 5] = tie[0, 0, 7, 2] = 50.0  # the first maximum in row-major order
    assert_same_accuracy(tie, np.roll(tie, 3, axis=-1))
    with_nan = rng.normal(size=(1, 2, 16, 12))
    with_nan[0, 1, 3, 3] = with_nan[0, 1, 9, 9] = np.nan  # both argmaxes take the first NaN
    assert_same_accuracy(with_nan, rng.normal(size=(1, 2, 16, 12)))
    # exactly on the threshold: 3.2 / 6.4 == 0.5 is not < 0.5
    target, output = peak_maps([(20, 30)]), peak_maps([(23, 30)])
    assert_same_accuracy(output, target, normalize=np.array([6.0, 4.8]))
    assert_same_accuracy(output, target, normalize=np.zeros(2))
    # half precision (AMP) outputs: the same argmax as their float64 copy
    import torch
    from lib.evaluation.pck import accuracy_on_device
    half = torch.randn(2, 5, 16, 12).half()
    np.testing.assert_array_equal(accuracy_on_device(half, half.flip(-1))[0].numpy(),
                                  accuracy(half.double(), half.flip(-1).double())[0])
    with pytest.raises(ValueError, match='must both be'):
        accuracy_on_device(half, half[:, :2])
