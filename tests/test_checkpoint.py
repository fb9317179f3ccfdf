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
