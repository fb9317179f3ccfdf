"""JointsMSELoss / JointsOHKMMSELoss: known answers and agreement with the mmpose 0.13 per-joint loop."""
import pytest
import torch
from torch import nn

from lib.config import load_config
from lib.core.loss import JointsMSELoss, JointsOHKMMSELoss, build_loss


def reference_mse(output, target, weight, use_target_weight=True):
    """mmpose 0.13 JointsMSELoss.forward, written as its per-joint loop (the oracle)."""
    b, k = output.shape[:2]
    pred = output.reshape(b, k, -1).split(1, 1)
    gt = target.reshape(b, k, -1).split(1, 1)
    loss = 0.0
    for j in range(k):
        p, g = pred[j].squeeze(1), gt[j].squeeze(1)
        if use_target_weight:
            loss = loss + nn.MSELoss()(p * weight[:, j], g * weight[:, j])
        else:
            loss = loss + nn.MSELoss()(p, g)
    return loss / k


def reference_ohkm(output, target, weight, topk):
    """mmpose 0.13 JointsOHKMMSELoss: per-sample top-k of the per-joint MSEs, summed / topk, batch mean."""
    b, k = output.shape[:2]
    per_joint = torch.stack([nn.MSELoss(reduction='none')(output[:, j].reshape(b, -1) * weight[:, j],
                                                          target[:, j].reshape(b, -1) * weight[:, j]).mean(1)
                             for j in range(k)], dim=1)
    return torch.stack([row.topk(topk).values.sum() / topk for row in per_joint]).mean()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    output = torch.rand(3, 5, 8, 6, generator=g)
    target = torch.rand(3, 5, 8, 6, generator=g)
    weight = (torch.rand(3, 5, 1, generator=g) > 0.3).float()
    return output, target, weight


def test_mse_known_answer():
    output, target = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    weight = torch.zeros(2, 3, 1)
    weight[0, 0] = 1.0  # one joint of one sample: 16 unit errors out of 2*3*16 elements
    assert JointsMSELoss(True)(output, target, weight).item() == pytest.approx(1 / 6)
    assert JointsMSELoss(False)(output, target, weight).item() == pytest.approx(1.0)  # weights ignored
    assert JointsMSELoss(True, loss_weight=1000.0)(output, target, weight).item() == pytest.approx(1000 / 6)


def test_mse_matches_reference_loop(batch):
    output, target, weight = batch
    for use_w in (True, False):
        ours = JointsMSELoss(use_w)(output, target, weight)
        assert ours.item() == pytest.approx(reference_mse(output, target, weight, use_w).item(), rel=1e-6)
    # target_weight may also come as (B, K)
    assert JointsMSELoss(True)(output, target, weight[..., 0]).item() == pytest.approx(
        reference_mse(output, target, weight).item(), rel=1e-6)


def test_mse_is_float32_and_masks_gradients(batch):
    output, target, weight = batch
    output = output.half().requires_grad_()
    loss = JointsMSELoss(True)(output, target.half(), weight)
    assert loss.dtype == torch.float32
    loss.backward()
    zero = weight[..., 0] == 0
    assert torch.all(output.grad[zero] == 0) and torch.any(output.grad[~zero] != 0)


def test_ohkm_known_answer():
    output = torch.zeros(1, 4, 2, 2)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1).expand(1, 4, 2, 2)
    weight = torch.ones(1, 4, 1)
    # per-joint MSEs are 1, 4, 9, 16: the two hardest average to 12.5
    assert JointsOHKMMSELoss(True, topk=2)(output, target, weight).item() == pytest.approx(12.5)
    weight[0, 3] = 0  # a weight-0 joint is never "hard": now 9 and 4
    assert JointsOHKMMSELoss(True, topk=2)(output, target, weight).item() == pytest.approx(6.5)


def test_ohkm_matches_reference(batch):
    output, target, weight = batch
    ours = JointsOHKMMSELoss(True, topk=3)(output, target, weight)
    assert ours.item() == pytest.approx(reference_ohkm(output, target, weight, 3).item(), rel=1e-6)
    # topk = K reduces to the plain mean
    assert JointsOHKMMSELoss(True, topk=5)(output, target, weight).item() == pytest.approx(
        JointsMSELoss(True)(output, target, weight).item(), rel=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='shape'):
        JointsMSELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 2, 1))
    with pytest.raises(ValueError, match='TOPK'):
        JointsOHKMMSELoss(topk=20)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 1))


def test_build_loss_reads_config():
    assert isinstance(build_loss(load_config()), JointsMSELoss)
    loss = build_loss(load_config(opts=['LOSS.USE_OHKM', 'True', 'LOSS.TOPK', '4', 'LOSS.LOSS_WEIGHT', '10.0']))
    assert isinstance(loss, JointsOHKMMSELoss) and loss.topk == 4 and loss.loss_weight == 10.0
