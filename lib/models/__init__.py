"""Model zoo: `build_model(cfg)` builds the Lite-HRNet variant named by cfg.MODEL.NAME.

    model = build_model(cfg)           # (B, 3, H, W) normalised images -> (B, K, H/4, W/4) heatmaps
    fast = model.fold_bn()                 # eval-only copy with BatchNorm folded into the convs
    deploy = to_deploy(model)           # inference form for ONNX export (lib/models/deploy.py)

Variants are rows of `VARIANTS` (lib/models/litehrnet.py). Parameter names are the official mmpose
ones, so `lib.utils.checkpoint.load_weights(model, official_checkpoint)` works unchanged.
"""
from __future__ import annotations

from torch import nn

from .deploy import to_deploy
from .litehrnet import VARIANTS, LiteHRNet, LiteHRNetSpec, PoseLiteHRNet

__all__ = ['VARIANTS', 'LiteHRNet', 'LiteHRNetSpec', 'PoseLiteHRNet', 'build_model', 'to_deploy']


def build_model(cfg) -> PoseLiteHRNet:
    """The model described by cfg.MODEL (NAME, NUM_JOINTS, WITH_CP, NORM_EVAL, INIT)."""
    name = cfg.MODEL.NAME
    if name not in VARIANTS:
        raise ValueError(f"MODEL.NAME {name!r} is not a known variant; choose one of {sorted(VARIANTS)}")
    return PoseLiteHRNet(VARIANTS[name], cfg.MODEL.NUM_JOINTS, with_cp=cfg.MODEL.WITH_CP,
                         norm_eval=cfg.MODEL.NORM_EVAL, init=cfg.MODEL.INIT)
