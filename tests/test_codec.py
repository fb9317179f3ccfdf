"""MSRA heatmap codec: exact targets, weights, round trips with/without DARK, flip_back; heatmap pixels only."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from lib.codecs import MSRAHeatmap, build_codec, flip_back, gaussian_patch, get_heatmap_maximum
from lib.config import load_config
from lib.dataset.metainfo import COCO

INPUT, HEATMAP = (192, 256), (48, 64)


def _subpixel_gaussian(cx, cy, sigma=2.0, size=HEATMAP):
    x = np.arange(size[0])[None, :]
    y = np.arange(size[1])[:, None]
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_encode_exact_target_and_centre_rounding():
    codec = MSRAHeatmap(INPUT, HEATMAP, sigma=2.0)
    # x / 4 + 0.5 truncated: 9.9 -> 2, 10.0 -> 3; y 13.9 -> 3
    heatmaps, weights = codec.encode(np.array([[9.9, 13.9], [10.0, 13.9]]), np.array([1, 2]))
    patch, radius = gaussian_patch(2.0)
    assert patch.shape == (13, 13) and radius == 6 and patch[6, 6] == 1.0
    np.testing.assert_array_equal(weights, [1, 1])
    for j, mu_x in enumerate((2, 3)):
        assert np.unravel_index(heatmaps[j].argmax(), heatmaps[j].shape) == (3, mu_x)
        # the window is cut at 3 sigma and clipped at the border: rows 0..9, cols 0..mu_x+6
        expected = np.zeros((64, 48), np.float32)
        expected[0:10, 0:mu_x + 7] = patch[3:13, 6 - mu_x:13]
        np.testing.assert_array_equal(heatmaps[j], expected)


def test_invisible_and_out_of_frame_joints_get_weight_zero():
    codec = MSRAHeatmap(INPUT, HEATMAP, sigma=2.0)
    kp = np.array([[50, 50], [50, 50], [-30, 40], [250, 40], [40, 300], [-10, 40], [195, 40]], np.float64)
    vis = np.array([1, 0, 1, 1, 1, 1, 1])
    heatmaps, weights = codec.encode(kp, vis)
    # -30 -> mu int(-7) = -7, window [-13, -0] ends before 0 -> outside; -10 -> mu -2, partly inside
    np.testing.assert_array_equal(weights, [1, 0, 0, 0, 0, 1, 1])
    assert heatmaps[1].max() == 0 and heatmaps[2].max() == 0 and heatmaps[3].max() == 0
    assert 0 < heatmaps[5].max() < 1 and 0 < heatmaps[6].max() < 1  # Gaussian tail inside the map


@pytest.mark.parametrize('use_dark', [False, True])
def test_round_trip_random_joints(use_dark):
    """Decoding an encoded target returns the encoded centre within 0.25 heatmap px (DARK and quarter offset)."""
    codec = MSRAHeatmap(INPUT, HEATMAP, sigma=2.0, use_dark=use_dark)
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 1, (300, 2)) * (np.array(INPUT) - 2)  # centres stay on the map
    heatmaps, weights = codec.encode(kp, np.ones(300))
    coords, scores = codec.decode(heatmaps[None])
    centre = np.floor(kp / 4 + 0.5)
    assert weights.min() == 1 and np.allclose(scores, 1.0)
    err = np.abs(coords[0] - centre)
    assert err.max() <= 0.25
    if not use_dark:
        assert err.max() == 0  # a symmetric peak has equal neighbours: no offset
    # the only loss against the true position is the MSRA centre rounding: half a heatmap pixel
    assert np.abs(coords[0] - kp / 4).max() <= 0.5 + 0.25


def test_subpixel_peak_refinement():
    rng = np.random.default_rng(1)
    centres = rng.uniform([5, 5], [42, 58], (40, 2))
    maps = np.stack([_subpixel_gaussian(cx, cy) for cx, cy in centres])[None]
    plain, _ = MSRAHeatmap(INPUT, HEATMAP, 2.0).decode(maps)
    dark, _ = MSRAHeatmap(INPUT, HEATMAP, 2.0, use_dark=True).decode(maps)
    raw, _ = MSRAHeatmap(INPUT, HEATMAP, 2.0, post_process=False).decode(maps)
    assert np.abs(raw[0] - centres).max() <= 0.5
    assert np.abs(plain[0] - centres).max() <= 0.25 + 1e-6  # the quarter step towards the true centre
    assert np.abs(dark[0] - centres).max() < 0.02  # DARK recovers the sub-pixel centre


def test_quarter_offset_only_strictly_inside_and_empty_maps():
    maps = np.zeros((1, 3, 64, 48), np.float32)
    maps[0, 0, 10, 1] = 1.0
    maps[0, 0, 10, 2] = 0.5  # peak at px = 1: not strictly inside -> no offset
    maps[0, 1, 10, 20] = 1.0
    maps[0, 1, 10, 21] = 0.5  # inside -> +0.25 towards the higher right neighbour
    coords, scores = MSRAHeatmap(INPUT, HEATMAP, 2.0).decode(maps)
    np.testing.assert_allclose(coords[0], [[1, 10], [20.25, 10], [-1, -1]])  # empty map: -1, score 0
    np.testing.assert_allclose(scores[0], [1, 1, 0])


def test_get_heatmap_maximum_shapes():
    maps = np.random.default_rng(0).random((2, 5, 8, 6)).astype(np.float32)
    coords, vals = get_heatmap_maximum(maps)
    assert coords.shape == (2, 5, 2) and vals.shape == (2, 5)
    flat = maps.reshape(2, 5, -1).argmax(-1)
    np.testing.assert_array_equal(coords[..., 0], flat % 6)
    np.testing.assert_array_equal(coords[..., 1], flat // 6)


def test_flip_back_swaps_mirrors_and_shifts():
    maps = np.random.default_rng(0).random((2, 17, 8, 6)).astype(np.float32)
    out = flip_back(maps, COCO.flip_pairs, shift=False)
    perm = COCO.flip_index()
    np.testing.assert_array_equal(out, maps[:, perm, :, ::-1])
    np.testing.assert_array_equal(flip_back(out, COCO.flip_pairs, shift=False), maps)  # an involution
    shifted = flip_back(maps, COCO.flip_pairs, shift=True)
    np.testing.assert_array_equal(shifted[..., 1:], out[..., :-1])
    np.testing.assert_array_equal(shifted[..., 0], out[..., 0])  # column 0 keeps its value
    torch_out = flip_back(torch.from_numpy(maps), COCO.flip_pairs, shift=True)
    np.testing.assert_array_equal(torch_out.numpy(), shifted)
    assert flip_back(maps, COCO.flip_pairs) is not maps


def test_flip_test_decoding_on_symmetric_input():
    """Heatmaps of a mirrored crop, flipped back with the 1-px shift, decode where the plain ones do (+0.25)."""
    codec = MSRAHeatmap(INPUT, HEATMAP, 2.0)
    rng = np.random.default_rng(3)
    kp = rng.uniform(20, 170, (17, 2))
    vis = np.ones(17)
    plain, _ = codec.encode(kp, vis)
    mirrored = kp.copy()
    mirrored[:, 0] = INPUT[0] - 1 - kp[:, 0]
    mirrored = mirrored[COCO.flip_index()]
    flipped, _ = codec.encode(mirrored, vis)
    back, _ = codec.decode(flip_back(flipped[None], COCO.flip_pairs, shift=True))
    expected_x = 48 - np.floor(47.75 - kp[:, 0] / 4 + 0.5)  # mirrored centre, mirrored back, shifted
    np.testing.assert_array_equal(back[0, :, 0], expected_x)
    np.testing.assert_array_equal(back[0, :, 1], np.floor(kp[:, 1] / 4 + 0.5))
    no_shift, _ = codec.decode(flip_back(flipped[None], COCO.flip_pairs, shift=False))
    # the shift removes most of the flip's bias: x' = W - 1 - x is 0.75 heatmap px off after stride 4
    assert abs(np.mean(back[0, :, 0] - kp[:, 0] / 4)) < abs(np.mean(no_shift[0, :, 0] - kp[:, 0] / 4))
    # averaging with the plain output (as at test time) keeps the peak at the plain one's position
    avg, _ = MSRAHeatmap(INPUT, HEATMAP, 2.0, post_process=False).decode(
        (plain[None] + flip_back(flipped[None], COCO.flip_pairs)) / 2)
    assert np.abs(avg[0] - np.floor(kp / 4 + 0.5)).max() <= 1


def test_codec_knows_no_image_geometry():
    """The codec decodes in heatmap pixels; boxes and the 200-px unit belong to lib.dataset.transforms.
    lib.dataset imports lib.codecs, so lib.codecs must not import lib.dataset (or anything of lib but itself)."""
    assert not hasattr(MSRAHeatmap, 'decode_to_image')
    code = ('import sys; import lib.codecs; '
            'print(sorted(m for m in sys.modules if m.startswith("lib.") and not m.startswith("lib.codecs")))')
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == '[]'


def test_build_codec_reads_config():
    cfg = load_config(None, ['MODEL.SIGMA', '3.0', 'TEST.USE_DARK', 'True', 'TEST.BLUR_KERNEL', '7'])
    codec = build_codec(cfg)
    assert (codec.sigma, codec.use_dark, codec.blur_kernel) == (3.0, True, 7)
    assert codec.input_size == tuple(cfg.MODEL.IMAGE_SIZE) and codec.heatmap_size == tuple(cfg.MODEL.HEATMAP_SIZE)


def test_bad_codec_input_is_a_clear_error():
    codec = MSRAHeatmap(INPUT, HEATMAP, 2.0)
    with pytest.raises(ValueError, match='keypoints'):
        codec.encode(np.zeros((17, 2)), np.ones(16))
    with pytest.raises(ValueError, match='heatmaps'):
        codec.decode(np.zeros((17, 64, 48)))
    with pytest.raises(ValueError, match='odd'):
        MSRAHeatmap(INPUT, HEATMAP, 2.0, blur_kernel=4)
