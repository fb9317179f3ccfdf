"""Nothing lost, nothing silently wrong, in tools/train.py: one run per output folder, no NaN weights saved,
write errors that name the file, no empty folders left by a failed run.

Each test builds its bad input itself, checks the exit status and the one-line message, and checks that the
files the user already had are still there, byte for byte.
"""
import glob
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO_ROOT, load_tool
from lib.utils import checkpoint as checkpoint_module
from lib.utils.checkpoint import load_checkpoint_file
from lib.utils.run_folder import LOCK_NAME, RunLock
from lib.utils.training_state import NonFiniteModelError, non_finite_names, save_model_file
from test_train import CFG, run_dir, tiny_opts, train


def run_train(capsys, root: str, out: str, **extra) -> tuple[int, str]:
    """(exit status, stderr) of tools/train.py run in this process through run_tool, as from the shell."""
    tool = load_tool('train')
    code = tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu', *tiny_opts(root, out, **extra)]))
    return code, capsys.readouterr().err


def snapshot(folder: str) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    files = glob.glob(os.path.join(folder, '**', '*'), recursive=True)
    files += glob.glob(os.path.join(folder, '**', '.*'), recursive=True)
    return {path: open(path, 'rb').read() for path in files if os.path.isfile(path)}


def dead_pid() -> int:
    """The id of a process that has already ended (and been reaped)."""
    done = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    return int(done.stdout)


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)


# --- 1. one run per output folder ----------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_on_a_busy_folder_stops_at_once(synthetic_tiny, tmp_path, capsys):
    """A real race: a training subprocess holds the folder; a second run with other settings exits 2 naming
    the folder and the first run's pid, and the first run finishes with its own config and weights."""
    out = str(tmp_path)
    folder = run_dir(out)
    first = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), '--cfg', CFG,
                              '--device', 'cpu', *tiny_opts(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '3'})],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    lock = os.path.join(folder, LOCK_NAME)
    deadline = time.time() + 120
    while not os.path.exists(lock) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(lock), first.stderr.read() if first.poll() is not None else 'no lock after 120 s'
    owner = json.load(open(lock))
    assert (owner['pid'], owner['host']) == (first.pid, socket.gethostname())

    code, err = run_train(capsys, synthetic_tiny, out, **{'TRAIN.LR': '0.0123', 'TRAIN.END_EPOCH': '5'})
    assert first.poll() is None, 'the first run ended before the race; make it longer'
    assert code == 2
    assert err.startswith(f'error: {folder}: another training (pid {first.pid} on host {socket.gethostname()}')

    assert first.wait(timeout=300) == 0, first.stderr.read()
    config = open(os.path.join(folder, 'quickstart_train_config.yaml')).read()
    assert 'END_EPOCH: 3' in config and '0.0123' not in config  # the first run's config, not overwritten
    state = load_checkpoint_file(os.path.join(folder, 'checkpoint.pth'))
    assert state['epoch'] == 3 and 'END_EPOCH: 3' in state['config']
    assert not os.path.exists(lock)  # released at exit


def test_a_lock_of_another_host_is_respected_and_nothing_is_touched(synthetic_tiny, tmp_path, capsys):
    out = str(tmp_path)
    folder = run_dir(out)
    os.makedirs(folder)
    with open(os.path.join(folder, 'checkpoint.pth'), 'wb') as f:
        f.write(b'the user\'s checkpoint')
    with open(os.path.join(folder, LOCK_NAME), 'w') as f:
        json.dump({'pid': 4242, 'host': 'gpu-node-7', 'started': '2024-01-01 00:00:00'}, f)
    before = snapshot(out)

    code, err = run_train(capsys, synthetic_tiny, out)
    assert code == 2
    assert err.startswith(f'error: {folder}: another training (pid 4242 on host gpu-node-7')
    assert err.count('\n') == 1 and LOCK_NAME in err  # one line, which says what to delete if it is gone
    assert snapshot(out) == before  # no log, no config, no lock taken; the LOG_DIR it made is removed again
    assert not os.path.exists(os.path.join(out, 'log'))


def test_a_stale_lock_is_taken_over_with_a_warning(synthetic_tiny, tmp_path, capsys):
    out = str(tmp_path)
    folder = run_dir(out)
    os.makedirs(folder)
    with open(os.path.join(folder, LOCK_NAME), 'w') as f:  # left by a run that was killed
        json.dump({'pid': dead_pid(), 'host': socket.gethostname(), 'started': '2024-01-01 00:00:00'}, f)

    code, err = run_train(capsys, synthetic_tiny, out, **{'TRAIN.END_EPOCH': '1'})
    assert code == 0, err
    log = open(glob.glob(os.path.join(folder, 'quickstart_train_*.log'))[0]).read()
    assert 'WARNING took over the stale lock' in log
    assert not os.path.exists(os.path.join(folder, LOCK_NAME))


def test_the_lock_is_released_when_the_run_fails(synthetic_tiny, tmp_path, capsys):
    out = str(tmp_path)
    code, err = run_train(capsys, synthetic_tiny, out, **{'MODEL.PRETRAINED': str(tmp_path / 'absent.pth')})
    assert code == 2 and 'absent.pth' in err
    assert not os.path.exists(os.path.join(run_dir(out), LOCK_NAME))
    lock = RunLock(run_dir(out))  # and the folder can be taken again
    assert lock.acquire() is None
    lock.release()


# --- 2. never save a non-finite model ------------------------------------------------------------------

@pytest.mark.slow
def test_divergence_on_the_last_step_of_an_epoch_saves_nothing(synthetic_tiny, tmp_path, capsys, monkeypatch):
    """The last step of epoch 1 overflows a weight to inf: the loss before that step was finite, so only the
    weight check after the epoch can catch it. Nothing is saved; the run then resumes with a sane lr."""
    out = str(tmp_path)
    assert train(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '1'}) == 0
    folder = run_dir(out)
    kept = {name: open(os.path.join(folder, name), 'rb').read()
            for name in ('checkpoint.pth', 'model_best.pth', 'final_state.pth')}

    tool = load_tool('train')
    real_epoch = tool.train_one_epoch

    def epoch_whose_last_step_diverges(cfg, model, *args, **kwargs):
        result = real_epoch(cfg, model, *args, **kwargs)
        with torch.no_grad():  # what an overflowing optimizer step leaves behind
            next(model.parameters()).view(-1)[0] = float('inf')
        return result
    with monkeypatch.context() as patch:
        patch.setattr(tool, 'train_one_epoch', epoch_whose_last_step_diverges)
        code, err = run_train(capsys, synthetic_tiny, out)
    assert code == 1
    ckpt = os.path.join(folder, 'checkpoint.pth')
    assert err.startswith('error: model weights are NaN or infinite after epoch 1')
    assert f'the last good checkpoint {ckpt} (written after epoch 0) is unchanged' in err
    for name, data in kept.items():
        assert open(os.path.join(folder, name), 'rb').read() == data, name
    assert not glob.glob(os.path.join(folder, '.*.tmp'))

    assert train(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '2'}) == 0  # a sane lr: resumes and trains on
    state = load_checkpoint_file(ckpt)
    assert state['epoch'] == 2
    assert all(torch.isfinite(t).all() for t in state['model'].values() if t.is_floating_point())


def test_weight_files_refuse_non_finite_weights(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    assert non_finite_names(model) == []
    with torch.no_grad():
        model[1].running_var[0] = float('inf')
    assert non_finite_names(model) == ['1.running_var']
    path = str(tmp_path / 'model_best.pth')
    with pytest.raises(NonFiniteModelError, match=f'when writing {path}'):
        save_model_file(path, model, cfg=None)
    assert os.listdir(tmp_path) == []


# --- 5. write failures mid-run -------------------------------------------------------------------------

def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_last(synthetic_tiny, tmp_path, capsys,
                                                                          monkeypatch):
    """The folder turns read-only during the run (as root, chmod cannot show it, so the temporary file's
    creation fails the way it would): exit 2, the file named, the previous checkpoint unchanged."""
    out = str(tmp_path)
    assert train(synthetic_tiny, out, **{'TRAIN.END_EPOCH': '1'}) == 0
    ckpt = os.path.join(run_dir(out), 'checkpoint.pth')
    before = open(ckpt, 'rb').read()

    def read_only(path):
        raise PermissionError(13, 'Permission denied', path + '.tmp')
    monkeypatch.setattr(checkpoint_module, '_create_temp', read_only)
    code, err = run_train(capsys, synthetic_tiny, out)
    assert code == 2
    assert err == f'error: {ckpt}: cannot write (Permission denied); the previous file there, if any, is unchanged\n'
    assert open(ckpt, 'rb').read() == before
    assert not os.path.exists(os.path.join(run_dir(out), LOCK_NAME))


# --- 6. no empty folders left by a failed run ----------------------------------------------------------

def test_a_failed_run_removes_the_folders_it_left_empty(synthetic_tiny, tmp_path, capsys):
    out = str(tmp_path / 'new')
    code, err = run_train(capsys, str(tmp_path / 'no_such_dataset'), out)
    assert code == 2 and 'no_such_dataset' in err
    assert not os.path.exists(os.path.join(out, 'log'))  # TensorBoard folders: nothing written, all removed
    # The output folder keeps what was written (the log and config of the failed run), and nothing else.
    left = sorted(os.listdir(run_dir(out)))
    assert left and all(name.startswith('quickstart_train_') for name in left), left


def test_a_crash_in_validation_keeps_the_epoch(synthetic_tiny, tmp_path, monkeypatch):
    """checkpoint.pth is written before validation: whatever fails there, the trained epoch is on disk."""
    def broken_validation(*args, **kwargs):
        raise RuntimeError('validation crashed')
    monkeypatch.setattr(load_tool('train'), 'validate', broken_validation)
    with pytest.raises(RuntimeError, match='validation crashed'):
        train(synthetic_tiny, str(tmp_path), **{'TRAIN.END_EPOCH': '1'})
    assert load_checkpoint_file(os.path.join(run_dir(str(tmp_path)), 'checkpoint.pth'))['epoch'] == 1
    assert not os.path.exists(os.path.join(run_dir(str(tmp_path)), LOCK_NAME))
