"""lr_at: linear warmup, step decay at exactly the configured epochs, cosine; pure in (iteration, epoch length)."""
import math

import pytest
import torch

from lib.config import load_config
from lib.core.lr_scheduler import lr_at, set_lr


def train_cfg(**overrides):
    opts = []
    for key, value in overrides.items():
        opts += [f'TRAIN.{key}', repr(value)]
    return load_config(opts=opts).TRAIN


def test_linear_warmup():
    t = train_cfg(LR=0.002, WARMUP_ITERS=500, WARMUP_RATIO=0.001)
    assert lr_at(t, 0, 100) == pytest.approx(0.002 * 0.001)
    assert lr_at(t, 250, 100) == pytest.approx(0.002 * (0.001 + 0.999 * 0.5))
    assert lr_at(t, 499, 100) < 0.002
    assert lr_at(t, 500, 100) == pytest.approx(0.002)
    lrs = [lr_at(t, i, 100) for i in range(501)]
    assert all(a < b for a, b in zip(lrs, lrs[1:]))


def test_step_decay_at_exact_epochs():
    """LR_STEP [3, 5]: epochs 0-2 at LR, 3-4 at LR/10, 5+ at LR/100 (HRNet's loop would decay at epoch 2)."""
    t = train_cfg(LR=0.1, LR_STEP=[3, 5], LR_FACTOR=0.1, WARMUP_ITERS=0)
    ipe = 10
    assert lr_at(t, 3 * ipe - 1, ipe) == pytest.approx(0.1)  # last step of epoch 2
    assert lr_at(t, 3 * ipe, ipe) == pytest.approx(0.01)  # first step of epoch 3
    assert lr_at(t, 5 * ipe - 1, ipe) == pytest.approx(0.01)
    assert lr_at(t, 5 * ipe, ipe) == pytest.approx(0.001)


def test_step_matches_multisteplr_stepped_after_each_epoch():
    """Oracle: torch's MultiStepLR used correctly (scheduler.step() after the epoch's training)."""
    t = train_cfg(LR=0.002, LR_STEP=[170, 200], LR_FACTOR=0.1, WARMUP_ITERS=0)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.002)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[170, 200], gamma=0.1)
    ipe = 3
    for epoch in range(210):
        for i in range(ipe):
            assert lr_at(t, epoch * ipe + i, ipe) == pytest.approx(opt.param_groups[0]['lr'], rel=1e-12)
        opt.step()
        sched.step()
    assert lr_at(t, 169 * ipe, ipe) == pytest.approx(0.002)
    assert lr_at(t, 170 * ipe, ipe) == pytest.approx(0.0002)


def test_warmup_multiplies_the_scheduled_lr():
    t = train_cfg(LR=1.0, LR_STEP=[1], WARMUP_ITERS=20, WARMUP_RATIO=0.5)
    assert lr_at(t, 10, 5) == pytest.approx(0.1 * (0.5 + 0.5 * 10 / 20))  # epoch 2 is already decayed


def test_cosine():
    t = train_cfg(LR=0.01, LR_SCHEDULE='cosine', END_EPOCH=4, WARMUP_ITERS=0)
    ipe, total = 25, 100
    assert lr_at(t, 0, ipe) == pytest.approx(0.01)
    assert lr_at(t, total // 2, ipe) == pytest.approx(0.005)
    assert lr_at(t, 25, ipe) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(t, total, ipe) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at(t, i, ipe) for i in range(total + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    warm = train_cfg(LR=0.01, LR_SCHEDULE='cosine', END_EPOCH=4, WARMUP_ITERS=10, WARMUP_RATIO=0.1)
    assert lr_at(warm, 0, ipe) == pytest.approx(0.001)


def test_bad_values_raise():
    with pytest.raises(ValueError, match='LR_SCHEDULE'):
        lr_at(train_cfg(LR_SCHEDULE='poly'), 0, 10)
    with pytest.raises(ValueError, match='iters_per_epoch'):
        lr_at(train_cfg(), 0, 0)


def test_set_lr_writes_every_group():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([{'params': [a]}, {'params': [b], 'lr': 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g['lr'] for g in opt.param_groups] == [0.25, 0.25]
