"""Model zoo: `build_model(cfg)` builds the Lite-HRNet variant named by cfg.MODEL.NAME.

    model = build_model(cfg)                      # (B, 3, H, W) normalised images -> (B, K, H/4, W/4) heatmaps
    folded = model.fold_bn()                      # eval-only copy with BatchNorm folded into the convs
    baseline = build_model(cfg, kernels='official')   # the official code's forward order (speed baseline)
    onnx_ready = model.with_kernels('export')     # same weights, one standard ONNX operator per step

Variants are rows of `VARIANTS` (lib/models/litehrnet.py); kernel sets are rows of `KERNELS`
(lib/models/layers.py). Parameter names are the official mmpose ones, so
`lib.utils.checkpoint.load_weights(model, official_checkpoint)` works unchanged. Turning a trained
model into a deployed one (deploy form, ONNX, runtimes) is `lib.export`, which this package does not import.
"""
from __future__ import annotations

from .layers import KERNELS, Kernels
from .litehrnet import VARIANTS, LiteHRNet, LiteHRNetSpec, PoseLiteHRNet

__all__ = ['KERNELS', 'Kernels', 'VARIANTS', 'LiteHRNet', 'LiteHRNetSpec', 'PoseLiteHRNet', 'build_model']


def build_model(cfg, kernels: Kernels | str = 'train') -> PoseLiteHRNet:
    """The model described by cfg.MODEL (NAME, NUM_JOINTS, WITH_CP, NORM_EVAL, INIT), written with the
    kernel set `kernels`: 'train' (eager PyTorch, the default), 'compiled' (torch.compile), 'export' (ONNX)
    or 'official'."""
    name = cfg.MODEL.NAME
    if name not in VARIANTS:
        raise ValueError(f"MODEL.NAME {name!r} is not a known variant; choose one of {sorted(VARIANTS)}")
    return PoseLiteHRNet(VARIANTS[name], cfg.MODEL.NUM_JOINTS, with_cp=cfg.MODEL.WITH_CP,
                         norm_eval=cfg.MODEL.NORM_EVAL, init=cfg.MODEL.INIT, kernels=kernels)
