"""Keypoint codecs: joints <-> network targets. One codec object serves both the dataset and inference."""
from __future__ import annotations

from .msra_heatmap import MSRAHeatmap, flip_back, gaussian_patch, get_heatmap_maximum, refine_dark, refine_quarter_offset

__all__ = ['MSRAHeatmap', 'build_codec', 'flip_back', 'gaussian_patch', 'get_heatmap_maximum', 'refine_dark',
           'refine_quarter_offset']


def build_codec(cfg) -> MSRAHeatmap:
    """The heatmap codec of a config: MODEL.IMAGE_SIZE/HEATMAP_SIZE/SIGMA, TEST.USE_DARK/BLUR_KERNEL/POST_PROCESS."""
    if cfg.MODEL.TARGET_TYPE != 'gaussian':
        raise ValueError(f"MODEL.TARGET_TYPE '{cfg.MODEL.TARGET_TYPE}' is not supported (only 'gaussian')")
    return MSRAHeatmap(cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, cfg.MODEL.SIGMA,
                       use_dark=cfg.TEST.USE_DARK, blur_kernel=cfg.TEST.BLUR_KERNEL,
                       post_process=cfg.TEST.POST_PROCESS)
