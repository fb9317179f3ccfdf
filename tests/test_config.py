"""Configuration: every experiment file loads and builds its model; _BASE_ chains merge as documented;
mistakes (unknown, removed or wrong-typed keys, base cycles, missing bases) fail naming the key and file."""
import os
import re

import pytest
import torch

from lib.config import BASE_KEY, ConfigError, experiment_configs, get_cfg, load_config
from lib.config.default import REMOVED_KEYS
from lib.models import VARIANTS, build_model

from conftest import REPO_ROOT

EXPERIMENTS = os.path.join(REPO_ROOT, 'experiments')
YAMLS = experiment_configs(EXPERIMENTS)  # runnable configs: experiments/_base_/ holds recipes only
PUBLISHED = [p for p in YAMLS if os.path.relpath(p, EXPERIMENTS).split(os.sep)[0] in ('coco', 'mpii')]


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


# --- _BASE_ files ------------------------------------------------------------------------------------------

def write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def test_base_chain_of_three_files_merges_key_by_key(tmp_path):
    """root <- middle <- leaf, each in its own folder: every _BASE_ path is relative to the file naming it."""
    write(tmp_path / 'recipes' / 'root.yaml',
          'MODEL:\n  NAME: litehrnet_30\n  SIGMA: 3.0\n'
          'TRAIN:\n  LR: 0.01\n  END_EPOCH: 100\n  LR_STEP: [10, 20, 30]\nDATASET:\n  FLIP: false\n')
    write(tmp_path / 'recipes' / 'more' / 'middle.yaml', '_BASE_: ../root.yaml\nTRAIN:\n  END_EPOCH: 50\n')
    leaf = write(tmp_path / 'runs' / 'leaf.yaml',
                 '_BASE_: ../recipes/more/middle.yaml\nMODEL:\n  SIGMA: 2.5\nTRAIN:\n  LR_STEP: [5]\n')
    cfg = load_config(leaf)
    assert cfg.MODEL.SIGMA == 2.5  # the leaf overrides a nested key...
    assert cfg.MODEL.NAME == 'litehrnet_30'  # ...and its sibling still comes from the root
    assert cfg.TRAIN.END_EPOCH == 50  # the middle overrides the root
    assert cfg.TRAIN.LR == 0.01 and cfg.DATASET.FLIP is False  # root keys nobody overrides
    assert cfg.TRAIN.LR_STEP == [5]  # a list is replaced as a whole, not merged
    assert cfg.TRAIN.OPTIMIZER == get_cfg().TRAIN.OPTIMIZER  # keys no file names keep their defaults
    assert cfg.CFG_NAME == 'leaf'  # the output folder follows the file that was run
    assert BASE_KEY not in cfg and BASE_KEY not in cfg.dump()


def test_command_line_overrides_apply_after_the_bases(tmp_path):
    write(tmp_path / 'base.yaml', 'TRAIN:\n  LR: 0.01\n')
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nTRAIN:\n  LR: 0.02\n')
    assert load_config(leaf, ['TRAIN.LR', '0.03']).TRAIN.LR == 0.03


@pytest.mark.parametrize('files,chain', [
    ({'a.yaml': 'b.yaml', 'b.yaml': 'a.yaml'}, ['a.yaml', 'b.yaml', 'a.yaml']),
    ({'a.yaml': 'a.yaml'}, ['a.yaml', 'a.yaml']),
], ids=['two-file-cycle', 'names-itself'])
def test_base_cycle_names_the_chain(tmp_path, files, chain):
    for name, base in files.items():
        write(tmp_path / name, f'_BASE_: {base}\nTRAIN:\n  LR: 0.01\n')
    with pytest.raises(ConfigError, match='_BASE_ cycle') as err:
        load_config(tmp_path / 'a.yaml')
    assert str(err.value).endswith(' -> '.join(str(tmp_path / name) for name in chain))


def test_missing_base_names_both_files(tmp_path):
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: recipes/nowhere.yaml\n')
    with pytest.raises(ConfigError) as err:
        load_config(leaf)
    msg = str(err.value)
    assert msg.startswith(f'{leaf}: _BASE_ file not found: ') and str(tmp_path / 'recipes' / 'nowhere.yaml') in msg


def test_bad_keys_name_the_file_they_are_in(tmp_path):
    base = write(tmp_path / 'base.yaml', 'TRAIN:\n  LR: fast\n')
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nMODEL:\n  NAME: litehrnet_18\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(base)}: key 'TRAIN.LR' expects a value of type float"):
        load_config(leaf)
    write(tmp_path / 'base.yaml', 'TRAIN:\n  LR: 0.01\n')
    write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nMODEL:\n  NUM_JOINT: 16\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(leaf)}: unknown config key 'MODEL.NUM_JOINT'"):
        load_config(leaf)


def test_a_base_cannot_name_the_run_and_base_must_be_one_path(tmp_path):
    base = write(tmp_path / 'base.yaml', 'CFG_NAME: shared\n')
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(base)}: CFG_NAME cannot be set in a _BASE_ file"):
        load_config(leaf)
    write(tmp_path / 'leaf.yaml', '_BASE_: [a.yaml, b.yaml]\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(leaf)}: _BASE_ must be the path of one YAML file"):
        load_config(leaf)


def test_dump_of_a_config_with_bases_is_complete_and_loads_back_equal(tmp_path):
    """What tools/train.py writes as <config>_train_config.yaml reproduces the run on its own."""
    cfg = load_config(os.path.join(EXPERIMENTS, 'coco', 'lite_hrnet', 'lite_hrnet_30_384x288.yaml'),
                      ['TRAIN.LR', '0.001'])
    text = cfg.dump()
    assert BASE_KEY not in text
    dumped = write(tmp_path / 'lite_hrnet_30_384x288_train_config.yaml', text)
    again = load_config(dumped)
    assert again == cfg and again.CFG_NAME == 'lite_hrnet_30_384x288' and again.TRAIN.LR == 0.001


# --- removed HRNet keys --------------------------------------------------------------------------------------

@pytest.mark.parametrize('yaml_text,key,hint', [
    ('DEBUG:\n  DEBUG: true\n  SAVE_HEATMAPS_GT: true\n', 'DEBUG', 'TRAIN.DEBUG_INTERVAL'),
    ('CUDNN:\n  BENCHMARK: true\n  ENABLED: true\n', 'CUDNN.ENABLED', 'Delete the line'),
    ('DATASET:\n  DATA_FORMAT: zip\n', 'DATASET.DATA_FORMAT', 'OpenCV'),
    ('TEST:\n  NMS_THRE: 1.0\n', 'TEST.NMS_THRE', 'TEST.OKS_THRE'),
    ('TEST:\n  BBOX_THRE: 1.0\n', 'TEST.BBOX_THRE', 'TEST.IMAGE_THRE'),
])
def test_removed_key_says_so_and_what_to_use(tmp_path, yaml_text, key, hint):
    path = write(tmp_path / 'hrnet_style.yaml', yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: config key '{key}' was removed: ") and hint in msg
    assert 'unknown' not in msg


def test_removed_key_on_the_command_line():
    with pytest.raises(ConfigError, match=r"^command line: config key 'DEBUG.SAVE_HEATMAPS_GT' was removed: .*"
                                          r"TRAIN.DEBUG_INTERVAL"):
        load_config(None, ['DEBUG.SAVE_HEATMAPS_GT', 'false'])


def test_removed_keys_are_not_declared():
    cfg = get_cfg()
    for key in REMOVED_KEYS:
        *groups, name = key.split('.')
        node = cfg
        for group in groups:
            node = node[group]
        assert name not in node, f'{key} is both declared and listed as removed'
    assert cfg.TRAIN.DEBUG_INTERVAL == 0  # the debug key that works stays


# --- the published experiment files ------------------------------------------------------------------------

def test_base_recipes_are_not_listed_as_configs():
    assert os.path.isfile(os.path.join(EXPERIMENTS, '_base_', 'coco_topdown.yaml'))
    assert os.path.isfile(os.path.join(EXPERIMENTS, '_base_', 'mpii_topdown.yaml'))
    assert not [p for p in YAMLS if '_base_' in p]
    assert len(PUBLISHED) == 10


@pytest.mark.parametrize('path', PUBLISHED, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_published_yaml_states_only_what_differs_from_its_recipe(path):
    with open(path) as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith('#')]
    assert lines[0].startswith('_BASE_: ../../_base_/') and len(lines) < 15
    cfg = load_config(path)
    height, width = map(int, re.search(r'_(\d+)x(\d+)\.yaml$', path).groups())
    assert cfg.MODEL.IMAGE_SIZE == [width, height]  # the file name's input size, [width, height]
    dataset = os.path.relpath(path, EXPERIMENTS).split(os.sep)[0]
    assert cfg.DATASET.DATASET == dataset and cfg.MODEL.NUM_JOINTS == {'coco': 17, 'mpii': 16}[dataset]
    # The official schedule and test-time boxes (COCO: the AP 56.4 person detector; MPII: GT).
    schedule = (cfg.TRAIN.OPTIMIZER, cfg.TRAIN.LR, cfg.TRAIN.LR_STEP, cfg.TRAIN.END_EPOCH)
    assert schedule == ('adam', 0.002, [170, 200], 210)
    assert cfg.TEST.USE_GT_BBOX is (dataset == 'mpii') and cfg.TEST.FLIP_TEST is True


# --- ranges and rules, checked when the config is loaded -----------------------------------------------------

def test_every_range_names_a_declared_key_and_the_defaults_pass():
    from lib.config.default import LIST_ITEM_TYPES, RANGES
    cfg = get_cfg()
    for key in list(RANGES) + list(LIST_ITEM_TYPES):
        node = cfg
        for part in key.split('.'):
            assert part in node, f'{key} is in the range table but not declared'
            node = node[part]
        if isinstance(RANGES.get(key), tuple):
            assert node in RANGES[key], f'the default of {key} is not one of its choices'
    assert load_config(None) == get_cfg()  # the defaults pass their own ranges and rules


@pytest.mark.parametrize('key,value,message', [
    ('TRAIN.VAL_INTERVAL', '0', 'TRAIN.VAL_INTERVAL must be >= 1, got 0'),
    ('TRAIN.CHECKPOINT_INTERVAL', '0', 'TRAIN.CHECKPOINT_INTERVAL must be >= 1, got 0'),
    ('PRINT_FREQ', '0', 'PRINT_FREQ must be >= 1, got 0'),
    ('TRAIN.BATCH_SIZE_PER_GPU', '0', 'TRAIN.BATCH_SIZE_PER_GPU must be >= 1, got 0'),
    ('TEST.BATCH_SIZE_PER_GPU', '-4', 'TEST.BATCH_SIZE_PER_GPU must be >= 1, got -4'),
    ('WORKERS', '-1', 'WORKERS must be >= 0, got -1'),
    ('SEED', '-1', 'SEED must be >= 0, got -1'),
    ('TRAIN.LR', '0.0', 'TRAIN.LR must be > 0, got 0.0'),
    ('TRAIN.LR', '-0.001', 'TRAIN.LR must be > 0, got -0.001'),
    ('DATASET.PROB_HALF_BODY', '1.5', 'DATASET.PROB_HALF_BODY must be in [0, 1], got 1.5'),
    ('DATASET.PROB_ROTATION', '-0.1', 'DATASET.PROB_ROTATION must be in [0, 1], got -0.1'),
    ('DATASET.SCALE_FACTOR', '1.0', 'DATASET.SCALE_FACTOR must be in [0, 1), got 1.0'),
    ('TRAIN.MOMENTUM', '1.0', 'TRAIN.MOMENTUM must be in [0, 1), got 1.0'),
    ('TRAIN.OPTIMIZER', 'adm', "TRAIN.OPTIMIZER must be one of 'adam', 'adamw', 'sgd', got 'adm'"),
    ('MODEL.IMAGE_SIZE', '[0,256]', 'item 0 of MODEL.IMAGE_SIZE must be >= 1, got 0'),
    ('TEST.BLUR_KERNEL', '4', 'TEST.BLUR_KERNEL must be odd; got TEST.BLUR_KERNEL 4 (command line)'),
    ('TRAIN.END_EPOCH', '0', 'TRAIN.END_EPOCH must be greater than TRAIN.BEGIN_EPOCH'),
    ('LOSS.TOPK', '18', 'LOSS.TOPK must be at most MODEL.NUM_JOINTS'),
])
def test_out_of_range_value_on_the_command_line_names_key_and_command_line(key, value, message):
    opts = [key, value] + (['LOSS.USE_OHKM', 'true'] if key == 'LOSS.TOPK' else [])
    with pytest.raises(ConfigError) as err:
        load_config(YAMLS[0], opts)
    assert str(err.value).startswith('command line: ') and message in str(err.value)


def test_out_of_range_value_names_the_yaml_it_came_from(tmp_path):
    base = write(tmp_path / 'base.yaml', 'TRAIN:\n  VAL_INTERVAL: 0\n')
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nTRAIN:\n  LR: 0.01\n')
    with pytest.raises(ConfigError, match=rf'^{re.escape(base)}: TRAIN.VAL_INTERVAL must be >= 1, got 0$'):
        load_config(leaf)
    write(tmp_path / 'base.yaml', 'TRAIN:\n  ADAM_EPS: .nan\n')  # YAML's NaN is a float: only the range sees it
    with pytest.raises(ConfigError, match=rf'^{re.escape(base)}: TRAIN.ADAM_EPS must be > 0, got nan$'):
        load_config(leaf)
    write(tmp_path / 'base.yaml', 'TRAIN:\n  WD: .inf\n')
    with pytest.raises(ConfigError, match=rf'^{re.escape(base)}: TRAIN.WD must be >= 0, got inf$'):
        load_config(leaf)


def test_cross_key_error_blames_the_source_that_broke_it(tmp_path):
    """END_EPOCH <= BEGIN_EPOCH: the message starts with the latest source among the two keys (the one that
    broke the rule) and says where each value came from."""
    base = write(tmp_path / 'base.yaml', 'TRAIN:\n  END_EPOCH: 20\n')
    leaf = write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nTRAIN:\n  LR: 0.01\n')
    # The command line broke it: say so, not the YAML file.
    with pytest.raises(ConfigError) as err:
        load_config(leaf, ['TRAIN.BEGIN_EPOCH', '20'])
    assert str(err.value) == ('command line: TRAIN.END_EPOCH must be greater than TRAIN.BEGIN_EPOCH (else no epoch '
                              f'trains); got TRAIN.BEGIN_EPOCH 20 (command line), TRAIN.END_EPOCH 20 ({base})')
    # A _BASE_ broke it (the other key is a default): name the base.
    write(tmp_path / 'base.yaml', 'TRAIN:\n  END_EPOCH: 0\n')
    with pytest.raises(ConfigError, match=rf'^{re.escape(base)}: TRAIN.END_EPOCH must be greater .* '
                                          rf'TRAIN.BEGIN_EPOCH 0 \(defaults\), TRAIN.END_EPOCH 0 '):
        load_config(leaf)
    # The leaf broke what its base set up.
    write(tmp_path / 'base.yaml', 'TRAIN:\n  END_EPOCH: 20\n')
    write(tmp_path / 'leaf.yaml', '_BASE_: base.yaml\nTRAIN:\n  BEGIN_EPOCH: 25\n')
    with pytest.raises(ConfigError, match=rf'^{re.escape(leaf)}: TRAIN.END_EPOCH must be greater'):
        load_config(leaf)
    # ...and the command line can mend it.
    assert load_config(leaf, ['TRAIN.END_EPOCH', '30']).TRAIN.END_EPOCH == 30


def test_list_items_must_have_the_defaults_item_type(tmp_path):
    path = write(tmp_path / 'steps.yaml', "TRAIN:\n  LR_STEP: [170, '200']\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: key 'TRAIN.LR_STEP' expects a list of int, "
                                          r"got item 1 '200' of type str"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^command line: key 'MODEL.IMAGE_SIZE' expects a list of int, got item 0 "
                                          r"192.5 of type float"):
        load_config(None, ['MODEL.IMAGE_SIZE', '[192.5, 256]'])
    with pytest.raises(ConfigError, match=r"^command line: key 'MODEL.PRETRAINED_EXCLUDE' expects a list of str, "
                                          r"got item 0 1 of type int"):
        load_config(None, ['MODEL.PRETRAINED_EXCLUDE', '[1]'])
    cfg = load_config(None, ['MODEL.PRETRAINED_EXCLUDE', "['keypoint_head.*']"])
    assert cfg.MODEL.PRETRAINED_EXCLUDE == ['keypoint_head.*']


@pytest.mark.slow
def test_train_tool_refuses_a_bad_schedule_before_any_work(tmp_path):
    """Today's failure: END_EPOCH 0 exited 0 with an untrained final_state.pth. Now: exit 2, one line, no files."""
    import subprocess
    import sys
    out = tmp_path / 'out'
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), '--cfg', YAMLS[0],
                          'OUTPUT_DIR', str(out), 'LOG_DIR', str(tmp_path / 'log'), 'TRAIN.END_EPOCH', '0'],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith('error: command line: TRAIN.END_EPOCH must be greater than TRAIN.BEGIN_EPOCH')
    assert run.stderr.count('\n') == 1 and not out.exists()
