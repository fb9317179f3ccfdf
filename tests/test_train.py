"""tools/train.py on a tiny synthetic set: loss goes down, outputs, exact resume, killed runs, NaN stop, weights.

Sizes are tiny (64x64 input, batch 4, 2 iterations per epoch) so the whole file runs in well under a minute.
"""
import glob
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, load_tool
from lib.config import load_config, output_dirs
from lib.core.function import build_loader, train_one_epoch
from lib.core.loss import JointsMSELoss, build_loss
from lib.dataset import build_dataset
from lib.models import build_model
from lib.utils.checkpoint import load_checkpoint_file

CFG = os.path.join(REPO_ROOT, 'experiments', 'synthetic', 'quickstart.yaml')


def tiny_opts(root: str, out: str, **extra) -> list[str]:
    """Overrides that make the quick-start config a seconds-long CPU run in `out`."""
    opts = {'DATASET.ROOT': root, 'OUTPUT_DIR': os.path.join(out, 'output'), 'LOG_DIR': os.path.join(out, 'log'),
            'MODEL.IMAGE_SIZE': '[64,64]', 'MODEL.HEATMAP_SIZE': '[16,16]', 'WORKERS': '0',
            'TRAIN.BATCH_SIZE_PER_GPU': '4', 'TEST.BATCH_SIZE_PER_GPU': '8', 'TRAIN.MAX_ITERS_PER_EPOCH': '2',
            'TRAIN.LR_SCHEDULE': 'step', 'TRAIN.LR_STEP': '[1]', 'TRAIN.WARMUP_ITERS': '3',
            'TRAIN.END_EPOCH': '2', 'TRAIN.VAL_INTERVAL': '1', 'TEST.FLIP_TEST': 'False', 'PRINT_FREQ': '1',
            'DATASET.BOX_JITTER_START_EPOCH': '1'}  # epoch-dependent augmentation: the resume lands on its start
    opts.update(extra)
    return [item for pair in opts.items() for item in pair]


def run_dir(out: str) -> str:
    return output_dirs(load_config(CFG, ['OUTPUT_DIR', os.path.join(out, 'output')]))[0]


def train(root: str, out: str, **extra) -> int:
    return load_tool('train').main(['--cfg', CFG, '--device', 'cpu', *tiny_opts(root, out, **extra)])


@pytest.fixture(scope='module')
def straight_run(synthetic_tiny, tmp_path_factory):
    """Two epochs in one go (with debug images every iteration); shared by several tests."""
    out = str(tmp_path_factory.mktemp('straight'))
    assert train(synthetic_tiny, out, **{'TRAIN.DEBUG_INTERVAL': '1'}) == 0
    return out


def test_a_few_iterations_reduce_the_loss(synthetic_tiny):
    torch.manual_seed(0)
    cfg = load_config(CFG, tiny_opts(synthetic_tiny, '/unused', **{'TRAIN.MAX_ITERS_PER_EPOCH': '0',
                                                                   'TRAIN.WARMUP_ITERS': '0'}))
    dataset = build_dataset(cfg, is_train=True)
    loader = build_loader(cfg, dataset, train=True)
    images, target, weight, _ = next(iter(loader))
    model, criterion = build_model(cfg), build_loss(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)
    scaler = torch.amp.GradScaler('cpu', enabled=False)

    def fixed_batch_loss():
        model.train()  # batch statistics, as in training (no parameter changes under no_grad)
        with torch.no_grad():
            return criterion(model(images), target, weight).item()

    before = fixed_batch_loss()
    iteration = 0
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        iteration, _ = train_one_epoch(cfg, model, loader, criterion, optimizer, scaler, epoch=epoch,
                                       iteration=iteration, iters_per_epoch=len(loader), device=torch.device('cpu'))
    assert iteration == 3 * len(loader)
    assert fixed_batch_loss() < 0.8 * before


def test_outputs_of_a_run(straight_run):
    out = run_dir(straight_run)
    for name in ('checkpoint.pth', 'model_best.pth', 'final_state.pth', 'quickstart_train_config.yaml'):
        assert os.path.isfile(os.path.join(out, name)), name
    log = open(glob.glob(os.path.join(out, 'quickstart_train_*.log'))[0]).read()
    assert 'epoch 1 validation: AP' in log
    # every logged step: loader wait and whole step, this step's value and the running mean, in seconds
    steps = re.findall(r'epoch \d \[\d/2\] .* data_time (\S+)s \((\S+)s\) batch_time (\S+)s \((\S+)s\)', log)
    assert len(steps) == 4 and all(0 <= float(d) <= float(b) for d, _, b, _ in steps)
    assert glob.glob(os.path.join(out, 'debug', 'train_0000001_gt.jpg'))
    events = glob.glob(os.path.join(straight_run, 'log', '**', 'events.out.tfevents.*'), recursive=True)
    assert events
    scalars = b''.join(open(path, 'rb').read() for path in events)
    assert b'train/data_time' in scalars and b'train/batch_time' in scalars
    state = load_checkpoint_file(os.path.join(out, 'checkpoint.pth'))
    assert (state['epoch'], state['iteration']) == (2, 4)
    assert 'END_EPOCH: 2' in state['config']
    assert set(state['rng']) >= {'python', 'numpy', 'torch'}
    best = load_checkpoint_file(os.path.join(out, 'model_best.pth'))
    assert best['perf'] == state['best_perf'] and best['metric'] == 'AP'
    # Leftover temporary files would mean a non-atomic write.
    assert not glob.glob(os.path.join(out, '.*.tmp'))


def assert_same_training_state(a: dict, b: dict) -> None:
    assert (a['epoch'], a['iteration'], a['best_perf']) == (b['epoch'], b['iteration'], b['best_perf'])
    assert a['model'].keys() == b['model'].keys()
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    opt_a, opt_b = a['optimizer'], b['optimizer']
    assert [g['lr'] for g in opt_a['param_groups']] == [g['lr'] for g in opt_b['param_groups']]
    assert opt_a['state'].keys() == opt_b['state'].keys()
    for index, slots in opt_a['state'].items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b['state'][index][name])), (index, name)


def test_resume_is_exact(straight_run, synthetic_tiny, tmp_path):
    """1 epoch, stop, resume for 1 more == 2 epochs straight: same weights, optimizer state and lr.

    LR_STEP [1] and 3 warmup iterations over 2-iteration epochs make epoch 1 start inside the warmup
    and at the decayed lr, so a resume at the wrong schedule position would show."""
    out = str(tmp_path)
    assert train(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '1'}) == 0
    assert load_checkpoint_file(os.path.join(run_dir(out), 'checkpoint.pth'))['epoch'] == 1
    assert train(synthetic_tiny, out) == 0  # same output folder: AUTO_RESUME picks up epoch 1
    resumed = load_checkpoint_file(os.path.join(run_dir(out), 'checkpoint.pth'))
    straight = load_checkpoint_file(os.path.join(run_dir(straight_run), 'checkpoint.pth'))
    assert_same_training_state(straight, resumed)
    lr = resumed['optimizer']['param_groups'][0]['lr']
    cfg = load_config(CFG)
    assert lr == pytest.approx(cfg.TRAIN.LR * 0.1)  # iteration 3 (last): epoch 1, warmup over


def test_sync_batchnorm_trains_every_parameter(straight_run, synthetic_tiny, tmp_path, monkeypatch):
    """MODEL.SYNC_BN converts before the optimizer takes the parameters: forced on in one CPU process (where
    SyncBatchNorm normalises locally) the run ends with the same weights, statistics and optimizer state as the
    plain run. Converting after building the optimizer would leave every BatchNorm weight at its start."""
    tool = load_tool('train')
    monkeypatch.setattr(tool, 'use_sync_bn', lambda cfg, dist_info: True)
    assert train(synthetic_tiny, str(tmp_path), **{'MODEL.SYNC_BN': 'True'}) == 0
    synced = load_checkpoint_file(os.path.join(run_dir(str(tmp_path)), 'checkpoint.pth'))
    straight = load_checkpoint_file(os.path.join(run_dir(straight_run), 'checkpoint.pth'))
    assert_same_training_state(straight, synced)


def without_training_steps(monkeypatch) -> None:
    """tools/train.py's epochs take no step, so final_state.pth holds exactly the weights it started from."""
    tool = load_tool('train')
    monkeypatch.setattr(tool, 'train_one_epoch', lambda *args, iteration, **kwargs: (iteration, 0.0))


def test_pretrained_weights_are_loaded(straight_run, synthetic_tiny, tmp_path, monkeypatch):
    final = os.path.join(run_dir(straight_run), 'final_state.pth')
    without_training_steps(monkeypatch)
    assert train(synthetic_tiny, str(tmp_path), **{'MODEL.PRETRAINED': final, 'TRAIN.END_EPOCH': '1'}) == 0
    loaded = load_checkpoint_file(os.path.join(run_dir(str(tmp_path)), 'final_state.pth'))['model']
    source = load_checkpoint_file(final)['model']
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def test_pretrained_exclude_keeps_the_head_of_the_new_model(straight_run, synthetic_tiny, tmp_path, monkeypatch,
                                                            caplog):
    """MODEL.PRETRAINED_EXCLUDE reaches load_weights: backbone from the checkpoint, head as initialised.
    (Another NUM_JOINTS needs a data set with that many joints; tests/test_checkpoint.py loads 17 into 5.)"""
    final = os.path.join(run_dir(straight_run), 'final_state.pth')
    without_training_steps(monkeypatch)
    with caplog.at_level('INFO'):
        assert train(synthetic_tiny, str(tmp_path), **{'MODEL.PRETRAINED': final, 'TRAIN.END_EPOCH': '1',
                                                       'MODEL.PRETRAINED_EXCLUDE': "['keypoint_head.*']"}) == 0
    loaded = load_checkpoint_file(os.path.join(run_dir(str(tmp_path)), 'final_state.pth'))['model']
    source = load_checkpoint_file(final)['model']
    head = [k for k in source if k.startswith('keypoint_head.')]
    assert head and all(not torch.equal(loaded[k], source[k]) for k in head if k.endswith('weight'))
    assert all(torch.equal(loaded[k], source[k]) for k in source if k not in head)
    assert "2 key(s) skipped by MODEL.PRETRAINED_EXCLUDE ['keypoint_head.*']" in caplog.text


def test_a_checkpoint_holding_a_tensor_is_named(synthetic_tiny, tmp_path, capsys):
    """A checkpoint.pth that is not a training state (here a bare tensor): exit 2 naming it, file kept."""
    out = str(tmp_path)
    ckpt = os.path.join(run_dir(out), 'checkpoint.pth')
    os.makedirs(os.path.dirname(ckpt))
    torch.save(torch.zeros(3), ckpt)
    before = open(ckpt, 'rb').read()
    tool = load_tool('train')
    code = tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu', *tiny_opts(synthetic_tiny, out)]))
    assert code == 2
    assert capsys.readouterr().err.startswith(f'error: {ckpt}: not a training checkpoint: it holds a Tensor')
    assert open(ckpt, 'rb').read() == before


@pytest.fixture
def no_labelled_person(synthetic_tiny, tmp_path):
    """synthetic_tiny with a validation annotation file that has images but no person."""
    import json
    import shutil
    root = str(tmp_path / 'no_person')
    shutil.copytree(synthetic_tiny, root, symlinks=True)
    ann = os.path.join(root, 'annotations', 'person_keypoints_val2017.json')
    data = json.load(open(ann))
    data['annotations'] = []
    json.dump(data, open(ann, 'w'))
    return root


def test_an_empty_validation_set_loses_no_epoch(no_labelled_person, tmp_path, capsys):
    """No labelled person in the validation set: zero predictions are scored (AP 0, by lib/evaluation) and
    the checkpoint is written before validation, so the epoch is kept either way."""
    out = str(tmp_path / 'run')
    tool = load_tool('train')
    code = tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu',
                                            *tiny_opts(no_labelled_person, out, **{'TRAIN.END_EPOCH': '1'})]))
    err = capsys.readouterr().err
    assert 'KeyError' not in err
    assert load_checkpoint_file(os.path.join(run_dir(out), 'checkpoint.pth'))['epoch'] == 1
    assert code == 0, err


def test_nan_loss_stops_and_keeps_the_checkpoint(synthetic_tiny, tmp_path, monkeypatch, capsys):
    out = str(tmp_path)
    assert train(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '1'}) == 0
    ckpt = os.path.join(run_dir(out), 'checkpoint.pth')
    before = open(ckpt, 'rb').read()
    monkeypatch.setattr(JointsMSELoss, 'forward', lambda self, output, target, weight: output.sum() * float('nan'))
    tool = load_tool('train')
    code = tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu', *tiny_opts(synthetic_tiny, out)]))
    assert code == 1
    err = capsys.readouterr().err
    assert 'error: loss is nan at epoch 1' in err
    assert f'Last good checkpoint: {ckpt} (written after epoch 0)' in err  # what to resume from
    assert open(ckpt, 'rb').read() == before


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)


@pytest.mark.slow
def test_killed_run_resumes(synthetic_tiny, tmp_path):
    """SIGKILL mid-epoch after the first checkpoint; the same command then resumes from that checkpoint."""
    out = str(tmp_path)
    command = [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), '--cfg', CFG, '--device', 'cpu',
               *tiny_opts(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '3'})]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    seen = []
    for line in proc.stdout:  # the log says when epoch 1 has done its first step
        seen.append(line)
        if 'epoch 1 [1/2]' in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, ''.join(seen)
    ckpt = os.path.join(run_dir(out), 'checkpoint.pth')
    assert load_checkpoint_file(ckpt)['epoch'] == 1

    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'resumed from' in done.stdout and 'epoch 1, iteration 2' in done.stdout
    final = load_checkpoint_file(ckpt)
    assert (final['epoch'], final['iteration']) == (3, 6)


_WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from lib.config import load_config
model = torch.nn.Linear(1500, 1500)  # ~9 MB per write, so a kill often lands mid-write
opt = torch.optim.Adam(model.parameters())
print('ready', flush=True)
for i in range(10**6):
    with torch.no_grad():
        model.bias.fill_(i)
    save_training_state(sys.argv[1], model=model, optimizer=opt, scaler=None, epoch=i, iteration=i,
                        best_perf=0.0, best_epoch=-1, cfg=load_config())
"""


@pytest.mark.slow
def test_checkpoint_is_never_half_written(tmp_path):
    """Kill a process that rewrites checkpoint.pth in a loop, at several moments: the file always loads
    and is one complete version (its bias matches its epoch)."""
    path = str(tmp_path / 'checkpoint.pth')
    for delay in (0.35, 0.7):
        proc = subprocess.Popen([sys.executable, '-c', _WRITER.format(root=REPO_ROOT), path],
                                stdout=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout.readline().strip() == 'ready'
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if os.path.exists(path):
            state = load_checkpoint_file(path)
            assert torch.all(state['model']['bias'] == state['epoch'])


def test_no_samples_give_every_key_with_zero_rows():
    """An empty loader (no box at all): run_inference and gather_predictions keep the keys evaluation reads."""
    from lib.core.function import run_inference
    from lib.utils.dist import gather_predictions
    preds = gather_predictions(run_inference(torch.nn.Linear(1, 1), [], codec=None, flip_pairs=[], num_joints=17))
    assert set(preds) == {'keypoints', 'center', 'scale', 'area', 'score', 'image_id', 'index'}
    assert preds['keypoints'].shape == (0, 17, 3) and all(len(v) == 0 for v in preds.values())
