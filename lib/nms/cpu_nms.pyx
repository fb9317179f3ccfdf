# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""OKS NMS loops in C: the same algorithms, arguments and results as the NumPy functions in `nms.py`.

Built by `make build` (`python setup_linux.py build_ext --inplace`, a C compiler only). The public
entry points are `lib.nms.oks_nms` / `soft_oks_nms`, which prepare the arrays and the initial order
and call these. Shapes: kpts (N,K,3) float64 C-contiguous, areas (N,), scores (N,), order (N,) intp,
sigmas (K,).
"""
import numpy as np

from libc.math cimport exp

# Same constant as nms.AREA_EPS (np.spacing(1)): keeps OKS finite for zero-area boxes.
cdef double AREA_EPS = 2.220446049250313e-16


cdef double _oks(const double[:, :, ::1] kpts, const double[::1] areas, const double[::1] variances,
                 Py_ssize_t g, Py_ssize_t d, bint use_vis, double vis_thr) nogil:
    """OKS between poses g and d; with use_vis only joints above vis_thr in both poses count."""
    cdef Py_ssize_t k, num_joints = kpts.shape[1]
    cdef double dx, dy, e, total = 0.0
    cdef double mean_area = (areas[g] + areas[d]) / 2.0 + AREA_EPS
    cdef Py_ssize_t n = 0
    for k in range(num_joints):
        if use_vis and not (kpts[g, k, 2] > vis_thr and kpts[d, k, 2] > vis_thr):
            continue
        dx = kpts[d, k, 0] - kpts[g, k, 0]
        dy = kpts[d, k, 1] - kpts[g, k, 1]
        e = (dx * dx + dy * dy) / variances[k] / mean_area / 2.0
        total += exp(-e)
        n += 1
    if n == 0:
        return 0.0
    return total / n


def greedy_oks_nms(const double[:, :, ::1] kpts, const double[::1] areas, order, const double[::1] sigmas,
                   double thr, in_vis_thre=None):
    """Greedy OKS NMS over `order` (see nms.greedy_oks_nms). Returns kept indices (intp) in keep order."""
    cdef Py_ssize_t[::1] ord_ = np.ascontiguousarray(order, dtype=np.intp)
    cdef Py_ssize_t n = ord_.shape[0]
    cdef double[::1] variances = np.ascontiguousarray((2.0 * np.asarray(sigmas)) ** 2)
    cdef bint use_vis = in_vis_thre is not None
    cdef double vis_thr = float(in_vis_thre) if use_vis else 0.0
    suppressed_arr = np.zeros(n, dtype=np.uint8)
    keep_arr = np.empty(n, dtype=np.intp)
    cdef unsigned char[::1] suppressed = suppressed_arr
    cdef Py_ssize_t[::1] keep = keep_arr
    cdef Py_ssize_t a, b, num_keep = 0
    with nogil:
        for a in range(n):
            if suppressed[a]:
                continue
            keep[num_keep] = ord_[a]
            num_keep += 1
            for b in range(a + 1, n):
                if not suppressed[b] and _oks(kpts, areas, variances, ord_[a], ord_[b], use_vis, vis_thr) > thr:
                    suppressed[b] = 1
    return keep_arr[:num_keep].copy()


def soft_oks_nms_arrays(const double[:, :, ::1] kpts, const double[::1] areas, scores, order,
                        const double[::1] sigmas, double thr, in_vis_thre=None, Py_ssize_t max_dets=20,
                        str method='gaussian'):
    """Soft OKS NMS (see nms.soft_oks_nms_arrays). Returns kept indices (intp) in keep order."""
    if method not in ('gaussian', 'linear'):
        raise ValueError(f"soft OKS NMS: method must be one of ('gaussian', 'linear'), got '{method}'")
    ord_arr = np.array(order, dtype=np.intp)  # a private copy: it is re-sorted in place
    cur_arr = np.ascontiguousarray(np.asarray(scores, dtype=np.float64)[ord_arr])
    cdef Py_ssize_t[::1] ord_ = ord_arr
    cdef double[::1] cur = cur_arr
    cdef Py_ssize_t n = ord_.shape[0]
    cdef double[::1] variances = np.ascontiguousarray((2.0 * np.asarray(sigmas)) ** 2)
    cdef bint use_vis = in_vis_thre is not None
    cdef double vis_thr = float(in_vis_thre) if use_vis else 0.0
    cdef bint linear = method == 'linear'
    keep_arr = np.empty(min(max(max_dets, 0), n), dtype=np.intp)
    cdef Py_ssize_t[::1] keep = keep_arr
    cdef Py_ssize_t start, j, p, q, key_idx, num_keep = 0
    cdef double ovr, key
    with nogil:
        start = 0
        while start < n and num_keep < max_dets:
            keep[num_keep] = ord_[start]
            num_keep += 1
            for j in range(start + 1, n):
                ovr = _oks(kpts, areas, variances, ord_[start], ord_[j], use_vis, vis_thr)
                if linear:
                    if ovr >= thr:
                        cur[j] = cur[j] * (1.0 - ovr)
                else:
                    cur[j] = cur[j] * exp(-(ovr * ovr) / thr)
            start += 1
            # Stable insertion sort of the rest by descending score: the order numpy's stable
            # argsort gives in nms.py, so both backends break ties the same way.
            for p in range(start + 1, n):
                key = cur[p]
                key_idx = ord_[p]
                q = p - 1
                while q >= start and cur[q] < key:
                    cur[q + 1] = cur[q]
                    ord_[q + 1] = ord_[q]
                    q -= 1
                cur[q + 1] = key
                ord_[q + 1] = key_idx
    return keep_arr[:num_keep].copy()
