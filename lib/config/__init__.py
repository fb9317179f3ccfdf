"""Configuration: YACS defaults (default.py) <- a YAML file <- `KEY VALUE` pairs from the command line.

    cfg = load_config('experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml',
                      opts=['TEST.MODEL_FILE', 'm.pth'])

`load_config` never touches a module-level object: it merges into a fresh copy of the defaults and
returns it frozen. Unknown keys and values of the wrong type fail with a `ConfigError` that names
the key and the file (or the command line) it came from.
"""
from __future__ import annotations

import ast
import os
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from .default import _C

__all__ = ['ConfigError', 'get_cfg', 'load_config', 'merge_opts', 'output_dirs']


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
            raise ConfigError(f"{source}: unknown config key '{key}'{_suggest(node, name, prefix)}")
        default = node[name]
        if isinstance(default, CN):
            _merge_dict(default, value, source, key + '.')
        else:
            node[name] = _coerce(value, default, key, source)


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
    """Defaults <- YAML file at `path` (optional) <- `opts` pairs; returns a frozen copy."""
    cfg = get_cfg()
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path) as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from None
        _merge_dict(cfg, data, path)
        cfg.CFG_NAME = os.path.splitext(os.path.basename(path))[0]
    merge_opts(cfg, list(opts))
    _check(cfg, path or 'defaults')
    cfg.freeze()
    return cfg


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


def output_dirs(cfg: CN) -> tuple[str, str]:
    """(output folder, TensorBoard folder): <ROOT>/<dataset>/<model>/<config name>."""
    parts = (cfg.DATASET.DATASET, cfg.MODEL.NAME, cfg.CFG_NAME or 'default')
    return os.path.join(cfg.OUTPUT_DIR, *parts), os.path.join(cfg.LOG_DIR, *parts)
