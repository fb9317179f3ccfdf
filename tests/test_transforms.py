"""Geometry and augmentation: known answers, round trips and seeded frequencies."""
import math

import cv2
import numpy as np
import pytest

from lib.config import load_config
from lib.codecs import MSRAHeatmap
from lib.dataset.joints_dataset import JointsDataset
from lib.dataset.metainfo import COCO, MPII
from lib.dataset.transforms import (IMAGENET_MEAN, IMAGENET_STD, affine_transform_points, box_to_center_scale,
                                    compose_affine, flip_joints, flip_matrix, get_affine_transform, half_body_box,
                                    heatmap_to_image_coords, normalize_image, random_box_shift,
                                    random_scale_rotation, warp_crop)


def test_box_to_center_scale_known_answers():
    c, s = box_to_center_scale([10, 20, 30, 40], aspect_ratio=0.75)
    np.testing.assert_allclose(c, [25, 40])
    np.testing.assert_allclose(s, [30 / 200 * 1.25, 40 / 200 * 1.25])
    # too wide for 3:4 -> the height grows to w / 0.75
    c, s = box_to_center_scale([0, 0, 100, 40], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [0.5, 100 / 0.75 / 200], rtol=1e-6)
    # too tall -> the width grows to h * 0.75
    _, s = box_to_center_scale([0, 0, 10, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [0.375, 0.5], rtol=1e-6)


def test_affine_without_rotation_is_scale_and_translation():
    center, scale, size = np.array([100.0, 80.0]), np.array([0.96, 1.28]), (192, 256)
    mat = get_affine_transform(center, scale, 0, size)
    k = 192 / (0.96 * 200)  # crop pixels per image pixel
    expected = np.array([[k, 0, 96 - 100 * k], [0, k, 128 - 80 * k]])
    np.testing.assert_allclose(mat, expected, atol=1e-9)


def test_affine_rotation_maps_rotated_box_top_to_crop_top():
    center, scale, size, rot = np.array([50.0, 60.0]), np.array([1.0, 1.0]), (64, 64), 30.0
    mat = get_affine_transform(center, scale, rot, size)
    r = math.radians(rot)
    top = center + np.array([100 * math.sin(r), -100 * math.cos(r)])  # [0, -w/2] rotated by +30 degrees
    np.testing.assert_allclose(affine_transform_points(np.stack([center, top]), mat), [[32, 32], [32, 0]],
                               atol=1e-9)


def _hrnet_three_point_matrix(center, scale, rot, size, shift, inv):
    """The reference construction (HRNet get_affine_transform) solved by cv2.getAffineTransform."""
    scale_px = np.asarray(scale) * 200.0
    r = math.radians(rot)
    src_dir = np.array([scale_px[0] * -0.5 * -math.sin(r), scale_px[0] * -0.5 * math.cos(r)])
    src0 = np.asarray(center) + scale_px * np.asarray(shift)
    dst0 = np.array([size[0] * 0.5, size[1] * 0.5])
    src = [src0, src0 + src_dir]
    dst = [dst0, dst0 + np.array([0, size[0] * -0.5])]
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts.append(pts[1] + np.array([-d[1], d[0]]))
    src, dst = np.float32(src), np.float32(dst)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize('rot,shift,inv', [(0.0, (0, 0), False), (33.0, (0, 0), False), (-75.0, (0.1, -0.2), False),
                                           (20.0, (0, 0), True), (-140.0, (0.05, 0.0), True)])
def test_affine_matches_the_three_point_construction(rot, shift, inv):
    center, scale, size = (321.5, 212.25), (1.3, 1.7), (192, 256)
    ours = get_affine_transform(center, scale, rot, size, shift=shift, inv=inv)
    ref = _hrnet_three_point_matrix(center, scale, rot, size, shift, inv)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)  # the reference solves in float32


@pytest.mark.parametrize('rot', [0.0, 17.0, -60.0])
def test_affine_round_trip(rot):
    rng = np.random.default_rng(0)
    center, scale = np.array([321.5, 212.25]), np.array([1.3, 1.7])
    fwd = get_affine_transform(center, scale, rot, (192, 256), shift=(0.1, -0.05))
    inv = get_affine_transform(center, scale, rot, (192, 256), shift=(0.1, -0.05), inv=True)
    pts = rng.uniform(0, 600, (50, 2))
    np.testing.assert_allclose(affine_transform_points(affine_transform_points(pts, fwd), inv), pts, atol=1e-9)
    np.testing.assert_allclose(compose_affine(fwd, inv), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_heatmap_to_image_coords_known_answer():
    center, scale = np.array([[100.0, 200.0]]), np.array([[0.96, 1.28]])  # 192 x 256 px box
    coords = np.array([[[0, 0], [24, 32], [48, 64]]], np.float64)
    out = heatmap_to_image_coords(coords, center, scale, (48, 64))
    np.testing.assert_allclose(out[0], [[4, 72], [100, 200], [196, 328]])


@pytest.mark.parametrize('box', [[10, 20, 30, 40], [-50, 5, 300, 80], [200, 100, 12, 90]])
def test_heatmap_to_image_coords_inverts_the_crop(box):
    """Image point -> crop pixel (the dataset's affine) -> heatmap pixel (/ stride) -> image point again,
    for several boxes per batch (one centre/scale per crop), with the scale fitted by box_to_center_scale."""
    input_size, heatmap_size = (192, 256), (48, 64)
    rng = np.random.default_rng(1)
    boxes = [box, [box[0] + 7, box[1] - 3, box[2] * 2, box[3] * 0.5]]
    centers, scales = zip(*(box_to_center_scale(b, input_size[0] / input_size[1]) for b in boxes))
    centers, scales = np.stack(centers), np.stack(scales)  # (2, 2) float32, as the dataset stores them
    points = rng.uniform(-100, 400, (2, 17, 2))
    stride = np.array(input_size) / np.array(heatmap_size)
    heatmap_px = np.stack([affine_transform_points(p, get_affine_transform(c, s, 0, input_size)) / stride
                           for p, c, s in zip(points, centers, scales)])
    back = heatmap_to_image_coords(heatmap_px, centers, scales, heatmap_size)
    assert back.shape == points.shape and back.dtype == np.float64
    # Not 1e-9: the affine zooms both axes by scale[0], the mapping back uses scale[1] for y, and the
    # float32 scale rounds w and h separately (a relative 1e-7, up to ~1e-4 px over these distances).
    np.testing.assert_allclose(back, points, rtol=0, atol=1e-3)


def test_warp_crop_puts_a_pixel_where_the_matrix_says():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40, 30] = 255  # (x=30, y=40)
    center, scale = np.array([60.0, 50.0]), np.array([0.32, 0.32])  # 64 px box -> 64 px crop, factor 1
    crop = warp_crop(image, center, scale, 0.0, (64, 64))
    expected = affine_transform_points([30, 40], get_affine_transform(center, scale, 0, (64, 64)))
    ys, xs = np.nonzero(crop[..., 0])
    assert (xs[0], ys[0]) == tuple(np.round(expected).astype(int)) == (2, 22)


@pytest.mark.parametrize('rot', [25.0, -70.0])
def test_rotated_crop_moves_a_blob_where_the_points_go(rot):
    image = np.zeros((200, 240, 3), np.uint8)
    cv2.circle(image, (90, 70), 4, (255, 255, 255), -1)
    center, scale = np.array([120.0, 100.0]), np.array([0.8, 1.0])
    crop = warp_crop(image, center, scale, rot, (96, 128))
    ys, xs = np.nonzero(crop[..., 0] > 127)
    expected = affine_transform_points([90, 70], get_affine_transform(center, scale, rot, (96, 128)))
    np.testing.assert_allclose([xs.mean(), ys.mean()], expected, atol=0.3)


def test_warp_crop_flip_equals_cropping_the_flipped_image():
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8), (5, 5), 0)
    center, scale, rot = np.array([70.3, 40.7]), np.array([0.4, 0.5]), 12.0
    mirrored = np.array([130 - 1 - center[0], center[1]])
    a = warp_crop(np.ascontiguousarray(image[:, ::-1]), mirrored, scale, rot, (48, 64))
    b = warp_crop(image, mirrored, scale, rot, (48, 64), flip=True)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # same sampling up to cv2's fixed-point rounding


def test_flip_matrix_and_flip_joints():
    joints = np.array([[10.0, 5.0], [3.0, 4.0], [20.0, 7.0]])
    vis = np.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(affine_transform_points(joints, flip_matrix(64))[:, 0], 63 - joints[:, 0])
    fj, fv = flip_joints(joints, vis, 64, flip_pairs=[(1, 2)])
    np.testing.assert_allclose(fj[0], [53, 5])
    np.testing.assert_allclose(fv, [1, 0, 1])  # the pair's flags swapped
    np.testing.assert_allclose(fj[2], [60, 4])  # joint 1 mirrored, now in slot 2
    np.testing.assert_allclose(fj[1], [0, 0])  # unlabelled joint zeroed (HRNet fliplr_joints)


@pytest.mark.parametrize('meta', [COCO, MPII], ids=lambda m: m.name)
def test_flip_twice_is_identity_and_swaps_pairs(meta):
    rng = np.random.default_rng(2)
    k = meta.num_joints
    joints = rng.uniform(0, 200, (k, 2)).astype(np.float32)
    vis = np.ones(k, np.float32)
    once, v1 = flip_joints(joints, vis, 256, meta.flip_pairs)
    twice, v2 = flip_joints(once, v1, 256, meta.flip_pairs)
    np.testing.assert_allclose(twice, joints, atol=1e-4)
    for a, b in meta.flip_pairs:
        np.testing.assert_allclose(once[a], [255 - joints[b, 0], joints[b, 1]], atol=1e-4)


def test_half_body_upper_choice_frequency_matches_probability():
    rng = np.random.default_rng(123)
    joints = np.stack([np.arange(17) * 10.0, np.arange(17) * 20.0], axis=1)
    vis = np.ones(17)
    n, p = 4000, 0.6915  # the official `randn() < 0.5` rule, Phi(0.5)
    upper = 0
    for _ in range(n):
        center, _ = half_body_box(joints, vis, COCO.upper_body_ids, COCO.lower_body_ids, 0.75, rng, prob_upper=p)
        upper += center[1] < joints[11, 1]  # the upper-body centre lies above the hips
    assert abs(upper / n - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_half_body_box_geometry_and_fallbacks():
    rng = np.random.default_rng(0)
    joints = np.zeros((17, 2))
    joints[11:] = [[0, 0], [40, 0], [0, 100], [40, 100], [0, 200], [40, 200]]  # lower body only
    vis = np.zeros(17)
    vis[11:] = 1
    center, scale = half_body_box(joints, vis, COCO.upper_body_ids, COCO.lower_body_ids, 0.75, rng, prob_upper=1.0)
    np.testing.assert_allclose(center, [20, 100])  # upper set empty -> lower body
    np.testing.assert_allclose(scale, [200 * 0.75 / 200 * 1.5, 200 / 200 * 1.5], rtol=1e-6)
    vis[:] = 0
    vis[0] = 1
    assert half_body_box(joints, vis, COCO.upper_body_ids, COCO.lower_body_ids, 0.75, rng) is None


def test_random_scale_rotation_ranges_and_rotation_probability():
    rng = np.random.default_rng(5)
    draws = np.array([random_scale_rotation(rng, 0.25, 30.0, 0.6) for _ in range(3000)])
    assert draws[:, 0].min() >= 0.75 and draws[:, 0].max() <= 1.25
    assert np.abs(draws[:, 1]).max() <= 60.0
    assert abs((draws[:, 1] != 0).mean() - 0.6) < 0.04
    shifted = np.array([random_box_shift(np.zeros(2), np.array([1.0, 2.0]), rng, 0.2) for _ in range(500)])
    assert np.abs(shifted[:, 0]).max() <= 40 and np.abs(shifted[:, 1]).max() <= 80


def test_normalize_image_known_values():
    crop = np.zeros((2, 3, 3), np.uint8)
    crop[...] = (0, 128, 255)  # BGR
    out = normalize_image(crop, color_rgb=True)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    rgb = np.array([255, 128, 0]) / 255.0
    np.testing.assert_allclose(out[:, 0, 0], (rgb - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-5)
    bgr = normalize_image(crop, color_rgb=False)
    np.testing.assert_allclose(bgr[:, 1, 2], (np.array([0, 128, 255]) / 255.0 - IMAGENET_MEAN[::-1]) /
                               IMAGENET_STD[::-1], rtol=1e-5)


def _augmenting_dataset(**opts):
    flat = []
    for key, value in opts.items():
        flat += ['DATASET.' + key, value]
    cfg = load_config(None, flat)
    codec = MSRAHeatmap(cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, cfg.MODEL.SIGMA)
    return JointsDataset(cfg, '', 'x', True, COCO, codec)


def test_dataset_half_body_rate_under_seeded_generator():
    ds = _augmenting_dataset(SCALE_FACTOR=0.0, PROB_ROTATION=0.0, FLIP=False, PROB_BOX_JITTER=0.0,
                             PROB_HALF_BODY=0.3, PROB_HALF_BODY_UPPER=0.6915)
    rec = dict(center=np.array([100.0, 170.0]), scale=np.array([1.5, 2.0]),
               joints=np.stack([np.full(17, 100.0), np.linspace(10, 330, 17)], 1), visible=np.ones(17))
    rng = np.random.default_rng(7)
    n = 3000
    changed = sum(not np.allclose(ds.augment(rec, 640, rng)['scale'], rec['scale']) for _ in range(n))
    assert abs(changed / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    # too few visible joints (<= NUM_JOINTS_HALF_BODY): never
    few = dict(rec, visible=np.r_[np.ones(8), np.zeros(9)])
    assert all(np.allclose(ds.augment(few, 640, rng)['scale'], rec['scale']) for _ in range(200))
