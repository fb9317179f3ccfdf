"""train_one_epoch never waits for the device inside a step, and build_loader keeps every step's shape.

A toy model (one convolution from the image to the heatmaps) and an in-memory loader keep these tests
fast; tests/test_train.py runs the real loop end to end (logs, TensorBoard, resume, NaN stop).
"""
import logging

import numpy as np
import pytest
import torch

from conftest import load_tool
from lib.config import load_config
from lib.core import function
from lib.core.function import NonFiniteLossError, build_loader, train_one_epoch
from lib.core.loss import JointsMSELoss
from lib.evaluation import pck
from lib.utils.logger import EXIT_BAD_INPUT, EXIT_FAILED, UserError

K, STEPS, BATCH = 3, 5, 2


class ToyPoseNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, K, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def toy_batches(steps: int = STEPS):
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps):
        target = torch.zeros(BATCH, K, 8, 8)
        target[:, :, 4, 3] = 1.0
        batches.append((torch.randn(BATCH, 3, 8, 8, generator=g), target, torch.ones(BATCH, K, 1), {}))
    return batches


class Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, name, value, step):
        self.scalars.append((name, value, step))


def run_epoch(print_freq: int, criterion=None, steps: int = STEPS, writer=None):
    torch.manual_seed(0)
    cfg = load_config(None, ['PRINT_FREQ', str(print_freq), 'TRAIN.WARMUP_ITERS', '0'])
    model = ToyPoseNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # Adam reads its step count with .item()
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    return train_one_epoch(cfg, model, toy_batches(steps), criterion or JointsMSELoss(), optimizer, scaler,
                           epoch=0, iteration=10, iters_per_epoch=steps, device=torch.device('cpu'), writer=writer)


def count_calls(monkeypatch, owner, name: str, counts: dict) -> None:
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)


def test_no_host_sync_per_step(monkeypatch):
    """With PRINT_FREQ > steps the epoch reads the device twice (first and last step), however many steps."""
    counts = {}
    for name in ('item', 'cpu', 'tolist', 'numpy', '__float__', '__bool__'):
        count_calls(monkeypatch, torch.Tensor, name, counts)
    count_calls(monkeypatch, pck, 'accuracy', counts)  # the numpy accuracy copies heatmaps to the host
    for steps in (STEPS, 3 * STEPS):
        counts.clear()
        iteration, _ = run_epoch(print_freq=100, steps=steps)
        assert iteration == 10 + steps
        assert counts == {'tolist': 2}, counts


class RecordingLoss(JointsMSELoss):
    """JointsMSELoss that also keeps each step's value (read with .item(), outside the counted test)."""

    def __init__(self, values=None):
        super().__init__()
        self.values, self.replace = [], values or {}

    def forward(self, output, target, weight):
        loss = super().forward(output, target, weight)
        step = len(self.values)
        if step in self.replace:
            loss = loss * self.replace[step]
        self.values.append(loss.item())
        return loss


def test_reads_log_and_write_window_means(caplog):
    """PRINT_FREQ 2 over 5 steps: reads at steps 1, 3 and 5; each writes the means since the previous read."""
    criterion, writer = RecordingLoss(), Writer()
    with caplog.at_level(logging.INFO, logger='litehrnet'):
        iteration, mean_loss = run_epoch(print_freq=2, criterion=criterion, writer=writer)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith('epoch 0 [')]
    assert [line.split(']')[0] for line in lines] == ['epoch 0 [1/5', 'epoch 0 [3/5', 'epoch 0 [5/5']
    assert all('data_time' in line and 'batch_time' in line and 'samples/s' in line for line in lines)
    losses = {step: value for name, value, step in writer.scalars if name == 'train/loss'}
    steps = criterion.values
    assert losses.keys() == {11, 13, 15}
    assert losses[11] == pytest.approx(steps[0])
    assert losses[13] == pytest.approx(np.mean(steps[1:3]))
    assert losses[15] == pytest.approx(np.mean(steps[3:5]))
    assert mean_loss == pytest.approx(np.mean(steps))
    names = {name for name, _, _ in writer.scalars}
    assert names == {f'train/{n}' for n in ('loss', 'acc', 'lr', 'samples_per_s', 'data_time', 'batch_time')}
    assert all(0 <= value <= 1 for name, value, _ in writer.scalars if name == 'train/acc')


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_a_non_finite_loss_between_reads_stops_at_the_next_read(bad):
    criterion = RecordingLoss({2: bad})  # step 2 of 5; reads at steps 0 and 4 only (inf: NaN weights follow)
    with pytest.raises(NonFiniteLossError, match=r'^loss is (nan|inf) at epoch 0, iterations 11-14') as err:
        run_epoch(print_freq=100, criterion=criterion)
    assert err.value.exit_code == EXIT_FAILED
    assert len(criterion.values) == STEPS  # found at the read of the last step, before returning


def tiny_loader_cfg(root: str, batch: int, workers: int = 0):
    return load_config(None, ['DATASET.ROOT', root, 'DATASET.DATASET', 'coco', 'MODEL.IMAGE_SIZE', '[64,64]',
                              'MODEL.HEATMAP_SIZE', '[16,16]', 'WORKERS', str(workers),
                              'TRAIN.BATCH_SIZE_PER_GPU', str(batch), 'TEST.BATCH_SIZE_PER_GPU', str(batch)])


def test_training_loader_drops_the_partial_batch(synthetic_tiny):
    from lib.dataset import build_dataset
    cfg = tiny_loader_cfg(synthetic_tiny, batch=4, workers=1)
    dataset = build_dataset(cfg, is_train=True)
    assert len(dataset) % 4 != 0  # so there is a partial batch to drop
    loader = build_loader(cfg, dataset, train=True)
    assert len(loader) == len(dataset) // 4
    assert [images.shape[0] for images, *_ in loader] == [4] * len(loader)
    assert loader.prefetch_factor == function.PREFETCH_BATCHES and not loader.persistent_workers
    test_loader = build_loader(cfg, dataset, train=False)  # testing keeps every sample
    assert sum(images.shape[0] for images, *_ in test_loader) == len(dataset)


def test_a_training_set_smaller_than_one_batch_is_an_error(synthetic_tiny):
    from lib.dataset import build_dataset
    cfg = tiny_loader_cfg(synthetic_tiny, batch=64)
    dataset = build_dataset(cfg, is_train=True)
    with pytest.raises(UserError, match=r'fewer than one batch \(TRAIN.BATCH_SIZE_PER_GPU 64\)') as err:
        build_loader(cfg, dataset, train=True)
    assert err.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(UserError, match=r'9 sample\(s\), 5 per process, .*BATCH_SIZE_PER_GPU 6'):  # 2 processes
        build_loader(tiny_loader_cfg(synthetic_tiny, batch=6), dataset, train=True, world_size=2)
    build_loader(tiny_loader_cfg(synthetic_tiny, batch=64), dataset, train=False)  # testing: any batch


@pytest.mark.parametrize('amp, dtype, device, expected', [
    (False, 'bfloat16', 'cpu', None),
    (True, 'bfloat16', 'cpu', torch.bfloat16),  # bfloat16 autocast runs on CPUs
    (True, 'float16', 'cpu', None),  # float16 autocast with loss scaling is CUDA's
])
def test_amp_dtype(amp, dtype, device, expected):
    cfg = load_config(None, ['TRAIN.AMP', str(amp), 'TRAIN.AMP_DTYPE', dtype])
    assert function.amp_dtype(cfg, torch.device(device)) is expected


def train_toy(amp: bool) -> tuple[float, float, list]:
    """(loss before, loss after 20 steps, forward output dtypes) of the toy net, with or without bf16 autocast."""
    seen = []

    class Recording(ToyPoseNet):
        def forward(self, x):
            out = super().forward(x)
            seen.append(out.dtype)
            return out

    torch.manual_seed(0)
    cfg = load_config(None, ['TRAIN.AMP', str(amp), 'TRAIN.AMP_DTYPE', 'bfloat16', 'TRAIN.WARMUP_ITERS', '0'])
    model = Recording()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    criterion, batches = JointsMSELoss(), toy_batches(20)

    @torch.no_grad()
    def loss() -> float:
        return float(criterion(model(batches[0][0]).float(), batches[0][1], batches[0][2]))
    before = loss()
    train_one_epoch(cfg, model, batches, criterion, optimizer, torch.amp.GradScaler('cpu', enabled=False), epoch=0,
                    iteration=0, iters_per_epoch=20, device=torch.device('cpu'))
    return before, loss(), seen[1:21]


def test_bfloat16_autocast_trains_without_loss_scaling():
    """TRAIN.AMP_DTYPE bfloat16: the training forward runs in bfloat16 (the loss in float32), no scaler, and
    the steps follow float32's: the loss falls by as much."""
    before, after_bf16, dtypes = train_toy(amp=True)
    _, after_fp32, fp32_dtypes = train_toy(amp=False)
    assert dtypes == [torch.bfloat16] * 20 and fp32_dtypes == [torch.float32] * 20
    assert after_fp32 < before and after_bf16 == pytest.approx(after_fp32, rel=0.02)


@pytest.mark.parametrize('name', ['adam', 'adamw'])
def test_adam_runs_fused_where_torch_has_the_kernel_with_the_same_update(name):
    build_optimizer = load_tool('train').build_optimizer
    cfg = load_config(None, ['TRAIN.OPTIMIZER', name, 'TRAIN.WD', '0.01', 'TRAIN.ADAM_EPS', '1e-11'])
    torch.manual_seed(0)
    fast, plain = ToyPoseNet(), ToyPoseNet()
    plain.load_state_dict(fast.state_dict())
    optimizer = build_optimizer(cfg, fast)
    fused_on_cpu = tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 4)
    assert optimizer.defaults['fused'] is (True if fused_on_cpu else None)
    reference = type(optimizer)(plain.parameters(), lr=cfg.TRAIN.LR, eps=1e-11, weight_decay=0.01)
    for x, target, weight, _ in toy_batches():
        for net, opt in ((fast, optimizer), (plain, reference)):
            opt.zero_grad()
            JointsMSELoss(True)(net(x), target, weight).backward()
            opt.step()
    for a, b in zip(fast.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
