"""Shared test fixtures. The repo root is put on sys.path so `import lib` works from anywhere."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

SHARED_DIR = os.environ.get('LITEHRNET_SHARED', os.path.join(REPO_ROOT, '..', 'shared'))
SHARED_DATA = os.path.join(SHARED_DIR, 'data')
SHARED_REFERENCE = os.path.join(SHARED_DIR, 'reference')


def require_path(path: str) -> str:
    """Skip the calling test, with the reason, when a file from ../shared is absent (a user's clone)."""
    if not os.path.exists(path):
        pytest.skip(f'{path} not found: this test needs the ../shared fixtures beside the repository')
    return path


@pytest.fixture
def coco_tiny() -> str:
    return require_path(os.path.join(SHARED_DATA, 'coco_tiny'))


@pytest.fixture
def mpii_tiny() -> str:
    return require_path(os.path.join(SHARED_DATA, 'mpii_tiny'))


@pytest.fixture
def reference_dir() -> str:
    return require_path(SHARED_REFERENCE)


# --- training/test tools (TRAIN helper) ------------------------------------------------------------------
TOOLS_DIR = os.path.join(REPO_ROOT, 'tools')


def load_tool(name: str):
    """Import tools/<name>.py as module 'tools_<name>' (tools/ goes on sys.path for its `import _init_paths`).

    A plain `import test` would find Python's own `test` package, hence the explicit file import.
    """
    import importlib.util
    if TOOLS_DIR not in sys.path:
        sys.path.insert(0, TOOLS_DIR)
    module_name = f'tools_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(TOOLS_DIR, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


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
