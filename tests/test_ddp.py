"""Multi-process runs on CPU (gloo) with torchrun: training steps, and tools/test.py scoring each sample once."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, load_tool
from lib.config import load_config, output_dirs
from lib.utils.checkpoint import load_checkpoint_file
from lib.utils.dist import gather_predictions

CFG = os.path.join(REPO_ROOT, 'experiments', 'synthetic', 'quickstart.yaml')
RESULTS = 'keypoints_val2017_results.json'


def test_gather_predictions_drops_sampler_padding():
    """DistributedSampler pads 5 samples over 2 ranks to 3 + 3, repeating index 0: the merge keeps 5."""
    rank0 = {'index': np.array([0, 2, 4]), 'keypoints': np.array([[0.0], [2.0], [4.0]])}
    rank1 = {'index': np.array([1, 3, 0]), 'keypoints': np.array([[1.0], [3.0], [0.0]])}
    merged = {key: np.concatenate([rank0[key], rank1[key]]) for key in rank0}
    out = gather_predictions(merged)  # one process: the same de-duplication and ordering
    assert out['index'].tolist() == [0, 1, 2, 3, 4]
    assert out['keypoints'][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def tiny_opts(root: str, out: str) -> list[str]:
    opts = {'DATASET.ROOT': root, 'OUTPUT_DIR': os.path.join(out, 'output'), 'LOG_DIR': os.path.join(out, 'log'),
            'MODEL.IMAGE_SIZE': '[64,64]', 'MODEL.HEATMAP_SIZE': '[16,16]', 'WORKERS': '0',
            'TRAIN.BATCH_SIZE_PER_GPU': '2', 'TEST.BATCH_SIZE_PER_GPU': '2', 'TRAIN.END_EPOCH': '2',
            'TRAIN.WARMUP_ITERS': '2', 'PRINT_FREQ': '1', 'TEST.FLIP_TEST': 'True'}
    return [item for pair in opts.items() for item in pair]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def torchrun(tool: str, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                os.path.join('tools', tool), '--device', 'cpu', *args])


@pytest.fixture(scope='module')
def ddp_run(synthetic_tiny, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('ddp'))
    done = torchrun('train.py', '--cfg', CFG, *tiny_opts(synthetic_tiny, out), 'TRAIN.MAX_ITERS_PER_EPOCH', '2')
    return out, done


@pytest.mark.slow
def test_torchrun_trains(ddp_run):
    out, done = ddp_run
    assert '2 process(es), device cpu' in done.stdout
    assert done.stdout.count('epoch 1 validation: AP') == 1  # rank 0 alone logs
    folder = output_dirs(load_config(CFG, ['OUTPUT_DIR', os.path.join(out, 'output')]))[0]
    state = load_checkpoint_file(os.path.join(folder, 'checkpoint.pth'))
    assert (state['epoch'], state['iteration']) == (2, 4)
    assert not any(key.startswith('module.') for key in state['model'])


@pytest.mark.slow
def test_torchrun_test_scores_each_sample_once(ddp_run, synthetic_tiny):
    """7 detector boxes over 2 ranks (4 + 4 with one repeat): the results and metrics equal one process's."""
    out, _ = ddp_run
    folder = output_dirs(load_config(CFG, ['OUTPUT_DIR', os.path.join(out, 'output')]))[0]
    common = ['--cfg', CFG, *tiny_opts(synthetic_tiny, out), 'TEST.USE_GT_BBOX', 'False', 'TEST.OKS_THRE', '1.0',
              'TEST.MODEL_FILE', os.path.join(folder, 'final_state.pth')]
    outputs = {}
    for name, launch in (('one', lambda *a: run([sys.executable, 'tools/test.py', '--device', 'cpu', *a])),
                         ('two', lambda *a: torchrun('test.py', *a))):
        launch(*common, 'OUTPUT_DIR', os.path.join(out, name))
        result_dir = output_dirs(load_config(CFG, ['OUTPUT_DIR', os.path.join(out, name)]))[0]
        with open(os.path.join(result_dir, RESULTS)) as f, open(os.path.join(result_dir, 'metrics.json')) as g:
            outputs[name] = (json.load(f), json.load(g))
    (res1, met1), (res2, met2) = outputs['one'], outputs['two']
    with open(os.path.join(synthetic_tiny, 'person_detection_results',
                           'COCO_val2017_detections_AP_H_56_person.json')) as f:
        boxes = len(json.load(f))
    assert boxes % 2 == 1  # odd, so the sampler must pad
    assert len(res1) == len(res2) == boxes
    key = lambda r: (r['image_id'], round(r['score'], 4))  # noqa: E731
    for a, b in zip(sorted(res1, key=key), sorted(res2, key=key)):
        assert a['image_id'] == b['image_id']
        np.testing.assert_allclose(a['keypoints'], b['keypoints'], rtol=0, atol=1e-3)
    assert met1.keys() == met2.keys()
    for name in met1:
        assert met1[name] == pytest.approx(met2[name], abs=1e-6), name


@pytest.mark.slow
def test_torchrun_resumes(ddp_run, synthetic_tiny):
    """Rank 0 reads checkpoint.pth and broadcasts it (nodes without shared storage can resume too)."""
    out, _ = ddp_run
    done = torchrun('train.py', '--cfg', CFG, *tiny_opts(synthetic_tiny, out), 'TRAIN.MAX_ITERS_PER_EPOCH', '2',
                    'TRAIN.END_EPOCH', '3')
    assert 'resumed from' in done.stdout and 'epoch 2, iteration 4' in done.stdout
    folder = output_dirs(load_config(CFG, ['OUTPUT_DIR', os.path.join(out, 'output')]))[0]
    state = load_checkpoint_file(os.path.join(folder, 'checkpoint.pth'))
    assert (state['epoch'], state['iteration']) == (3, 6)


@pytest.mark.parametrize('world, device, expected', [(1, 'cpu', False), (2, 'cuda', True), (2, 'cpu', 'error')])
def test_sync_bn_converts_for_several_gpu_processes_only(world, device, expected):
    from lib.utils.dist import DistInfo
    from lib.utils.logger import UserError
    use_sync_bn = load_tool('train').use_sync_bn
    info = DistInfo(rank=0, local_rank=0, world_size=world, device=torch.device(device))
    cfg = load_config(None, ['MODEL.SYNC_BN', True])
    assert use_sync_bn(load_config(None, []), info) is False  # off by default, as the official code
    if expected == 'error':  # torch's SyncBatchNorm would raise deep inside the first forward
        with pytest.raises(UserError, match='MODEL.SYNC_BN: .*CUDA tensors only.* 2 processes train on cpu'):
            use_sync_bn(cfg, info)
    else:
        assert use_sync_bn(cfg, info) is expected
