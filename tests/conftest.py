"""Shared test fixtures. The repo root is put on sys.path so `import lib` works from anywhere."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Every fixture the suite reads lives in tests/data (copies of ../shared's tiny COCO/MPII samples and the
# official-format reference checkpoint with its outputs), so a fresh clone tests everything CI tests.
DATA_DIR = os.path.join(REPO_ROOT, 'tests', 'data')
REFERENCE_DIR = os.path.join(DATA_DIR, 'reference')
REFERENCE_CHECKPOINT = os.path.join(REFERENCE_DIR, 'litehrnet_18_coco_256x192.pth')
COCO_TINY = os.path.join(DATA_DIR, 'coco_tiny')
MPII_TINY = os.path.join(DATA_DIR, 'mpii_tiny')


@pytest.fixture
def coco_tiny() -> str:
    return COCO_TINY


@pytest.fixture
def mpii_tiny() -> str:
    return MPII_TINY


@pytest.fixture
def reference_dir() -> str:
    return REFERENCE_DIR


# --- models with realistic numbers (ONNX export, deploy form) ---------------------------------------------
SMALL_INPUT = ['MODEL.IMAGE_SIZE', '[96,128]', 'MODEL.HEATMAP_SIZE', '[24,32]']  # 128x96 keeps exports quick


def realistic_model(name: str, seed: int = 0):
    """Variant `name` at 128x96 in eval mode: Kaiming weights and random BatchNorm statistics, so heatmaps
    have realistic magnitudes (the official N(0, 0.001^2) init makes every output ~0 and comparisons
    vacuous) and BN folding changes the numbers it must preserve."""
    import torch
    from lib.config import load_config
    from lib.models import build_model
    torch.manual_seed(seed)
    model = build_model(load_config(None, ['MODEL.NAME', name, 'MODEL.INIT', 'kaiming'] + SMALL_INPUT)).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


# --- the command-line scripts (tools/, demo/) imported in-process -------------------------------------------
TOOLS_DIR = os.path.join(REPO_ROOT, 'tools')


def load_script(folder: str, name: str):
    """Import <folder>/<name>.py (folder 'tools' or 'demo') once, as module '<folder>_<name>', with the folder on
    sys.path for its `import _init_paths`; its main(argv) returns the exit status.

    A plain `import test` would find Python's own `test` package, hence the explicit file import.
    """
    import importlib.util
    directory = os.path.join(REPO_ROOT, folder)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = f'{folder}_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(directory, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def load_tool(name: str):
    """tools/<name>.py as a module (`load_script`)."""
    return load_script('tools', name)


@pytest.fixture(scope='session')
def synthetic_tiny(tmp_path_factory) -> str:
    """A tiny synthetic COCO-format set (6 train / 3 val images, 1-3 people each), made once per session."""
    from lib.dataset.synthetic import make_synthetic_dataset
    root = str(tmp_path_factory.mktemp('synthetic_tiny'))
    make_synthetic_dataset(root, seed=0, num_train=6, num_val=3)
    return root


def _one_torch_thread():
    """One torch intra-op thread while the generator is suspended: CI shares 2 cores, and oversubscribed
    threads slow small convolutions (and ONNX tracing) severalfold. Restores the previous setting."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


single_thread = pytest.fixture(_one_torch_thread)  # per test: pytestmark = usefixtures('single_thread')
single_thread_module = pytest.fixture(scope='module')(_one_torch_thread)  # per test module
