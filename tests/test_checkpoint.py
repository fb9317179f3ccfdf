"""Weights loading: official mmpose checkpoints (key lists from tests/data/reference/*_keys.json), our own
checkpoints, strict errors that list every bad key, no code execution, atomic saves."""
import glob
import json
import os

import pytest
import torch

from lib.config import load_config
from lib.models import build_model
from lib.utils.checkpoint import CheckpointError, load_weights, save_atomic


def _key_files():
    from conftest import REFERENCE_DIR
    files = sorted(glob.glob(os.path.join(REFERENCE_DIR, '*_keys.json')))
    assert len(files) == 5, files  # one per released variant/dataset pair
    return files


def _model_for(keys_file: str):
    """The model a key list describes: variant from the file name, joints from the head's shape."""
    with open(keys_file) as f:
        shapes = json.load(f)
    stem = os.path.basename(keys_file)[:-len('_keys.json')]  # e.g. litehrnet_18_coco_256x192
    name = stem.rsplit('_', 2)[0]
    joints = shapes['keypoint_head.final_layer.bias'][0]
    return build_model(load_config(None, ['MODEL.NAME', name, 'MODEL.NUM_JOINTS', joints])), shapes


def _random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 1000, (), generator=g) if k.endswith('num_batches_tracked')
                else torch.randn(shape, generator=g)) for k, shape in shapes.items()}


@pytest.mark.parametrize('keys_file', _key_files(), ids=os.path.basename)
def test_official_checkpoint_loads_every_key(tmp_path, keys_file):
    model, shapes = _model_for(keys_file)
    state = _random_state(shapes)
    path = tmp_path / 'official.pth'
    torch.save({'meta': {'mmpose_version': '0.13.0'}, 'state_dict': state}, path)
    load_weights(model, path)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():  # every value arrived where the official name says
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k


@pytest.fixture
def official_like(tmp_path):
    keys = _key_files()
    model, shapes = _model_for(next(k for k in keys if 'litehrnet_18_coco' in k))
    return model, _random_state(shapes), tmp_path


def test_missing_and_wrong_shape_are_listed(official_like):
    model, state, tmp = official_like
    missing = 'backbone.stage1.2.layers.0.cross_resolution_weighting.conv1.conv.weight'
    wrong = 'keypoint_head.final_layer.weight'
    del state[missing]
    state[wrong] = torch.randn(16, 40, 1, 1)  # an MPII head on a COCO model
    state['backbone.extra.weight'] = torch.randn(3)
    torch.save({'state_dict': state}, tmp / 'bad.pth')
    with pytest.raises(CheckpointError) as err:
        load_weights(model, tmp / 'bad.pth')
    msg = str(err.value)
    assert 'bad.pth' in msg
    assert '1 missing keys' in msg and missing in msg
    assert '1 wrong-shaped keys' in msg and f'{wrong}: checkpoint (16, 40, 1, 1) vs model (17, 40, 1, 1)' in msg
    assert '1 unexpected keys' in msg and 'backbone.extra.weight' in msg


def test_own_checkpoint_and_prefixes(tmp_path):
    src = build_model(load_config(None, ['MODEL.NAME', 'naive_litehrnet_18', 'MODEL.INIT', 'kaiming']))
    dst = build_model(load_config(None, ['MODEL.NAME', 'naive_litehrnet_18']))
    save_atomic({'model': {'module.' + k: v for k, v in src.state_dict().items()}, 'epoch': 3},
                tmp_path / 'ours.pth')
    load_weights(dst, tmp_path / 'ours.pth')
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    assert os.listdir(tmp_path) == ['ours.pth']  # no temporary file left behind


class _Payload:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_checkpoint_cannot_run_code(tmp_path):
    model = build_model(load_config(None, ['MODEL.NAME', 'naive_litehrnet_18']))
    torch.save({'state_dict': model.state_dict(), 'evil': _Payload()}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='cannot read weights file'):
        load_weights(model, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='not found'):
        load_weights(model, tmp_path / 'absent.pth')


# --- fine-tuning to another keypoint set (MODEL.PRETRAINED_EXCLUDE) -----------------------------------------

def _naive(joints: int, init: str = 'official'):
    return build_model(load_config(None, ['MODEL.NAME', 'naive_litehrnet_18', 'MODEL.NUM_JOINTS', joints,
                                          'MODEL.INIT', init]))


@pytest.fixture
def coco_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = _naive(17, 'kaiming')
    path = tmp_path / 'coco17.pth'
    save_atomic({'model': source.state_dict()}, path)
    return source.state_dict(), path


def test_excluded_head_is_skipped_and_reported(coco_checkpoint, caplog):
    source, path = coco_checkpoint
    model = _naive(5)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith('keypoint_head.')}
    with caplog.at_level('INFO', logger='lib.utils.checkpoint'):
        load_weights(model, path, exclude=['keypoint_head.*'])
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in source if not k.startswith('keypoint_head.'))
    assert head_before and all(torch.equal(loaded[k], v) for k, v in head_before.items())  # untouched
    log = caplog.text
    assert 'keypoint_head.final_layer.weight: checkpoint (17, 30, 1, 1), model (5, 30, 1, 1)' in log
    assert 'keypoint_head.final_layer.bias: checkpoint (17,), model (5,)' in log
    skipped = sum('not loaded (MODEL.PRETRAINED_EXCLUDE)' in r.getMessage() for r in caplog.records)
    assert skipped == len([k for k in source if k.startswith('keypoint_head.')])


def test_without_exclude_a_head_mismatch_stays_a_clear_error(coco_checkpoint):
    _, path = coco_checkpoint
    with pytest.raises(CheckpointError) as err:
        load_weights(_naive(5), path)
    msg = str(err.value)
    assert 'coco17.pth does not fit the model' in msg and 'keypoint_head.final_layer.weight' in msg
    assert 'MODEL.PRETRAINED_EXCLUDE' in msg  # the hint


def test_exclude_patterns_must_match_and_do_not_hide_other_mismatches(coco_checkpoint):
    _, path = coco_checkpoint
    with pytest.raises(CheckpointError, match=r"MODEL.PRETRAINED_EXCLUDE: pattern\(s\) \['keypoint_haed.\*'\]"):
        load_weights(_naive(5), path, exclude=['keypoint_head.*', 'keypoint_haed.*'])
    with pytest.raises(CheckpointError, match='wrong-shaped keys'):  # the head is excluded, the stem is not
        load_weights(_naive(5), path, exclude=['keypoint_head.final_layer.bias'])


# --- files that are not checkpoints, temporary files, permissions -------------------------------------------

def test_a_file_holding_a_bare_tensor_is_named(tmp_path):
    path = tmp_path / 'checkpoint.pth'
    torch.save(torch.zeros(3, 4), path)
    with pytest.raises(CheckpointError, match=f'{path}: no state dict found: it holds a Tensor of shape'):
        load_weights(_naive(17), path)
    from lib.utils.training_state import read_training_state
    with pytest.raises(CheckpointError, match=f'{path}: not a training checkpoint: it holds a Tensor'):
        read_training_state(str(path))
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match=f'{path}: not a training checkpoint: it holds a list'):
        read_training_state(str(path))


def test_save_removes_temporary_files_of_killed_writers_and_keeps_live_ones(tmp_path):
    import subprocess
    import sys
    gone = int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                              text=True).stdout)  # a process that has ended
    stale = tmp_path / f'.checkpoint.pth.{gone}.ab12cd34.tmp'
    live = tmp_path / f'.checkpoint.pth.{os.getpid()}.0f0f0f0f.tmp'  # a write in progress (this process)
    other = tmp_path / '.model_best.pth.1.tmp'  # another file's temporary: not ours to judge here
    for path in (stale, live, other):
        path.write_bytes(b'')
    save_atomic({'x': torch.ones(1)}, tmp_path / 'checkpoint.pth')
    assert sorted(os.listdir(tmp_path)) == sorted(['checkpoint.pth', live.name, other.name])


def test_weight_files_get_the_mode_of_other_output_files(tmp_path):
    old = os.umask(0o022)
    try:
        save_atomic({'x': torch.ones(1)}, tmp_path / 'w.pth')
        with open(tmp_path / 'plain.txt', 'w') as f:
            f.write('x')
    finally:
        os.umask(old)
    assert os.stat(tmp_path / 'w.pth').st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / 'plain.txt').st_mode & 0o777 == 0o644
