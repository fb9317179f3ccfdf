"""PoseEstimator and run_inference: boxes -> crops -> network -> flip test -> decode -> image pixels, exactly.

Both go through `predict_keypoints`, the one inference path; the tests check that they agree bit for bit.

The exactness test uses a stand-in "perfect network" (OracleNet) and a coordinate-coded image whose
red and green channels hold each pixel's own x and y (blue = 255 marks the inside of the image).
Bilinear warping reproduces a linear ramp exactly, so the network can read which image point every
heatmap pixel looks at. It recognises the person from the crop centre, and puts a one-hot peak,
valued at that joint's planted score, on the heatmap pixel that sees the joint; in a mirrored crop it
answers with the mirrored skeleton (left/right swapped), as a trained network does. Joints are planted
on image points that sit exactly on heatmap pixels of their box, so every keypoint must come back at
its planted position, with its planted score. A wrong crop, centre/scale, colour order, flip-back,
pair swap, 1-px shift, batch split or back-mapping moves it by at least a quarter heatmap pixel.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from lib.config import load_config
from lib.core.function import run_inference
from lib.core.inference import PoseEstimator, flip_test_heatmaps, predict_keypoints
from lib.dataset.metainfo import get_metainfo
from lib.dataset.transforms import IMAGENET_MEAN, IMAGENET_STD, box_to_center_scale

pytestmark = pytest.mark.usefixtures('single_thread')
IMAGE_W, IMAGE_H = 320, 240
INPUT_W, INPUT_H = 96, 128  # network input; heatmaps are 24 x 32
HEAT_W, HEAT_H = INPUT_W // 4, INPUT_H // 4

# Several sizes, aspect ratios and positions: two cross the image border, one is larger than the
# image, one is small (28 x 37 px after fitting). Centres stay inside the image, >= 30 px apart.
BOXES = np.array([
    [100, 60, 60, 120],     # portrait, inside
    [10, 20, 200, 90],      # landscape: fitted to 3:4 by growing the height
    [-40, -30, 120, 150],   # crosses the top-left corner
    [250, 150, 120, 140],   # crosses the bottom-right corner
    [200, 40, 24, 30],      # small
    [-100, -100, 520, 440],  # larger than the image
], dtype=np.float64)


def coordinate_image() -> np.ndarray:
    """(H, W, 3) float32 BGR: B = 255 inside the image, G = y, R = x of each pixel."""
    ys, xs = np.mgrid[0:IMAGE_H, 0:IMAGE_W].astype(np.float32)
    return np.stack([np.full_like(xs, 255.0), ys, xs], axis=-1)


def plant_joints(rng: np.random.Generator, boxes: np.ndarray, num_joints: int) -> np.ndarray:
    """(M, K, 2) image points that lie exactly on an interior heatmap pixel of their own box's crop."""
    joints = np.empty((len(boxes), num_joints, 2))
    for m, box in enumerate(boxes):
        center, scale = box_to_center_scale(box, INPUT_W / INPUT_H)
        size = scale.astype(np.float64) * 200.0  # crop extent in image pixels
        margin = size[0] / INPUT_W * 2 + 2  # the mirrored pass samples one input pixel to the side
        for k in range(num_joints):
            while True:
                hm = rng.integers([1, 1], [HEAT_W - 1, HEAT_H - 1])  # interior: the quarter offset is live
                point = center + (hm / [HEAT_W, HEAT_H] - 0.5) * size
                if margin <= point[0] <= IMAGE_W - 1 - margin and margin <= point[1] <= IMAGE_H - 1 - margin:
                    joints[m, k] = point
                    break
    return joints


class OracleNet(nn.Module):
    """(B, 3, H, W) coordinate-coded crops -> (B, K, H/4, W/4) one-hot heatmaps at the planted joints."""

    def __init__(self, centers: np.ndarray, joints: np.ndarray, joint_scores: np.ndarray,
                 flip_pairs, color_rgb: bool) -> None:
        super().__init__()
        self.centers = torch.as_tensor(centers, dtype=torch.float64)  # (P, 2)
        self.joints = torch.as_tensor(joints, dtype=torch.float64)  # (P, K, 2)
        self.scores = torch.as_tensor(joint_scores, dtype=torch.float32)  # (K,)
        self.mirror = list(range(joints.shape[1]))
        for a, b in flip_pairs:
            self.mirror[a], self.mirror[b] = b, a
        self.color_rgb = color_rgb
        self.calls = []  # batch sizes seen

    def read_bgr(self, x: torch.Tensor) -> torch.Tensor:
        """Undo normalize_image: (B, 3, H, W) -> pixel values (B, 3, H, W) in B, G, R order."""
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.color_rgb else (IMAGENET_MEAN[::-1], IMAGENET_STD[::-1])
        pix = (x.double() * torch.as_tensor(std.copy()).view(1, 3, 1, 1).double()
               + torch.as_tensor(mean.copy()).view(1, 3, 1, 1).double()) * 255.0
        return pix.flip(1) if self.color_rgb else pix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        bgr = self.read_bgr(x)
        valid, ys, xs = bgr[:, 0] > 254.0, bgr[:, 1], bgr[:, 2]
        height, width = x.shape[2:]
        out = torch.zeros(x.shape[0], len(self.scores), height // 4, width // 4)
        for b in range(x.shape[0]):
            seen_center = torch.stack([xs[b, height // 2, width // 2], ys[b, height // 2, width // 2]])
            person = int(torch.argmin(((self.centers - seen_center) ** 2).sum(1)))
            # A mirrored crop shows x decreasing along the width: answer with the mirrored skeleton.
            dx = (xs[b, :, 1:] - xs[b, :, :-1])[valid[b, :, 1:] & valid[b, :, :-1]]
            order = self.mirror if dx.mean() < 0 else list(range(len(self.scores)))
            # Heatmap pixel (i, j) looks at input pixel (4i, 4j) (HRNet's stride-4 convention).
            hx, hy, hv = xs[b, ::4, ::4], ys[b, ::4, ::4], valid[b, ::4, ::4]
            for k, src in enumerate(order):
                tx, ty = self.joints[person, src]
                dist = torch.where(hv, (hx - tx) ** 2 + (hy - ty) ** 2, torch.inf)
                idx = int(torch.argmin(dist))
                out[b, k].view(-1)[idx] = self.scores[src]
        return out


def make_cfg(flip_test: bool, color_rgb: bool = True, batch: int = 2):
    return load_config(None, [
        'MODEL.IMAGE_SIZE', f'[{INPUT_W},{INPUT_H}]', 'MODEL.HEATMAP_SIZE', f'[{HEAT_W},{HEAT_H}]',
        'TEST.FLIP_TEST', str(flip_test), 'TEST.SHIFT_HEATMAP', 'True', 'TEST.POST_PROCESS', 'True',
        'DATASET.COLOR_RGB', str(color_rgb), 'TEST.BATCH_SIZE_PER_GPU', str(batch)])


@pytest.mark.parametrize('flip_test', [False, True])
@pytest.mark.parametrize('color_rgb', [True, False])
def test_keypoints_land_exactly_on_planted_joints(flip_test: bool, color_rgb: bool) -> None:
    cfg = make_cfg(flip_test, color_rgb)
    meta = get_metainfo(cfg.DATASET.METAINFO)
    rng = np.random.default_rng(0)
    joints = plant_joints(rng, BOXES, meta.num_joints)
    joint_scores = np.linspace(0.3, 0.9, meta.num_joints)
    centers = BOXES[:, :2] + BOXES[:, 2:] / 2
    net = OracleNet(centers, joints, joint_scores, meta.flip_pairs, color_rgb)
    box_scores = np.linspace(0.5, 1.0, len(BOXES))

    people = PoseEstimator(cfg, net).predict(coordinate_image(), BOXES, box_scores)

    assert len(people) == len(BOXES)
    keypoints = np.stack([p['keypoints'] for p in people])
    np.testing.assert_allclose(keypoints[..., :2], joints, rtol=0, atol=1e-4)
    np.testing.assert_allclose(keypoints[..., 2], np.broadcast_to(joint_scores, keypoints.shape[:2]), atol=1e-6)
    np.testing.assert_array_equal(np.stack([p['box'] for p in people]), BOXES)
    np.testing.assert_allclose([p['score'] for p in people], box_scores)
    # 6 boxes in batches of 2; the flip test sends plain + mirrored crops in one call.
    assert net.calls == [4, 4, 4] if flip_test else net.calls == [2, 2, 2]


def crop_loader(crops: np.ndarray, centers: np.ndarray, scales: np.ndarray, batch: int) -> list:
    """What run_inference reads from a test DataLoader: (images, target, target_weight, meta) batches."""
    batches = []
    for start in range(0, len(crops), batch):
        part = slice(start, start + batch)
        n = len(crops[part])
        meta = {'center': torch.from_numpy(centers[part]), 'scale': torch.from_numpy(scales[part]),
                'area': torch.ones(n), 'score': torch.ones(n), 'image_id': torch.zeros(n, dtype=torch.int64),
                'index': torch.arange(start, start + n)}
        batches.append((torch.from_numpy(crops[part]), None, None, meta))
    return batches


@pytest.mark.parametrize('flip_test', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
def test_run_inference_and_pose_estimator_give_identical_keypoints(flip_test: bool, channels_last: bool) -> None:
    """Validation/tools/test.py (run_inference on a loader) and the demo (PoseEstimator) on the same crops:
    the same keypoints to the last bit, both on the planted joints, both sending plain + mirrored crops
    as one batch -- they share predict_keypoints."""
    cfg = make_cfg(flip_test)
    meta = get_metainfo(cfg.DATASET.METAINFO)
    joints = plant_joints(np.random.default_rng(2), BOXES, meta.num_joints)
    joint_scores = np.linspace(0.3, 0.9, meta.num_joints)
    centers = BOXES[:, :2] + BOXES[:, 2:] / 2
    est_net = OracleNet(centers, joints, joint_scores, meta.flip_pairs, True)
    loop_net = OracleNet(centers, joints, joint_scores, meta.flip_pairs, True)
    estimator = PoseEstimator(cfg, est_net)

    people = estimator.predict(coordinate_image(), BOXES)
    crops, crop_centers, crop_scales = estimator.preprocess(coordinate_image(), BOXES)
    preds = run_inference(loop_net, crop_loader(crops, crop_centers, crop_scales, batch=2), estimator.codec,
                          meta.flip_pairs, flip_test=flip_test, shift=True, device=torch.device('cpu'),
                          channels_last=channels_last)

    from_estimator = np.stack([p['keypoints'] for p in people])
    np.testing.assert_array_equal(preds['keypoints'], from_estimator)
    np.testing.assert_allclose(preds['keypoints'][..., :2], joints, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(preds['index'], np.arange(len(BOXES)))
    assert loop_net.calls == est_net.calls == ([4, 4, 4] if flip_test else [2, 2, 2])
    # predict_keypoints on one batch is what both called
    direct = predict_keypoints(est_net, torch.from_numpy(crops[:2]), crop_centers[:2], crop_scales[:2],
                               estimator.codec, meta.flip_pairs, flip_test=flip_test, shift=True)
    np.testing.assert_array_equal(direct, from_estimator[:2])


def test_flip_test_without_pair_swap_or_shift_misses() -> None:
    """The oracle is sensitive: skipping the official 1-px shift moves keypoints off the plant."""
    cfg = load_config(None, [
        'MODEL.IMAGE_SIZE', f'[{INPUT_W},{INPUT_H}]', 'MODEL.HEATMAP_SIZE', f'[{HEAT_W},{HEAT_H}]',
        'TEST.SHIFT_HEATMAP', 'False'])
    meta = get_metainfo('coco')
    joints = plant_joints(np.random.default_rng(1), BOXES[:1], meta.num_joints)
    net = OracleNet(BOXES[:1, :2] + BOXES[:1, 2:] / 2, joints, np.ones(meta.num_joints), meta.flip_pairs, True)
    kpts = PoseEstimator(cfg, net).predict(coordinate_image(), BOXES[:1])[0]['keypoints']
    step = box_to_center_scale(BOXES[0], INPUT_W / INPUT_H)[1][0] * 200 / HEAT_W  # one heatmap px in image px
    assert np.all(np.abs(kpts[:, 0] - joints[0, :, 0]) >= 0.2 * step)
    np.testing.assert_allclose(kpts[:, 1], joints[0, :, 1], atol=1e-4)


def test_flip_test_heatmaps_averages_mirrored_pass() -> None:
    """A network that is itself mirror-symmetric (x -> flip) gives the plain output back (shift off)."""
    class Pool4(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.avg_pool2d(x, 4)[:, [0, 1, 2, 1, 0, 2]]  # 6 'joints', pairs (0, 4), (1, 3)

    x = torch.rand(3, 3, 16, 12)
    plain = Pool4()(x)
    out = flip_test_heatmaps(Pool4(), x, [(0, 4), (1, 3)], flip_test=True, shift=False)
    # Channels 0 and 4 (and 1 and 3) read the same input channel, so swapping them is invisible and
    # the mirrored pass, flipped back, equals the plain pass.
    torch.testing.assert_close(out, plain)
    assert flip_test_heatmaps(Pool4(), x, [], flip_test=False) .equal(plain)


def test_predict_checks_its_inputs() -> None:
    cfg = make_cfg(False)
    net = OracleNet(np.zeros((1, 2)), np.zeros((1, 17, 2)), np.ones(17), [], True)
    est = PoseEstimator(cfg, net)
    image = coordinate_image()
    assert est.predict(image, np.zeros((0, 4))) == []
    with pytest.raises(ValueError, match=r'box 1 .* positive width'):
        est.predict(image, [[0, 0, 10, 10], [0, 0, 0, 10]])
    with pytest.raises(ValueError, match=r'\(M, 4\)'):
        est.predict(image, [[0, 0, 10]])
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        est.predict(image[..., 0], [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match='one value per box'):
        est.predict(image, [[0, 0, 10, 10]], box_scores=[0.5, 0.5])


def test_flip_test_matches_official_reference(reference_dir) -> None:
    """Official pipeline oracle: mmpose 0.x flip test (+1 px shift) of the official network on a stored input."""
    from lib.utils.checkpoint import load_checkpoint_file

    path = os.path.join(reference_dir, 'litehrnet_18_coco_256x192.pth')
    reference = load_checkpoint_file(path)['reference']
    cfg = load_config(None, ['MODEL.NAME', 'litehrnet_18'])
    model = PoseEstimator(cfg, weights=path).model
    out = flip_test_heatmaps(model, reference['input'], get_metainfo('coco').flip_pairs, flip_test=True, shift=True)
    torch.testing.assert_close(out, reference['heatmaps_flip_test_shift'], rtol=0, atol=1e-4)


def test_fold_bn_needs_a_fold_bn_method() -> None:
    net = OracleNet(np.zeros((1, 2)), np.zeros((1, 17, 2)), np.ones(17), [], True)
    with pytest.raises(ValueError, match='fold_bn'):
        PoseEstimator(make_cfg(False), net, fold_bn=True)
