"""The package layers stay one-directional: a lower layer never imports a higher one.

lib/utils (checkpoints, logging, timing, ...) serves everything and imports nothing from lib/models or
lib/core; lib/models knows nothing of lib/export (which turns models into deployed ones) or of data;
lib/codecs knows nothing of the rest of lib. Checked on the source, so a lazy import inside a function
counts too.
"""
import ast
import os

import pytest

from conftest import REPO_ROOT

FORBIDDEN = {  # package -> the lib packages it must not import
    'lib/utils': ('lib.models', 'lib.core', 'lib.export'),
    'lib/models': ('lib.export', 'lib.core', 'lib.dataset', 'lib.codecs', 'lib.evaluation'),
    'lib/codecs': ('lib.models', 'lib.core', 'lib.export', 'lib.dataset', 'lib.evaluation', 'lib.utils'),
}


def imported_modules(path: str, package: str) -> set[str]:
    """Absolute names of every module imported anywhere in the file (relative imports resolved)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y inside lib/<package>
                base = package.replace('/', '.').split('.')[:len(package.split('/')) - node.level + 1]
                names.add('.'.join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(package: str) -> None:
    folder = os.path.join(REPO_ROOT, package)
    files = [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith('.py')]
    assert files
    bad = {os.path.basename(path): sorted(m for m in imported_modules(path, package)
                                          if m.startswith(FORBIDDEN[package]))
           for path in files}
    assert not {name: mods for name, mods in bad.items() if mods}


def test_the_checker_sees_relative_and_lazy_imports(tmp_path) -> None:
    source = tmp_path / 'probe.py'
    source.write_text('from .layers import x\n\ndef f():\n    from lib.export import to_deploy\n')
    assert imported_modules(str(source), 'lib/models') == {'lib.models.layers', 'lib.export'}
