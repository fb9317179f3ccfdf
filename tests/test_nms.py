"""OKS NMS: hand-computed cases on both backends, and Cython == NumPy on random inputs."""
import importlib
import math
import sys

import numpy as np
import pytest

import lib.nms as nms
from lib.nms import oks_iou, oks_nms, soft_oks_nms

needs_cython = pytest.mark.skipif(not nms.cython_available(),
                                  reason='Cython NMS extension not built (run `make build`)')
BACKENDS = ['numpy', pytest.param('cython', marks=needs_cython)]

SIG2 = np.array([0.1, 0.2])  # two joints, easy numbers


def pose(xy, vis=1.0):
    """(K,3) keypoints from (K,2) coordinates and a joint score."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.concatenate([xy, np.full((len(xy), 1), vis)], axis=1)


def det(xy, score, area=100.0, vis=1.0):
    return {'keypoints': pose(xy, vis), 'area': area, 'score': score}


def test_oks_iou_hand_computed():
    # Shift both joints by 1 px, areas 100: e_k = 1 / (2 sigma_k)^2 / 100 / 2 -> 0.125 and 0.03125.
    g = pose([[0, 0], [10, 10]])
    d = pose([[1, 0], [10, 11]])[None]
    expected = (math.exp(-0.125) + math.exp(-0.03125)) / 2  # 0.92587
    assert oks_iou(g, d, 100.0, np.array([100.0]), SIG2)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('thr, kept', [(0.92, [0]), (0.93, [0, 1])])
def test_oks_nms_threshold_known_case(backend, thr, kept):
    # OKS of the pair is 0.92587 (above): dropped at 0.92, kept at 0.93 ("drop when OKS > thr").
    db = [det([[0, 0], [10, 10]], 0.9), det([[1, 0], [10, 11]], 0.8)]
    assert oks_nms(db, thr, SIG2, backend=backend) == kept


@pytest.mark.parametrize('backend', BACKENDS)
def test_oks_nms_greedy_order_and_far_poses(backend):
    a = [[0, 0], [10, 10]]
    far = [[500, 500], [510, 510]]
    db = [det(a, 0.5), det(far, 0.7), det(a, 0.9), det(far, 0.6)]
    # Best first: 2 (a) drops 0 (same pose); 1 (far) drops 3.
    assert oks_nms(db, 0.9, SIG2, backend=backend) == [2, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_equal_scores_keep_input_order(backend):
    db = [det([[0, 0], [10, 10]], 0.5), det([[0, 0], [10, 10]], 0.5), det([[300, 0], [310, 10]], 0.5)]
    assert oks_nms(db, 0.9, SIG2, backend=backend) == [0, 2]
    assert soft_oks_nms(db, 0.9, SIG2, backend=backend) == [0, 2, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_in_vis_thre_counts_joints_above_it_in_both_poses(backend):
    # Joint 1 is far off, but its score is 0.1 in the second pose: with in_vis_thre=0.2 only joint 0
    # counts, whose OKS is 1 -> suppressed. Without the threshold the mean OKS is ~0.5 -> kept.
    db = [{'keypoints': pose([[0, 0], [10, 10]]), 'area': 100.0, 'score': 0.9},
          {'keypoints': np.array([[0, 0, 1.0], [90, 90, 0.1]]), 'area': 100.0, 'score': 0.8}]
    assert oks_nms(db, 0.9, SIG2, backend=backend) == [0, 1]
    assert oks_nms(db, 0.9, SIG2, in_vis_thre=0.2, backend=backend) == [0]
    # No joint above the threshold in both poses: OKS 0, nothing is suppressed.
    assert oks_nms(db, 0.0, SIG2, in_vis_thre=1.5, backend=backend) == [0, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_soft_oks_nms_known_case(backend):
    a = [[0, 0], [10, 10]]
    db = [det(a, 0.9), det(a, 0.8), det([[400, 0], [410, 10]], 0.7)]
    # Gaussian: the copy of pose 0 decays to 0.8 * exp(-1 / 0.9) = 0.26 < 0.7, so it comes last.
    assert soft_oks_nms(db, 0.9, SIG2, backend=backend) == [0, 2, 1]
    assert soft_oks_nms(db, 0.9, SIG2, max_dets=2, backend=backend) == [0, 2]
    # Linear: OKS 1 >= 0.5 -> 0.8 * (1 - 1) = 0; OKS 0 < 0.5 leaves the far pose at 0.7.
    assert soft_oks_nms(db, 0.5, SIG2, method='linear', backend=backend) == [0, 2, 1]
    # Without decay the copy (0.8) would precede the far pose (0.7): a weak OKS keeps that order.
    weak = [det(a, 0.9), det([[30, 0], [40, 10]], 0.8), det([[400, 0], [410, 10]], 0.7)]
    assert soft_oks_nms(weak, 0.9, SIG2, backend=backend) == [0, 1, 2]


@pytest.mark.parametrize('backend', BACKENDS)
def test_empty_and_flat_keypoints(backend):
    assert oks_nms([], 0.9, SIG2, backend=backend) == []
    assert soft_oks_nms([], 0.9, SIG2, backend=backend) == []
    db = [{'keypoints': [0, 0, 1, 10, 10, 1], 'area': 100, 'score': 0.9}]  # flat K*3 list, as HRNet allows
    assert oks_nms(db, 0.9, SIG2, backend=backend) == [0]


def test_bad_input_names_the_entry():
    db = [det([[0, 0], [10, 10]], 0.9), {'keypoints': np.zeros((3, 3)), 'area': 1.0, 'score': 0.5}]
    with pytest.raises(ValueError, match=r"kpts_db\[1\]\['keypoints'\] has 9 values, expected 2 joints"):
        oks_nms(db, 0.9, SIG2)
    with pytest.raises(ValueError, match=r"kpts_db\[0\] needs"):
        oks_nms([{'keypoints': np.zeros((2, 3)), 'score': 0.5}], 0.9, SIG2)
    with pytest.raises(ValueError, match='non-finite'):
        oks_nms([det([[0, 0], [1, 1]], float('nan'))], 0.9, SIG2)
    with pytest.raises(ValueError, match="method must be one of"):
        soft_oks_nms([det([[0, 0], [1, 1]], 0.5)], 0.9, SIG2, method='box')


def random_db(rng, n, k=17):
    """Poses clustered around three people so that many pairs overlap strongly."""
    people = rng.uniform(0, 300, (3, k, 2))
    db = []
    for _ in range(n):
        xy = people[rng.integers(3)] + rng.normal(0, rng.uniform(0.3, 15), (k, 2))
        db.append({'keypoints': np.concatenate([xy, rng.uniform(0, 1, (k, 1))], axis=1),
                   'area': rng.uniform(200, 20000), 'score': float(rng.uniform())})
    return db


@needs_cython
@pytest.mark.parametrize('in_vis_thre', [None, 0.2])
def test_cython_matches_numpy_on_random_inputs(in_vis_thre):
    from lib.dataset.metainfo import get_metainfo

    sigmas = get_metainfo('coco').sigmas
    rng = np.random.default_rng(0)
    for _ in range(30):
        db = random_db(rng, int(rng.integers(1, 40)))
        if rng.uniform() < 0.2:  # exact score ties must break the same way
            for d in db:
                d['score'] = round(d['score'], 1)
        for thr in (0.3, 0.9):
            args = (db, thr, sigmas, in_vis_thre)
            assert oks_nms(*args, backend='cython') == oks_nms(*args, backend='numpy')
            for method in ('gaussian', 'linear'):
                for max_dets in (5, 20):
                    kw = dict(max_dets=max_dets, method=method)
                    assert soft_oks_nms(*args, **kw, backend='cython') == soft_oks_nms(*args, **kw, backend='numpy')


def test_import_falls_back_to_numpy_without_the_extension(monkeypatch):
    # A None entry in sys.modules makes `from . import cpu_nms` raise ImportError, as when it is not built.
    monkeypatch.setitem(sys.modules, 'lib.nms.cpu_nms', None)
    monkeypatch.delattr(nms, 'cpu_nms', raising=False)
    try:
        fallback = importlib.reload(nms)
        assert fallback.BACKEND == 'numpy' and not fallback.cython_available()
        assert fallback.oks_nms([det([[0, 0], [1, 1]], 0.9), det([[0, 0], [1, 1]], 0.8)], 0.9, SIG2) == [0]
        with pytest.raises(RuntimeError, match='make build'):
            fallback.oks_nms([det([[0, 0], [1, 1]], 0.9)], 0.9, SIG2, backend='cython')
    finally:
        monkeypatch.undo()
        importlib.reload(nms)
