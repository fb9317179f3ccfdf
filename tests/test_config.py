"""Configuration: every experiment file loads and builds its model; mistakes fail with the key and file."""
import glob
import os

import pytest
import torch

from lib.config import ConfigError, get_cfg, load_config
from lib.models import VARIANTS, build_model

from conftest import REPO_ROOT

YAMLS = sorted(glob.glob(os.path.join(REPO_ROOT, 'experiments', '**', '*.yaml'), recursive=True))


pytestmark = pytest.mark.usefixtures('single_thread_module')  # small tensors: one thread is fastest


def test_the_ten_published_configs_exist():
    names = {os.path.relpath(p, REPO_ROOT) for p in YAMLS}
    for dataset, size in (('coco', '256x192'), ('mpii', '256x256')):
        for depth in (18, 30):
            assert f'experiments/{dataset}/lite_hrnet/lite_hrnet_{depth}_{size}.yaml' in names
        for kind in ('naive', 'wider_naive'):
            assert f'experiments/{dataset}/naive_lite_hrnet/{kind}_lite_hrnet_18_{size}.yaml' in names
    for depth in (18, 30):
        assert f'experiments/coco/lite_hrnet/lite_hrnet_{depth}_384x288.yaml' in names


@pytest.mark.parametrize('path', YAMLS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_yaml_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.is_frozen() and cfg.MODEL.NAME in VARIANTS
    model = build_model(cfg).eval()
    width, height = cfg.MODEL.IMAGE_SIZE
    with torch.no_grad():
        out = model(torch.zeros(1, 3, height, width))
    assert out.shape == (1, cfg.MODEL.NUM_JOINTS, cfg.MODEL.HEATMAP_SIZE[1], cfg.MODEL.HEATMAP_SIZE[0])


def test_misspelt_key_names_key_and_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('MODEL:\n  NAME: litehrnet_18\n  NUM_JOINT: 17\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "'MODEL.NUM_JOINT'" in msg and "did you mean 'MODEL.NUM_JOINTS'" in msg


def test_wrong_type_names_key_and_file(tmp_path):
    path = tmp_path / 'typed.yaml'
    path.write_text('TRAIN:\n  LR: fast\n')
    with pytest.raises(ConfigError, match=r"typed\.yaml.*'TRAIN\.LR'.*float"):
        load_config(path)


def test_command_line_overrides_and_their_errors():
    cfg = load_config(YAMLS[0], ['TEST.MODEL_FILE', 'm.pth', 'MODEL.WITH_CP', 'true'])
    assert cfg.TEST.MODEL_FILE == 'm.pth' and cfg.MODEL.WITH_CP is True
    with pytest.raises(ConfigError, match="command line: unknown config key 'TEST.MODEL_FLIE'"):
        load_config(YAMLS[0], ['TEST.MODEL_FLIE', 'm.pth'])
    assert get_cfg().TEST.MODEL_FILE == ''  # the defaults were not touched


def test_unknown_variant_names_the_choices():
    cfg = load_config(None, ['MODEL.NAME', 'litehrnet_40'])
    with pytest.raises(ValueError, match="'litehrnet_40'.*naive_litehrnet_18"):
        build_model(cfg)
