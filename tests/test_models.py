"""Lite-HRNet variants: shapes, gradients, determinism, checkpointing, the fusion rule, building blocks."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lib.config import load_config
from lib.models import VARIANTS, build_model
from lib.models.layers import (SyncBatchNorm2d, TwiceUpdatedBatchNorm2d, TwiceUpdatedSyncBatchNorm2d,
                               convert_sync_batchnorm, channel_shuffle, concat_shuffle, multiply_nearest,
                               pool_to, upsample_nearest)
from lib.models.litehrnet import CrossResolutionWeighting, LiteHRModule, PoseLiteHRNet, SpatialWeighting

SIZE = (64, 64)  # small input that still gives all four branches (16x16 ... 2x2)


pytestmark = pytest.mark.usefixtures('single_thread_module')  # small tensors: one thread is fastest


def _cfg(name, *opts):
    return load_config(None, ['MODEL.NAME', name, 'MODEL.NUM_JOINTS', 5] + list(opts))


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN affine parameters and running statistics, so eval-mode tests mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    return model


# ---------------------------------------------------------------------------------------------
# Every variant
@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_shape_gradients_determinism(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name, 'MODEL.INIT', 'kaiming'))
    x = torch.randn(2, 3, *SIZE)
    out = model(x)
    assert out.shape == (2, 5, SIZE[0] // 4, SIZE[1] // 4)
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f'parameters without gradient: {no_grad[:5]}'
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_checkpointing_identical(name):
    """MODEL.WITH_CP: same outputs, gradients AND BN running statistics (no double update on recompute)."""
    torch.manual_seed(0)
    plain = build_model(_cfg(name, 'MODEL.INIT', 'kaiming'))
    cp = build_model(_cfg(name, 'MODEL.INIT', 'kaiming', 'MODEL.WITH_CP', True))
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, *SIZE)
    outs = []
    for model in (plain, cp):
        out = model(x)
        out.square().mean().backward()
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
    for (n, a), b in zip(plain.named_parameters(), cp.parameters()):
        assert torch.equal(a.grad, b.grad), n
    for (n, a), b in zip(plain.state_dict().items(), cp.state_dict().values()):
        assert torch.equal(a, b), n


def test_fold_bn_matches_eval_and_leaves_model_alone():
    torch.manual_seed(0)
    model = _randomise_bn(build_model(_cfg('litehrnet_18', 'MODEL.INIT', 'kaiming'))).eval()
    x = torch.randn(2, 3, *SIZE)
    folded = model.fold_bn()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    with pytest.raises(RuntimeError, match='inference only'):
        folded.train()


def test_norm_eval_freezes_statistics():
    model = build_model(_cfg('naive_litehrnet_18', 'MODEL.NORM_EVAL', True)).train()
    before = copy.deepcopy(model.state_dict())
    model(torch.randn(2, 3, *SIZE))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_init_schemes_and_bad_names():
    official = build_model(_cfg('litehrnet_18'))
    conv = official.backbone.stem.conv1.conv.weight
    assert abs(conv.std().item() - 0.001) < 0.0003
    assert torch.equal(official.keypoint_head.final_layer.bias, torch.zeros(5))
    kaiming = build_model(_cfg('litehrnet_18', 'MODEL.INIT', 'kaiming'))
    # fan_out = 32 * 3 * 3 -> std sqrt(2 / 288)
    assert abs(kaiming.backbone.stem.conv1.conv.weight.std().item() - math.sqrt(2 / 288)) < 0.02
    with pytest.raises(ValueError, match='MODEL.INIT'):
        build_model(_cfg('litehrnet_18', 'MODEL.INIT', 'xavier'))
    with pytest.raises(ValueError, match="litehrnet_99.*litehrnet_18"):
        build_model(_cfg('litehrnet_99'))


def test_naive_head_takes_backbone_channels():
    """The released Naive-18 config's 40-channel head cannot run on its 30-channel output; ours uses 30."""
    model = build_model(_cfg('naive_litehrnet_18'))
    assert model.keypoint_head.final_layer.weight.shape == (5, 30, 1, 1)


# ---------------------------------------------------------------------------------------------
# Kernel sets: one model, the operations written for eager training, ONNX export or the official order
@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_kernel_sets_compute_the_same_model(name):
    """'export', 'official' and 'compiled' build the same network: same heatmaps in eval mode, and in training
    mode the same outputs, gradients and BN running statistics (the official order runs each branch-0 fuse
    path twice with one plain update each; ours runs it once with the equivalent double update). In
    float64, so that rounding differences between the orders cannot hide a real one."""
    torch.manual_seed(0)
    model = _randomise_bn(build_model(_cfg(name, 'MODEL.INIT', 'kaiming'))).double()
    x = torch.randn(2, 3, *SIZE, dtype=torch.float64)
    rng_before = torch.random.get_rng_state()
    others = {k: model.with_kernels(k) for k in ('export', 'official', 'compiled')}
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # building a copy draws no random numbers
    with torch.no_grad():
        ref = model.eval()(x)
        for kernels, other in others.items():
            assert other.kernels.name == kernels and other.training  # copied in the mode of the model
            assert torch.allclose(other.eval()(x), ref, rtol=0, atol=1e-10 * ref.abs().max().item()), kernels
    trained = model.train()
    loss = trained(x).square().mean()
    loss.backward()
    # Gradients as one vector: some are rounding noise around 0 (a BN bias followed by a train-mode BN).
    grads = torch.cat([p.grad.flatten() for p in trained.parameters()])
    for kernels in ('official', 'compiled'):
        other = others[kernels].train()
        other_loss = other(x).square().mean()
        other_loss.backward()
        assert torch.allclose(other_loss, loss, rtol=1e-10), kernels
        for (key, a), b in zip(trained.state_dict().items(), other.state_dict().values()):
            assert torch.allclose(a.double(), b.double(), rtol=1e-9, atol=1e-12), (kernels, key)
        other_grads = torch.cat([p.grad.flatten() for p in other.parameters()])
        assert torch.allclose(other_grads, grads, rtol=0, atol=1e-9 * grads.abs().max().item()), kernels
    with pytest.raises(ValueError, match="kernels must be one of"):
        model.with_kernels('fast')
    with pytest.raises(RuntimeError, match='before fold_bn'):
        model.eval().fold_bn().with_kernels('export')


class _AtenOps(TorchDispatchMode):
    """Records the names of the ATen operators that run (forward and, on CPU, backward) while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_compiled_kernels_run_no_gather_forward_or_backward():
    """The 'compiled' set exists to keep gathers (and their index_add gradient, which torch 2.13's inductor
    miscompiles) out of compiled graphs: a training step of a 'compiled' model runs neither; the eager
    'train' set does (so the recorder sees backward operators too)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, *SIZE)
    ops = {}
    for kernels in ('train', 'compiled'):
        model = build_model(_cfg('litehrnet_18'), kernels=kernels).train()
        with _AtenOps() as recorder:
            model(x).square().mean().backward()
        ops[kernels] = recorder.names
    assert {'index_select', 'index_add'} <= ops['train']
    assert not {'index_select', 'index_add', 'gather', 'scatter_add'} & ops['compiled']


# ---------------------------------------------------------------------------------------------
# The official fusion rule (docs/architecture.md §2.6)
def _official_fuse(module: LiteHRModule, xs):
    """The official loop, verbatim in behaviour: accumulator aliases branch 0, in-place adds, F_i0 twice."""
    xs = [x.clone() for x in xs]
    out = []
    for i in range(len(module.fuse_layers)):
        y = xs[0] if i == 0 else module.fuse_layers[i][0](xs[0])
        for j in range(len(xs)):
            y += xs[j] if i == j else module.fuse_layers[i][j](xs[j])
        out.append(module.relu(y))
    return out


@pytest.mark.parametrize('n', [2, 3, 4])
def test_fusion_reproduces_official_loop(n):
    torch.manual_seed(n)
    channels = [8, 16, 32, 64][:n]
    ours = _randomise_bn(LiteHRModule('LITE', channels, 1, 8)).eval()
    xs = [torch.randn(2, c, 16 >> k, 8 >> k) for k, c in enumerate(channels)]
    with torch.no_grad():
        for a, b in zip(ours.fuse_branches(xs), _official_fuse(ours, xs)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    # Training mode: same outputs, and the branch-0 paths' BN statistics move as after two updates.
    official = copy.deepcopy(ours).train()
    for m in official.modules():  # a plain BN that really runs twice
        if isinstance(m, TwiceUpdatedBatchNorm2d):
            m.__class__ = nn.BatchNorm2d
    ours.train()
    with torch.no_grad():
        for a, b in zip(ours.fuse_branches(xs), _official_fuse(official, xs)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    for (k, a), b in zip(ours.state_dict().items(), official.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6), k


def test_fusion_is_not_plain_hrnet():
    """Sanity check of the quirk itself: branch 0 counts twice in output 0."""
    module = LiteHRModule('LITE', [8, 16], 1, 8).eval()
    for p in module.fuse_layers.parameters():
        nn.init.zeros_(p)  # F_01 = 0 (BN bias 0 and weight 0), F_10 = 0
    x0, x1 = torch.rand(1, 8, 4, 4), torch.randn(1, 16, 2, 2)
    with torch.no_grad():
        out0, out1 = module.fuse_branches([x0, x1])
    assert torch.equal(out0, 2 * x0)
    assert torch.equal(out1, F.relu(x1))


def test_twice_updated_batchnorm_equals_two_updates():
    torch.manual_seed(0)
    ours, plain = TwiceUpdatedBatchNorm2d(3), nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    out = ours(x)
    plain(x)
    assert torch.allclose(out, plain(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, plain.running_mean, atol=1e-7)
    assert torch.allclose(ours.running_var, plain.running_var, atol=1e-6)
    assert ours.num_batches_tracked.item() == plain.num_batches_tracked.item() == 2


def test_sync_batchnorm_conversion_keeps_names_numbers_and_the_double_update():
    """MODEL.SYNC_BN: every BN becomes a SyncBatchNorm2d (still a BatchNorm2d for NORM_EVAL and fold_bn), the
    branch-0 fusion BNs keep their double update. Without a process group SyncBatchNorm normalises locally,
    so one process must match the unconverted model exactly: outputs, statistics and batch counts."""
    torch.manual_seed(0)
    plain = _randomise_bn(build_model(_cfg('litehrnet_18', 'MODEL.IMAGE_SIZE', [32, 64],
                                           'MODEL.HEATMAP_SIZE', [8, 16]))).train()
    bns = {n: type(m) for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)}
    synced = convert_sync_batchnorm(copy.deepcopy(plain))
    kinds = {n: type(m) for n, m in synced.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert kinds.keys() == bns.keys() and TwiceUpdatedBatchNorm2d in bns.values()
    assert all(kinds[n] is (TwiceUpdatedSyncBatchNorm2d if t is TwiceUpdatedBatchNorm2d else SyncBatchNorm2d)
               for n, t in bns.items())
    assert all(isinstance(m, nn.SyncBatchNorm) for n, m in synced.named_modules() if n in bns)
    assert list(synced.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 3, 64, 32)
    for _ in range(2):
        torch.testing.assert_close(synced(x), plain(x), rtol=1e-5, atol=1e-6)
    for (k, a), b in zip(synced.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    assert {m.momentum for m in synced.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}  # restored
    with torch.no_grad():
        torch.testing.assert_close(synced.fold_bn()(x), plain.eval()(x), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Building blocks on hand-made tensors
def _channels(c):
    return torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).expand(1, c, 2, 2)


def test_channel_shuffle_known_answer():
    assert channel_shuffle(_channels(6), 2)[0, :, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(_channels(6), 3)[0, :, 0, 0].tolist() == [0, 2, 4, 1, 3, 5]
    a, b = _channels(3), _channels(3) + 10
    assert concat_shuffle(a, b)[0, :, 1, 1].tolist() == [0, 10, 1, 11, 2, 12]
    with pytest.raises(ValueError, match='5 channels'):
        channel_shuffle(_channels(5), 2)


def test_resize_helpers_match_torch():
    x = torch.randn(2, 3, 8, 12)
    w = torch.randn(2, 3, 2, 3)
    for gather in (True, False):  # the eager form and the gather-free one of the 'compiled' kernels
        assert torch.equal(multiply_nearest(x, w, gather), x * F.interpolate(w, size=(8, 12), mode='nearest'))
        assert torch.equal(upsample_nearest(w, 4, 4, gather), F.interpolate(w, scale_factor=4, mode='nearest'))
        assert torch.equal(upsample_nearest(w, 2, 3, gather), F.interpolate(w, scale_factor=(2, 3), mode='nearest'))
    assert torch.allclose(pool_to(x, (2, 3)), F.adaptive_avg_pool2d(x, (2, 3)), atol=1e-6)
    odd = torch.randn(1, 2, 7, 5)  # sizes that do not divide: falls back to adaptive pooling
    assert torch.equal(pool_to(odd, (2, 2)), F.adaptive_avg_pool2d(odd, (2, 2)))
    small = torch.tensor([[[[1., 2.]]]])
    assert multiply_nearest(torch.ones(1, 1, 2, 4), small).tolist() == [[[[1, 1, 2, 2], [1, 1, 2, 2]]]]


def test_spatial_weighting_known_answer():
    """Constant channels 1, 2, 3, -6: their mean 0 makes the hidden ReLU 0, so the weights are sigmoid(bias)."""
    sw = SpatialWeighting(4)  # hidden 4 / 4 = 1
    with torch.no_grad():
        sw.conv1.conv.weight.fill_(0.25)
        sw.conv1.conv.bias.zero_()
        sw.conv2.conv.weight.fill_(1.0)
        sw.conv2.conv.bias.copy_(torch.tensor([0.0, math.log(3), -math.log(3), 0.0]))
    x = torch.tensor([1.0, 2.0, 3.0, -6.0]).view(1, 4, 1, 1).expand(1, 4, 3, 3)
    out = sw(x)
    expected = torch.tensor([0.5, 1.5, 0.75, -3.0]).view(1, 4, 1, 1).expand(1, 4, 3, 3)
    assert torch.allclose(out, expected, atol=1e-6)


def test_cross_resolution_weighting_known_answer():
    """Identity 1x1 convs and identity BN: weights = sigmoid(relu(x pooled to the smallest size))."""
    crw = CrossResolutionWeighting([1, 1], ratio=1).eval()
    with torch.no_grad():
        for conv in (crw.conv1, crw.conv2):
            conv.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            conv.bn.eps = 0.0  # running mean 0, var 1, weight 1, bias 0: exactly the identity
    blocks = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    x0 = torch.kron(blocks, torch.ones(2, 2)).view(1, 1, 4, 4)  # 2x2-block means are `blocks`
    x1 = torch.tensor([[0.5, 3.0], [-2.0, 1.0]]).view(1, 1, 2, 2)
    with torch.no_grad():
        out0, out1 = crw([x0, x1])
    w0 = torch.kron(torch.sigmoid(blocks.clamp(min=0)), torch.ones(2, 2))
    assert torch.allclose(out0[0, 0], x0[0, 0] * w0, atol=1e-6)
    assert torch.allclose(out1, x1 * torch.sigmoid(x1.clamp(min=0)), atol=1e-6)


def test_pose_model_variant_table_is_not_mutated():
    spec = VARIANTS['litehrnet_18']
    PoseLiteHRNet(spec, 3)
    assert VARIANTS['litehrnet_18'] is spec and spec.num_modules == (2, 4, 2)
