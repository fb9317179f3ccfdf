"""Synthetic data set: determinism, valid COCO annotations, detections, and a lossless GT round trip."""
import filecmp
import json
import os

import numpy as np
import pytest

from lib.config import load_config
from lib.dataset import build_dataset
from lib.dataset.synthetic import DET_FILE, SyntheticConfig, make_synthetic_dataset, project, render_image
from lib.dataset.transforms import heatmap_to_image_coords


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    make_synthetic_dataset(root, seed=3, num_train=4, num_val=12)
    return root


def _load(root, split):
    with open(os.path.join(root, 'annotations', f'person_keypoints_{split}.json')) as f:
        return json.load(f)


def test_same_seed_same_files_other_seed_other_files(synthetic_root, tmp_path):
    again = str(tmp_path / 'again')
    make_synthetic_dataset(again, seed=3, num_train=4, num_val=12)
    for rel in ('annotations/person_keypoints_train2017.json', 'annotations/person_keypoints_val2017.json',
                DET_FILE, 'images/val2017/000001000000.jpg'):
        assert filecmp.cmp(os.path.join(synthetic_root, rel), os.path.join(again, rel), shallow=False), rel
    other = str(tmp_path / 'other')
    make_synthetic_dataset(other, seed=4, num_train=1, num_val=1)
    assert not filecmp.cmp(os.path.join(synthetic_root, 'images/train2017/000000000001.jpg'),
                           os.path.join(other, 'images/train2017/000000000001.jpg'), shallow=False)


def test_annotations_are_valid_coco(synthetic_root):
    data = _load(synthetic_root, 'val2017')
    images = {im['id']: im for im in data['images']}
    assert len(images) == 12 and data['categories'][0]['keypoints'][0] == 'nose'
    assert len(data['categories'][0]['skeleton']) == 19
    ids = [a['id'] for a in data['annotations']]
    assert len(ids) == len(set(ids))
    flags = []
    for ann in data['annotations']:
        im = images[ann['image_id']]
        k = np.array(ann['keypoints'], np.float64).reshape(17, 3)
        x, y, w, h = ann['bbox']
        assert ann['iscrowd'] == 0 and ann['category_id'] == 1
        assert ann['num_keypoints'] == int((k[:, 2] > 0).sum())
        assert ann['area'] == pytest.approx(0.55 * w * h, abs=0.01)  # on purpose, see the module docstring
        assert 0 <= x and 0 <= y and x + w <= im['width'] and y + h <= im['height']
        labelled = k[:, 2] > 0
        assert np.all(k[~labelled] == 0)
        assert np.all((k[labelled, 0] >= 0) & (k[labelled, 0] <= im['width'] - 1))
        assert np.all((k[labelled, 1] >= 0) & (k[labelled, 1] <= im['height'] - 1))
        flags += list(k[:, 2])
    assert {0, 1, 2} <= set(flags)  # visible, occluded and outside joints all occur
    assert 0.4 < np.mean(np.array(flags) == 2) < 0.85


def test_detections_file(synthetic_root):
    with open(os.path.join(synthetic_root, DET_FILE)) as f:
        dets = json.load(f)
    data = _load(synthetic_root, 'val2017')
    image_ids = {im['id'] for im in data['images']}
    assert all(d['image_id'] in image_ids and d['category_id'] == 1 and len(d['bbox']) == 4 for d in dets)
    assert all(0 < d['score'] <= 1 for d in dets)
    assert any(d['score'] < 0.5 for d in dets)  # false positives carry low scores
    cfg = load_config(None, ['DATASET.ROOT', synthetic_root, 'TEST.USE_GT_BBOX', 'False',
                             'TEST.COCO_BBOX_FILE', DET_FILE])
    assert len(build_dataset(cfg, is_train=False)) == len(dets)  # the COCO loader reads it unchanged


def test_projection_left_right_and_depth():
    pts = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, 0.1]])  # the person's left; a point in front
    uv, depth = project(pts, yaw=0.0, lean=0.0, pelvis_uv=np.array([100.0, 100.0]), height_px=100.0)
    np.testing.assert_allclose(uv, [[110, 100], [100, 100]], atol=1e-9)  # facing us: left is image-right
    np.testing.assert_allclose(depth, [0, 10], atol=1e-9)
    uv, depth = project(pts, yaw=np.pi, lean=0.0, pelvis_uv=np.array([100.0, 100.0]), height_px=100.0)
    np.testing.assert_allclose(uv[0], [90, 100], atol=1e-9)  # back turned: left is image-left
    assert depth[1] < 0


def test_render_image_knobs():
    rng = np.random.default_rng(0)
    img, people = render_image(rng, SyntheticConfig(image_size=(160, 128), people_per_image=(2, 2), clutter=0.0))
    assert img.shape == (128, 160, 3) and img.dtype == np.uint8
    assert len(people) <= 2 and all(p['keypoints'].shape == (17, 3) for p in people)


def test_ground_truth_through_crop_encode_decode_scores_ap_one(synthetic_root):
    """GT keypoints -> crop -> heatmap -> decode -> image -> COCOeval: the pipeline itself loses nothing."""
    from lib.evaluation.coco_keypoints import coco_keypoint_eval
    cfg = load_config(None, ['DATASET.ROOT', synthetic_root])  # 256x192 input
    ds = build_dataset(cfg, is_train=False, use_gt_bbox=True)
    results, errors = [], []
    for i in range(len(ds)):
        _, target, weight, meta = ds[i]
        coords, _ = ds.codec.decode(target.numpy()[None])
        xy = heatmap_to_image_coords(coords, meta['center'][None], meta['scale'][None], ds.heatmap_size)[0]
        vis = ds.db[i]['visible'] > 0
        errors.append(np.abs(xy - ds.db[i]['joints'])[vis & (weight.numpy()[:, 0] > 0)])
        kpts = np.concatenate([xy, np.ones((17, 1))], axis=1)
        results.append(dict(image_id=meta['image_id'], category_id=1, keypoints=kpts.reshape(-1).tolist(), score=1.0))
    # the MSRA centre rounding is the only loss: at most half a heatmap pixel = 2 crop px
    crop_px = np.concatenate([ds.db[i]['scale'][None] * 200 / ds.image_size for i in range(len(ds))]).max()
    assert np.concatenate(errors).max() <= 2 * crop_px + 1e-3
    stats = coco_keypoint_eval(ds.ann_file, results)
    assert stats['AP50'] == 1.0
    assert stats['AP'] >= 0.97  # AP over OKS 0.50:0.95


def test_visibility_flags_from_the_part_map():
    from lib.dataset.synthetic import HEAD, TORSO, _Person, _visibility
    uv = np.tile([[50.0, 50.0]], (17, 1))
    uv[9] = [10, 10]  # left wrist, on its forearm (part 5)
    uv[10] = [20, 10]  # right wrist, covered by someone else's part
    uv[15] = [-3, 10]  # left ankle, outside the image
    depth = np.zeros(17)
    depth[6] = -30  # right shoulder on the far side of the torso
    p = _Person(uv, depth, np.array([50.0, 40.0]), 5.0, 0.0, 100.0, {}, {})
    parts = np.zeros((64, 64), np.uint16)
    label0 = 12
    parts[50, 50] = label0 + TORSO
    parts[10, 10] = label0 + 5
    parts[10, 20] = 2 * label0 + 5  # the next person's forearm
    v = _visibility(p, parts, label0, 64, 64)
    assert v[9] == 2 and v[10] == 1 and v[15] == 0
    assert v[5] == 2 and v[6] == 1  # both shoulders on the torso pixel; only the near one is seen
    assert v[0] == 1  # the nose's pixel shows the torso, not the head
    parts[50, 50] = label0 + HEAD
    assert _visibility(p, parts, label0, 64, 64)[0] == 2
