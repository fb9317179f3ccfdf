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
