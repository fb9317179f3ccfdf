"""Datasets on the real tiny COCO/MPII fixtures, a custom 5-joint keypoint set, bad input, reproducibility."""
import json
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lib.config import load_config
from lib.dataset import ImageError, build_dataset
from lib.dataset.metainfo import COCO, MPII, KeypointMeta, get_metainfo, register_metainfo
from lib.dataset.transforms import affine_transform_points, get_affine_transform

COCO_YAML = 'experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml'
MPII_YAML = 'experiments/mpii/lite_hrnet/lite_hrnet_18_256x256.yaml'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def coco_cfg(root, *opts):
    return load_config(os.path.join(REPO, COCO_YAML),
                       ['DATASET.ROOT', root, 'DATASET.TRAIN_SET', 'val2017', *opts])


# ---------------------------------------------------------------------------------------------- metainfo
def test_metainfo_tables():
    assert COCO.num_joints == 17 and MPII.num_joints == 16
    assert get_metainfo('coco') is COCO
    np.testing.assert_allclose(COCO.sigmas[[0, 5, 11, 16]], [0.026, 0.079, 0.107, 0.089])
    np.testing.assert_allclose(COCO.joint_weights[[9, 13]], [1.5, 1.2])
    for meta in (COCO, MPII):
        ids = [i for pair in meta.flip_pairs for i in pair]
        assert len(ids) == len(set(ids))  # each joint has at most one partner
        for a, b in meta.flip_pairs:  # partners are the left and right of the same body part
            na, nb = meta.joint_names[a], meta.joint_names[b]
            assert {na.split('_')[0], nb.split('_')[0]} == {'left', 'right'} and na[-4:] == nb[-4:]
        assert set(meta.upper_body_ids).isdisjoint(meta.lower_body_ids)
    assert MPII.flip_pairs == ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
    with pytest.raises(KeyError, match='unknown keypoint metainfo'):
        get_metainfo('nope')
    with pytest.raises(ValueError, match='sigmas has 2 values, expected 3'):
        KeypointMeta('bad', ('a', 'b', 'c'), (), (), (), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match='outside'):
        KeypointMeta('bad', ('a', 'b'), ((0, 2),), (), (), np.ones(2), np.ones(2))
    with pytest.raises(ValueError):
        COCO.sigmas[0] = 1.0  # shared tables are read-only


# ---------------------------------------------------------------------------------------------- COCO
def test_coco_gt_loader_finds_every_annotated_person(coco_tiny):
    ds = build_dataset(coco_cfg(coco_tiny), is_train=False, use_gt_bbox=True)
    with open(ds.ann_file) as f:
        anns = json.load(f)['annotations']
    annotated = [a for a in anns if not a['iscrowd'] and max(a['keypoints']) > 0]
    assert len(ds) == len(annotated) == 12
    assert ds.name == 'coco' and ds.num_joints == 17 and ds.flip_pairs == COCO.flip_pairs
    for rec, ann in zip(ds.db, annotated):  # records keep the annotation order
        k = np.array(ann['keypoints'], np.float32).reshape(17, 3)
        np.testing.assert_array_equal(rec['joints'], k[:, :2])
        np.testing.assert_array_equal(rec['visible'], np.minimum(k[:, 2], 1))


def test_coco_detector_boxes_and_threshold(coco_tiny):
    with open(os.path.join(coco_tiny, 'person_detection_results',
                           'COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = json.load(f)
    ds = build_dataset(coco_cfg(coco_tiny), is_train=False)  # the YAML says USE_GT_BBOX false
    assert len(ds) == len(dets) == 118
    ds = build_dataset(coco_cfg(coco_tiny, 'TEST.IMAGE_THRE', '0.5'), is_train=False)
    assert len(ds) == sum(d['score'] >= 0.5 for d in dets)
    assert min(r['score'] for r in ds.db) >= 0.5
    assert build_dataset(coco_cfg(coco_tiny), is_train=False, use_gt_bbox=True).use_gt_bbox


def test_coco_test_sample_contents(coco_tiny):
    ds = build_dataset(coco_cfg(coco_tiny), is_train=False, use_gt_bbox=True)
    image, target, weight, meta = ds[3]
    assert image.shape == (3, 256, 192) and image.dtype == torch.float32
    assert target.shape == (17, 64, 48) and weight.shape == (17, 1)
    rec = ds.db[3]
    np.testing.assert_allclose(meta['center'], rec['center'])
    assert meta['rotation'] == 0.0 and meta['score'] == 1.0 and meta['index'] == 3
    assert meta['area'] == pytest.approx(np.prod(rec['scale'].astype(np.float64) * 200), rel=1e-6)
    # meta joints are the annotation moved into the crop by the crop's own matrix
    inv = get_affine_transform(meta['center'], meta['scale'], 0, (192, 256), inv=True)
    vis = rec['visible'] > 0
    back = affine_transform_points(meta['joints'][:, :2], inv)
    np.testing.assert_allclose(back[vis], rec['joints'][vis], atol=1e-3)
    np.testing.assert_array_equal(weight[:, 0].numpy() > 0, vis)  # all labelled joints of this box are on the map
    batch = next(iter(DataLoader(ds, batch_size=2)))  # meta is default-collatable
    assert batch[3]['joints'].shape == (2, 17, 3) and batch[3]['image_id'].dtype == torch.int64


def test_coco_ground_truth_through_the_pipeline_scores_ap_one(coco_tiny):
    """Real annotations -> crop -> heatmap target -> decode -> image pixels -> pycocotools: AP 1.0 at 256x192."""
    from lib.dataset.transforms import heatmap_to_image_coords
    from lib.evaluation.coco_keypoints import coco_keypoint_eval
    ds = build_dataset(coco_cfg(coco_tiny), is_train=False, use_gt_bbox=True)
    results = []
    for i in range(len(ds)):
        _, target, _, meta = ds[i]
        coords, _ = ds.codec.decode(target.numpy()[None])
        xy = heatmap_to_image_coords(coords, meta['center'][None], meta['scale'][None], ds.heatmap_size)[0]
        kpts = np.concatenate([xy, np.ones((17, 1))], axis=1).reshape(-1).tolist()
        results.append(dict(image_id=meta['image_id'], category_id=1, keypoints=kpts, score=1.0))
    assert coco_keypoint_eval(ds.ann_file, results)['AP'] == pytest.approx(1.0)


def test_training_augmentation_is_reproducible_under_torch_seed(coco_tiny):
    cfg = coco_cfg(coco_tiny)
    draws = []
    for _ in range(2):
        torch.manual_seed(42)
        ds = build_dataset(cfg, is_train=True)
        draws.append([ds[i][3]['joints'] for i in (0, 1, 0)])
    for a, b in zip(*draws):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(draws[0][0], draws[0][2])  # the generator advances between samples
    torch.manual_seed(43)
    other = build_dataset(cfg, is_train=True)[0][3]['joints']
    assert not np.array_equal(other, draws[0][0])


def test_worker_seeding_is_reproducible(coco_tiny):
    ds = build_dataset(coco_cfg(coco_tiny), is_train=True)

    def run():
        loader = DataLoader(ds, batch_size=4, num_workers=2, generator=torch.Generator().manual_seed(0))
        return [b[3]['joints'] for b in loader]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_box_jitter_starts_at_its_epoch_in_loader_workers(coco_tiny):
    """DATASET.BOX_JITTER_START_EPOCH: no jitter before that epoch, every box moved from it on, also in the
    loader's worker processes (they are started afresh each epoch from the dataset set_epoch updated)."""
    from lib.core.function import build_loader
    cfg = coco_cfg(coco_tiny, 'DATASET.SCALE_FACTOR', 0.0, 'DATASET.PROB_ROTATION', 0.0, 'DATASET.FLIP', False,
                   'DATASET.PROB_HALF_BODY', 0.0, 'DATASET.PROB_BOX_JITTER', 1.0, 'DATASET.BOX_JITTER_START_EPOCH', 1,
                   'WORKERS', 1, 'TRAIN.BATCH_SIZE_PER_GPU', 2, 'TRAIN.SHUFFLE', False)
    ds = build_dataset(cfg, is_train=True)
    loader = build_loader(cfg, ds, train=True)
    record_centers = np.stack([ds.db[i]['center'] for i in range(len(loader) * 2)]).astype(np.float32)

    def centers(epoch: int) -> np.ndarray:
        loader.sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        return np.concatenate([meta['center'].numpy() for *_, meta in loader])

    np.testing.assert_array_equal(centers(0), record_centers)
    moved = np.abs(centers(1) - record_centers).max(axis=1)
    assert (moved > 0).all()
    assert (moved <= 0.2 * np.stack([ds.db[i]['scale'] for i in range(len(moved))]).max(axis=1) * 200 + 1e-3).all()


# ---------------------------------------------------------------------------------------------- MPII
def test_mpii_loader(mpii_tiny):
    cfg = load_config(os.path.join(REPO, MPII_YAML), ['DATASET.ROOT', mpii_tiny])
    ds = build_dataset(cfg, is_train=False)
    with open(os.path.join(mpii_tiny, 'annot', 'valid.json')) as f:
        entries = json.load(f)
    assert len(ds) == 5 and ds.name == 'mpii' and ds.num_joints == 16
    assert ds.gt_mat == os.path.join(mpii_tiny, 'annot', 'gt_valid.mat')
    rec, a = ds.db[0], entries[0]
    s = a['scale']
    np.testing.assert_allclose(rec['center'], [a['center'][0] - 1, a['center'][1] + 15 * s - 1], rtol=1e-6)
    np.testing.assert_allclose(rec['scale'], [s * 1.25, s * 1.25], rtol=1e-6)
    np.testing.assert_allclose(rec['joints'], np.array(a['joints']) - 1, rtol=1e-6)
    assert sum(int(r['visible'].sum()) for r in ds.db) == 76  # annotated joints in the fixture
    train_cfg = load_config(os.path.join(REPO, MPII_YAML), ['DATASET.ROOT', mpii_tiny, 'DATASET.TRAIN_SET', 'valid'])
    image, target, weight, meta = build_dataset(train_cfg, is_train=True)[2]
    assert image.shape == (3, 256, 256) and target.shape == (16, 64, 64)
    assert meta['image_id'] == 2


# ---------------------------------------------------------------------------------------------- custom K
def _write_coco(root, k, anns, image_size=(160, 120), image_set='val2017', write_image=True, category_id=1):
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    os.makedirs(os.path.join(root, 'images', image_set), exist_ok=True)
    if write_image:
        img = np.full((image_size[1], image_size[0], 3), 90, np.uint8)
        cv2.imwrite(os.path.join(root, 'images', image_set, 'a.jpg'), img)
    data = dict(images=[dict(id=1, file_name='a.jpg', width=image_size[0], height=image_size[1])],
                annotations=anns, categories=[dict(id=category_id, name='thing', keypoints=[str(i) for i in range(k)])])
    path = os.path.join(root, 'annotations', f'person_keypoints_{image_set}.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


def _ann(k, ann_id=1, bbox=(40, 20, 60, 80), area=3000.0):
    kpts = []
    for j in range(k):
        kpts += [50 + 8 * j, 30 + 10 * j, 2]
    return dict(id=ann_id, image_id=1, category_id=1, iscrowd=0, bbox=list(bbox), area=area,
                num_keypoints=k, keypoints=kpts)


def test_small_custom_keypoint_set_runs_through_dataset_and_codec(tmp_path):
    meta = register_metainfo(KeypointMeta(
        name='toy5', joint_names=('head', 'left_hand', 'right_hand', 'left_foot', 'right_foot'),
        flip_pairs=((1, 2), (3, 4)), upper_body_ids=(0, 1, 2), lower_body_ids=(3, 4),
        joint_weights=np.ones(5), sigmas=np.full(5, 0.05), skeleton=((0, 1), (0, 2), (0, 3), (0, 4))),
        overwrite=True)
    _write_coco(str(tmp_path), 5, [dict(_ann(5), category_id=3)], category_id=3)  # not a person category
    cfg = load_config(None, ['DATASET.ROOT', str(tmp_path), 'DATASET.METAINFO', 'toy5', 'MODEL.NUM_JOINTS', '5',
                             'DATASET.TRAIN_SET', 'val2017', 'DATASET.NUM_JOINTS_HALF_BODY', '3',
                             'DATASET.PROB_HALF_BODY', '1.0'])
    for is_train in (True, False):  # train: flip and half-body run with K = 5
        ds = build_dataset(cfg, is_train=is_train)
        image, target, weight, m = ds[0]
        assert ds.metainfo is meta and target.shape == (5, 64, 48) and weight.shape == (5, 1)
        assert m['joints'].shape == (5, 3)
    coords, _ = ds.codec.decode(target.numpy()[None])  # the plain test sample
    np.testing.assert_allclose(coords[0], np.floor(m['joints'][:, :2] / 4 + 0.5), atol=0.25)
    bad = load_config(None, ['DATASET.ROOT', str(tmp_path), 'DATASET.METAINFO', 'toy5'])
    with pytest.raises(ValueError, match='MODEL.NUM_JOINTS = 17 but keypoint metainfo .toy5. has 5'):
        build_dataset(bad, is_train=False)


# ---------------------------------------------------------------------------------------------- bad input
def _cfg(root):
    return load_config(None, ['DATASET.ROOT', str(root), 'DATASET.TRAIN_SET', 'val2017'])


def test_missing_image_names_the_file(tmp_path):
    _write_coco(str(tmp_path), 17, [_ann(17)], write_image=False)
    ds = build_dataset(_cfg(tmp_path), is_train=False)
    with pytest.raises(FileNotFoundError, match=r'images/val2017/a\.jpg'):
        ds[0]
    with open(os.path.join(tmp_path, 'images', 'val2017', 'a.jpg'), 'wb') as f:
        f.write(b'not a jpeg')
    with pytest.raises(ImageError, match=r'a\.jpg \(sample 0\): the image could not be decoded'):
        ds[0]


def test_truncated_json_names_the_file(tmp_path):
    path = _write_coco(str(tmp_path), 17, [_ann(17)])
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ValueError, match='person_keypoints_val2017.json is not valid JSON'):
        build_dataset(_cfg(tmp_path), is_train=False)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match='COCO annotation file not found'):
        build_dataset(_cfg(tmp_path), is_train=False)


def test_truncated_jpeg_is_an_error_naming_file_and_sample(tmp_path):
    """libjpeg decodes a truncated file with grey rows in place of the missing ones, without an error."""
    _write_coco(str(tmp_path), 17, [_ann(17)], image_size=(320, 240))
    path = os.path.join(tmp_path, 'images', 'val2017', 'a.jpg')
    rng = np.random.default_rng(0)
    cv2.imwrite(path, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    with open(path, 'rb') as f:
        data = f.read()
    ds = build_dataset(_cfg(tmp_path), is_train=False)
    ds[0]  # the complete file reads
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2])
    assert cv2.imread(path) is not None  # what OpenCV alone would hand on
    with pytest.raises(ImageError, match=r'a\.jpg \(sample 0\): truncated JPEG'):
        ds[0]
    with open(path, 'wb') as f:
        f.write(b'')
    with pytest.raises(ImageError, match=r'a\.jpg \(sample 0\): the image file is empty'):
        ds[0]


def test_zero_size_box_is_skipped_with_a_log_line(tmp_path, caplog):
    _write_coco(str(tmp_path), 17, [_ann(17, 1), _ann(17, 2, bbox=(40, 20, 0, 80)), _ann(17, 3, area=0.0)])
    with caplog.at_level(logging.INFO, logger='lib.dataset.coco'):
        ds = build_dataset(_cfg(tmp_path), is_train=False)
    assert len(ds) == 1
    assert 'annotations[1] (id 2): skipped, zero-size box' in caplog.text
    assert 'annotations[2] (id 3): skipped' in caplog.text


def _count_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if 'person records' in r.getMessage()]


def test_records_kept_and_skipped_are_counted_by_reason(tmp_path, caplog):
    no_kpts = _ann(17, 4)
    no_kpts['keypoints'] = [0] * 51
    anns = [_ann(17, 1), dict(_ann(17, 2), iscrowd=1), _ann(17, 3, bbox=(40, 20, 0, 80)), no_kpts,
            dict(_ann(17, 5), category_id=2), _ann(17, 6)]
    _write_coco(str(tmp_path), 17, anns)
    with caplog.at_level(logging.INFO, logger='lib.dataset'):
        ds = build_dataset(_cfg(tmp_path), is_train=False)
    assert len(ds) == 2
    assert _count_lines(caplog) == ['coco val2017 (GT boxes, 1 images): kept 2 person records, skipped 4 '
                                    '(1 crowd, 1 zero-size box, 1 without keypoints, 1 not a keypoint category)']


def test_coco_tiny_counts(coco_tiny, caplog):
    with caplog.at_level(logging.INFO, logger='lib.dataset'):
        build_dataset(coco_cfg(coco_tiny), is_train=False, use_gt_bbox=True)
        build_dataset(coco_cfg(coco_tiny, 'TEST.IMAGE_THRE', '0.5'), is_train=False)
    gt, det = _count_lines(caplog)
    assert gt.startswith('coco val2017 (GT boxes, 4 images): kept 12 person records, skipped ')
    assert det.startswith('coco val2017 (detector boxes, 4 images): kept ')
    assert 'score below TEST.IMAGE_THRE 0.5)' in det


def _bad(ann_id: int, **changes):
    ann = _ann(17, ann_id)
    for key, value in changes.items():
        ann[key] = value
    return ann


@pytest.mark.parametrize('change, message', [
    (dict(keypoints=[50, 30, 2] * 5 + [float('nan'), 30, 2] + [50, 30, 2] * 11),
     r"\(id 9\): field 'keypoints' has nan as the x of joint 5 \('left_shoulder'\)"),
    (dict(keypoints=[50, 30, 2] * 16 + [50, 30, float('nan')]),
     r"\(id 9\): field 'keypoints' has nan as the visibility flag of joint 16 \('right_ankle'\)"),
    (dict(keypoints=[50, float('inf'), 2] + [50, 30, 2] * 16),
     r"\(id 9\): field 'keypoints' has inf as the y of joint 0 \('nose'\)"),
    (dict(bbox=[float('nan'), 20, 60, 80]), r"\(id 9\): field 'bbox' has a NaN or infinite coordinate"),
    (dict(area=float('nan')), r"\(id 9\): field 'area' is nan"),
])
def test_non_finite_annotation_is_an_error_naming_file_and_id(tmp_path, change, message):
    """NaN visibility used to read as 'unlabelled', a NaN box coordinate was clipped to 0: now errors."""
    _write_coco(str(tmp_path), 17, [_ann(17, 1), _bad(9, **change)])  # json.dump writes NaN / Infinity
    with pytest.raises(ValueError, match=r'person_keypoints_val2017\.json: annotations\[1\] ' + message):
        build_dataset(_cfg(tmp_path), is_train=False)


def _det_cfg(root, *opts):
    return load_config(None, ['DATASET.ROOT', str(root), 'TEST.USE_GT_BBOX', 'False',
                              'TEST.COCO_BBOX_FILE', 'dets.json', *opts])


def test_detections_nan_score_is_an_error_and_scores_above_one_warn_once(tmp_path, caplog):
    _write_coco(str(tmp_path), 17, [_ann(17)])
    dets = [dict(image_id=1, category_id=1, bbox=[40, 20, 60, 80], score=s) for s in (0.9, 1.7, 2.5, 0.01)]
    with open(tmp_path / 'dets.json', 'w') as f:
        json.dump(dets, f)
    with caplog.at_level(logging.INFO, logger='lib.dataset'):
        ds = build_dataset(_det_cfg(tmp_path, 'TEST.IMAGE_THRE', '0.1'), is_train=False)
    assert len(ds) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'dets.json: 2 detection score(s) above 1 (first: entry 1, score 1.7)' in warnings[0]
    assert _count_lines(caplog)[0].endswith('kept 3 person records, skipped 1 (1 score below TEST.IMAGE_THRE 0.1)')
    dets[2]['score'] = float('nan')
    with open(tmp_path / 'dets.json', 'w') as f:
        json.dump(dets, f)
    with pytest.raises(ValueError, match=r"dets\.json: entry 2: field 'score' is nan"):
        build_dataset(_det_cfg(tmp_path), is_train=False)
    dets[2] = dict(dets[0], bbox=[40, float('nan'), 60, 80])
    with open(tmp_path / 'dets.json', 'w') as f:
        json.dump(dets, f)
    with pytest.raises(ValueError, match=r"dets\.json: entry 2: field 'bbox' has a NaN"):
        build_dataset(_det_cfg(tmp_path), is_train=False)


def test_wrong_length_keypoints_is_a_clear_error(tmp_path):
    ann = _ann(17, ann_id=7)
    ann['keypoints'] = ann['keypoints'][:-3]
    _write_coco(str(tmp_path), 17, [ann])
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 7\): field 'keypoints' has 48 values, expected 51"):
        build_dataset(_cfg(tmp_path), is_train=False)
    ann['keypoints'] = ['x'] * 51
    _write_coco(str(tmp_path), 17, [ann])
    with pytest.raises(ValueError, match=r"\(id 7\): field 'keypoints' must hold numbers"):
        build_dataset(_cfg(tmp_path), is_train=False)


def test_malformed_fields_name_entry_and_field(tmp_path):
    ann = _ann(17)
    del ann['bbox']
    _write_coco(str(tmp_path), 17, [ann])
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 1\): missing field 'bbox'"):
        build_dataset(_cfg(tmp_path), is_train=False)
    _write_coco(str(tmp_path), 17, [_ann(17)])
    det_path = os.path.join(tmp_path, 'dets.json')
    with open(det_path, 'w') as f:
        json.dump([dict(image_id=1, category_id=1, bbox=[1, 2, 3], score=0.9)], f)
    cfg = load_config(None, ['DATASET.ROOT', str(tmp_path), 'TEST.USE_GT_BBOX', 'False',
                             'TEST.COCO_BBOX_FILE', 'dets.json'])
    with pytest.raises(ValueError, match=r"dets.json: entry 0: field 'bbox' must be 4 numbers"):
        build_dataset(cfg, is_train=False)


def test_mpii_wrong_joint_count_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / 'annot')
    entry = dict(image='x.jpg', center=[50, 50], scale=1.0, joints=[[1, 1]] * 15, joints_vis=[1] * 15)
    with open(tmp_path / 'annot' / 'valid.json', 'w') as f:
        json.dump([entry], f)
    cfg = load_config(os.path.join(REPO, MPII_YAML), ['DATASET.ROOT', str(tmp_path)])
    with pytest.raises(ValueError, match=r"entry 0 \(x.jpg\): fields 'joints'/'joints_vis' have shapes \(15, 2\)"):
        build_dataset(cfg, is_train=False)


def test_mpii_non_finite_values_are_errors_and_counts_are_logged(tmp_path, caplog):
    os.makedirs(tmp_path / 'annot')
    good = dict(image='x.jpg', center=[50, 50], scale=1.0, joints=[[1, 1]] * 16, joints_vis=[1] * 16)
    cfg = load_config(os.path.join(REPO, MPII_YAML), ['DATASET.ROOT', str(tmp_path)])
    for bad, message in ((dict(good, center=[float('nan'), 50]), r"entry 1: field 'center' has a NaN"),
                         (dict(good, joints_vis=[1] * 15 + [float('nan')]), r"entry 1 \(x.jpg\): .*NaN.*joint 15"),
                         (dict(good, joints=[[1, 1]] * 3 + [[float('nan'), 1]] + [[1, 1]] * 12), r'entry 1 .*NaN.*joint 3\)')):
        with open(tmp_path / 'annot' / 'valid.json', 'w') as f:
            json.dump([good, bad], f)
        with pytest.raises(ValueError, match=r'valid\.json: ' + message):
            build_dataset(cfg, is_train=False)
    with open(tmp_path / 'annot' / 'valid.json', 'w') as f:
        json.dump([good, good], f)
    with caplog.at_level(logging.INFO, logger='lib.dataset'):
        build_dataset(cfg, is_train=False)
    assert _count_lines(caplog) == ['mpii valid: kept 2 person records, skipped 0']


def test_select_data_keeps_records_whose_joints_are_centred():
    from lib.dataset.coco import select_data
    joints = np.array([[90.0, 90.0], [110.0, 110.0]] + [[0.0, 0.0]] * 15)
    vis = np.r_[np.ones(2), np.zeros(15)]
    centred = dict(center=np.array([100.0, 100.0]), scale=np.array([1.0, 1.0]), joints=joints, visible=vis)
    off = dict(centred, center=np.array([300.0, 100.0]))
    empty = dict(centred, visible=np.zeros(17))
    # ks = exp(-d^2 / (0.2^2 * 2 * area)) against (0.2 / 16) * num_vis + 0.45 - 0.2 / 16 = 0.4625
    kept = select_data([centred, off, empty])
    assert len(kept) == 1 and kept[0] is centred
