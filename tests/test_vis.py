"""Debug drawing: skeleton colours, normalise/denormalise round trip, debug image files."""
import cv2
import numpy as np
import torch

from lib.codecs import MSRAHeatmap
from lib.dataset.metainfo import COCO, KeypointMeta
from lib.dataset.transforms import normalize_image
from lib.utils.vis import denormalize_images, draw_skeleton, make_grid, palette, save_debug_images

TOY = KeypointMeta('toy3', ('a', 'b', 'c'), (), (), (), np.ones(3), np.ones(3), skeleton=((0, 1), (1, 2)))


def test_draw_skeleton_one_colour_per_limb_and_threshold():
    image = np.zeros((100, 100, 3), np.uint8)
    kpts = np.array([[10, 50, 0.9], [50, 50, 0.9], [50, 90, 0.1]])
    out = draw_skeleton(image, kpts, TOY, score_thr=0.3, radius=2, thickness=3)
    assert image.max() == 0  # the input is not drawn on
    assert tuple(out[50, 30]) == palette(2)[0]  # limb a-b in the first limb colour
    assert out[70, 50].max() == 0  # limb b-c hidden: c is below the threshold
    assert tuple(out[50, 10]) == (255, 255, 255)  # joint dot
    assert len(set(palette(len(COCO.skeleton)))) == len(COCO.skeleton)


def test_denormalize_inverts_normalize():
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(2)]
    batch = torch.from_numpy(np.stack([normalize_image(c) for c in crops]))
    for a, b in zip(denormalize_images(batch), crops):
        assert np.abs(a.astype(int) - b).max() <= 1
    assert make_grid(crops, nrow=1, padding=2).shape == (2 * 10 + 2, 6 + 4, 3)


def test_save_debug_images_writes_readable_files(tmp_path):
    codec = MSRAHeatmap((48, 64), (12, 16), sigma=1.0)
    b, k = 3, 17
    rng = np.random.default_rng(1)
    joints = np.concatenate([rng.uniform(4, 44, (b, k, 2)), np.ones((b, k, 1))], axis=2).astype(np.float32)
    target = torch.from_numpy(np.stack([codec.encode(j[:, :2], j[:, 2])[0] for j in joints]))
    images = torch.zeros(b, 3, 64, 48)
    paths = save_debug_images(images, {'joints': torch.from_numpy(joints)}, target, joints[..., :2] + 1, target,
                              str(tmp_path / 'debug' / 'train_0000001'), metainfo=COCO)
    shapes = [cv2.imread(p).shape for p in paths]
    assert shapes[0] == shapes[1] == (64 + 4, 3 * (48 + 2) + 2, 3)
    assert shapes[2] == shapes[3] == (3 * 64, (k + 1) * 48, 3)  # 16-px heatmaps drawn 4x
    gt = cv2.imread(paths[0])
    x, y = np.round(joints[0, 0, :2]).astype(int) + 2
    assert gt[y, x].min() > 150  # a joint is drawn (white dot, JPEG-blurred) on the black crop
