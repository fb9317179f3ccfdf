"""Configuration: YACS defaults (default.py) <- YAML files <- `KEY VALUE` pairs from the command line.

    cfg = load_config('experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml',
                      opts=['TEST.MODEL_FILE', 'm.pth'])

A YAML file may start from another one with `_BASE_: path.yaml` (detectron2 style; the path is
relative to the file that names it, and a base may name its own base). The bases are merged first,
deepest first, then the file's own keys: mappings merge key by key, any other value (lists included)
replaces the base's. `_BASE_` itself never reaches the resolved config, and `cfg.dump()` writes every
key, so a dumped config loads on its own. `CFG_NAME` is the stem of the file passed in (unless that
file sets CFG_NAME itself, as a dumped config does), so the output folder follows the file you ran.

`load_config` never touches a module-level object: it merges into a fresh copy of the defaults and
returns it frozen. Unknown keys, removed keys (with what to use instead) and values of the wrong type
fail with a `ConfigError` that names the key and the file (or the command line) it came from.
"""
from __future__ import annotations

import ast
import glob
import os
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from .default import _C, REMOVED_KEYS

__all__ = ['BASE_KEY', 'BASES_DIR', 'ConfigError', 'experiment_configs', 'get_cfg', 'load_config', 'merge_opts',
           'output_dirs']


BASE_KEY = '_BASE_'
BASES_DIR = '_base_'  # folders of recipe files that are only ever a _BASE_, never run


class ConfigError(ValueError):
    """A configuration file or command-line override is wrong; the message names key and source."""


def get_cfg() -> CN:
    """A mutable copy of the defaults (never the module's own node)."""
    return _C.clone()


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    """Return `value` converted to the type of `default`, or raise naming the key and source."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    elif default is None:
        return value
    raise ConfigError(
        f"{source}: key '{key}' expects a value of type {type(default).__name__} "
        f"(default {default!r}), got {value!r} of type {type(value).__name__}")


def _merge_dict(node: CN, data: dict, source: str, prefix: str = '') -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<top level>'}' must be a mapping, got {data!r}")
    for name, value in data.items():
        key = f'{prefix}{name}'
        if name not in node:
            raise _removed_key_error(key, source) or ConfigError(
                f"{source}: unknown config key '{key}'{_suggest(node, name, prefix)}")
        default = node[name]
        if isinstance(default, CN):
            _merge_dict(default, value, source, key + '.')
        else:
            node[name] = _coerce(value, default, key, source)


def _removed_key_error(key: str, source: str) -> ConfigError | None:
    """The error for a key (or a key inside a group) listed in REMOVED_KEYS, else None."""
    parts = key.split('.')
    for depth in range(len(parts), 0, -1):
        removed = '.'.join(parts[:depth])
        if removed in REMOVED_KEYS:
            return ConfigError(f"{source}: config key '{key}' was removed: {REMOVED_KEYS[removed]}")
    return None


def _suggest(node: CN, name: str, prefix: str) -> str:
    import difflib
    close = difflib.get_close_matches(str(name), [str(k) for k in node.keys()], n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ''


def _parse_cli_value(text: str) -> Any:
    """Parse a command-line value the way YACS does, plus lower-case true/false."""
    if text in ('true', 'false'):
        return text == 'true'
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_opts(cfg: CN, opts: Sequence[str], source: str = 'command line') -> None:
    """Apply `KEY VALUE` pairs (e.g. from argparse REMAINDER) to a mutable config."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"{source}: overrides come in KEY VALUE pairs, got an odd number: {opts}")
    for key, text in zip(opts[0::2], opts[1::2]):
        node, parts = cfg, key.split('.')
        for depth, part in enumerate(parts):
            if not isinstance(node, CN) or part not in node:
                removed = _removed_key_error(key, source)
                if removed:
                    raise removed
                prefix = '.'.join(parts[:depth]) + ('.' if depth else '')
                hint = _suggest(node, part, prefix) if isinstance(node, CN) else ''
                raise ConfigError(f"{source}: unknown config key '{key}'{hint}")
            if depth < len(parts) - 1:
                node = node[part]
        if isinstance(node[parts[-1]], CN):
            raise ConfigError(f"{source}: '{key}' is a group of keys, not a value")
        value = _parse_cli_value(text) if isinstance(text, str) else text
        if isinstance(node[parts[-1]], str) and not isinstance(value, str):
            value = text  # e.g. a file name that happens to look like a number
        node[parts[-1]] = _coerce(value, node[parts[-1]], key, source)


def load_config(path: str | os.PathLike | None = None, opts: Iterable[str] = ()) -> CN:
    """Defaults <- the YAML file at `path` (optional) with its _BASE_ files <- `opts` pairs; a frozen copy."""
    cfg = get_cfg()
    if path is not None:
        path = os.fspath(path)
        for source, data in _config_chain(path):
            _merge_dict(cfg, data, source)  # errors name the file the bad key is in
        # The output folder follows the file you ran; only that file may name it otherwise (a dumped
        # <config>_train_config.yaml carries its run's name; bases cannot set CFG_NAME).
        cfg.CFG_NAME = cfg.CFG_NAME or os.path.splitext(os.path.basename(path))[0]
    merge_opts(cfg, list(opts))
    _check(cfg, path or 'defaults')
    cfg.freeze()
    return cfg


def _config_chain(path: str, referrers: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """[(file, its own keys without _BASE_)] in merge order: the deepest base first, `path` last.

    `referrers` are the files that led here (leaf first), to report a cycle as the whole chain.
    """
    data = _read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if referrers and 'CFG_NAME' in data:
        raise ConfigError(f"{path}: CFG_NAME cannot be set in a {BASE_KEY} file (it would name every config "
                          f"built on it, here {referrers[-1]}); set it in the file you run, or leave it to "
                          f"the file name")
    if base is None:
        return [(path, data)]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY} must be the path of one YAML file, got {base!r}")
    base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
    chain = referrers + (path,)
    if any(os.path.realpath(base_path) == os.path.realpath(p) for p in chain):
        raise ConfigError(f"{BASE_KEY} cycle: {' -> '.join(chain + (base_path,))}")
    if not os.path.isfile(base_path):
        raise ConfigError(f"{path}: {BASE_KEY} file not found: {base_path} ({BASE_KEY}: {base})")
    return _config_chain(base_path, chain) + [(path, data)]


def _read_yaml(path: str) -> dict:
    """The mapping in one YAML file ({} when empty); errors name the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys, got {data!r}")
    return data


def _check(cfg: CN, source: str) -> None:
    """Cross-key consistency that a type check alone cannot see."""
    for key in ('IMAGE_SIZE', 'HEATMAP_SIZE'):
        size = cfg.MODEL[key]
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ConfigError(f"{source}: MODEL.{key} must be [width, height] positive integers, got {size}")
    image_w, image_h = cfg.MODEL.IMAGE_SIZE
    heat_w, heat_h = cfg.MODEL.HEATMAP_SIZE
    if (image_w, image_h) != (heat_w * 4, heat_h * 4):
        raise ConfigError(f"{source}: MODEL.HEATMAP_SIZE {cfg.MODEL.HEATMAP_SIZE} must be MODEL.IMAGE_SIZE "
                          f"{cfg.MODEL.IMAGE_SIZE} / 4 (Lite-HRNet's output stride)")
    if image_w % 32 or image_h % 32:
        raise ConfigError(f"{source}: MODEL.IMAGE_SIZE {cfg.MODEL.IMAGE_SIZE} must be multiples of 32 "
                          f"(four branches at strides 4..32)")
    if list(cfg.TRAIN.LR_STEP) != sorted(cfg.TRAIN.LR_STEP):
        raise ConfigError(f"{source}: TRAIN.LR_STEP must be increasing, got {cfg.TRAIN.LR_STEP}")


def experiment_configs(experiments_dir: str) -> list[str]:
    """Every YAML under `experiments_dir` that is a config to run, sorted; files in `_base_/` folders are skipped."""
    paths = glob.glob(os.path.join(experiments_dir, '**', '*.yaml'), recursive=True)
    return sorted(p for p in paths if BASES_DIR not in os.path.relpath(p, experiments_dir).split(os.sep))


def output_dirs(cfg: CN) -> tuple[str, str]:
    """(output folder, TensorBoard folder): <ROOT>/<dataset>/<model>/<config name>."""
    parts = (cfg.DATASET.DATASET, cfg.MODEL.NAME, cfg.CFG_NAME or 'default')
    return os.path.join(cfg.OUTPUT_DIR, *parts), os.path.join(cfg.LOG_DIR, *parts)
