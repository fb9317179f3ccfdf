"""Heatmap losses: JointsMSELoss with target weights, and its online hard keypoint mining variant.

Semantics follow mmpose 0.13 (the version the official Lite-HRNet configs ran on): the loss of a joint is
the mean squared error of `pred * w` against `gt * w` over the batch and the heatmap pixels, and the loss
is the mean over joints. There is no 0.5 factor (the HRNet repository has one; mmpose 0.13 does not).
Both losses are computed in float32 even when the network runs in float16 (AMP), because a small MSE in
half precision underflows.

Shapes: B batch, K joints, h x w heatmap.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['JointsMSELoss', 'JointsOHKMMSELoss', 'build_loss']


def _weighted_sq_error(output: torch.Tensor, target: torch.Tensor,
                       target_weight: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel squared error (B, K, h*w) of `output*w` vs `target*w`, in float32."""
    if output.shape != target.shape:
        raise ValueError(f'output {tuple(output.shape)} and target {tuple(target.shape)} differ in shape')
    diff = (output.float() - target.float()).flatten(2)  # (B, K, h*w)
    if target_weight is not None:
        # (pred - gt) * w == pred*w - gt*w: a weight-0 joint contributes exactly 0.
        diff = diff * target_weight.float().reshape(diff.shape[0], diff.shape[1], 1)
    return diff * diff


class JointsMSELoss(nn.Module):
    """Mean over joints of the per-joint MSE (mean over batch and pixels); vectorised, no Python loop.

    forward(output (B,K,h,w), target (B,K,h,w), target_weight (B,K,1) or (B,K)) -> scalar float32.
    """

    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor | None = None) -> torch.Tensor:
        weight = target_weight if self.use_target_weight else None
        # Every joint has the same number of pixels, so the mean over all elements equals the mean
        # over joints of each joint's own mean.
        return _weighted_sq_error(output, target, weight).mean() * self.loss_weight


class JointsOHKMMSELoss(nn.Module):
    """Online hard keypoint mining: per sample, the mean of its `topk` largest per-joint MSEs.

    forward(output (B,K,h,w), target (B,K,h,w), target_weight (B,K,1) or (B,K)) -> scalar float32.
    """

    def __init__(self, use_target_weight: bool = True, topk: int = 8, loss_weight: float = 1.0) -> None:
        super().__init__()
        if topk <= 0:
            raise ValueError(f'LOSS.TOPK must be positive, got {topk}')
        self.use_target_weight = use_target_weight
        self.topk = topk
        self.loss_weight = loss_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor | None = None) -> torch.Tensor:
        weight = target_weight if self.use_target_weight else None
        per_joint = _weighted_sq_error(output, target, weight).mean(dim=2)  # (B, K)
        if self.topk > per_joint.shape[1]:
            raise ValueError(f'LOSS.TOPK {self.topk} exceeds the number of joints {per_joint.shape[1]}')
        hardest, _ = per_joint.topk(self.topk, dim=1)  # (B, topk)
        return hardest.mean() * self.loss_weight


def build_loss(cfg) -> nn.Module:
    """The training loss named by cfg.LOSS (USE_OHKM, TOPK, USE_TARGET_WEIGHT, LOSS_WEIGHT)."""
    if cfg.LOSS.USE_OHKM:
        return JointsOHKMMSELoss(cfg.LOSS.USE_TARGET_WEIGHT, cfg.LOSS.TOPK, cfg.LOSS.LOSS_WEIGHT)
    return JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT, cfg.LOSS.LOSS_WEIGHT)
