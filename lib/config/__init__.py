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
returns it frozen. Unknown keys, removed keys (with what to use instead), values of the wrong type (list
items included), values outside their range (default.RANGES) and keys that contradict each other
(`_RULES` below, e.g. TRAIN.END_EPOCH <= TRAIN.BEGIN_EPOCH) fail with a `ConfigError` that names the key
and the file (or the command line) its value came from, before any work starts.
"""
from __future__ import annotations

import ast
import glob
import math
import os
import re
from typing import Any, Callable, Iterable, Optional, Sequence

import yaml
from yacs.config import CfgNode as CN

from .default import _C, BACKEND_PRECISIONS, LIST_ITEM_TYPES, RANGES, REMOVED_KEYS

__all__ = ['BASE_KEY', 'BASES_DIR', 'ConfigError', 'experiment_configs', 'get_cfg', 'load_config', 'merge_opts',
           'output_dirs']


BASE_KEY = '_BASE_'
BASES_DIR = '_base_'  # folders of recipe files that are only ever a _BASE_, never run
DEFAULTS = 'defaults'  # the source of a value no file or override set
COMMAND_LINE = 'command line'


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
            return _coerce_items(list(value), default, key, source)
    elif default is None:
        return value
    raise ConfigError(
        f"{source}: key '{key}' expects a value of type {type(default).__name__} "
        f"(default {default!r}), got {value!r} of type {type(value).__name__}")


def _coerce_items(items: list, default: Sequence, key: str, source: str) -> list:
    """Each item converted to the type of the default's items (LIST_ITEM_TYPES when the default is empty)."""
    item_type = type(default[0]) if default else LIST_ITEM_TYPES.get(key)
    if item_type is None:
        return items
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_coerce(item, item_type(), key, source))
        except ConfigError:
            raise ConfigError(f"{source}: key '{key}' expects a list of {item_type.__name__}, got item {i} "
                              f"{item!r} of type {type(item).__name__} in {items!r}") from None
    return out


def _merge_dict(node: CN, data: dict, source: str, prefix: str = '',
                origins: Optional[dict[str, str]] = None) -> None:
    """Merge a YAML mapping into `node`; `origins` (when given) records `source` for every key set."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<top level>'}' must be a mapping, got {data!r}")
    for name, value in data.items():
        key = f'{prefix}{name}'
        if name not in node:
            raise _removed_key_error(key, source) or ConfigError(
                f"{source}: unknown config key '{key}'{_suggest(node, name, prefix)}")
        default = node[name]
        if isinstance(default, CN):
            _merge_dict(default, value, source, key + '.', origins)
        else:
            node[name] = _coerce(value, default, key, source)
            if origins is not None:
                origins[key] = source


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


def merge_opts(cfg: CN, opts: Sequence[str], source: str = COMMAND_LINE,
               origins: Optional[dict[str, str]] = None) -> None:
    """Apply `KEY VALUE` pairs (e.g. from argparse REMAINDER) to a mutable config; `origins` as in _merge_dict."""
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
        if origins is not None:
            origins[key] = source


def load_config(path: str | os.PathLike | None = None, opts: Iterable[str] = ()) -> CN:
    """Defaults <- the YAML file at `path` (optional) with its _BASE_ files <- `opts` pairs; a frozen copy."""
    cfg = get_cfg()
    origins: dict[str, str] = {}  # key -> the file (or the command line) that set its value last
    sources = [DEFAULTS]  # in merge order: a later source overrides an earlier one
    if path is not None:
        path = os.fspath(path)
        for source, data in _config_chain(path):
            _merge_dict(cfg, data, source, origins=origins)  # errors name the file the bad key is in
            sources.append(source)
        # The output folder follows the file you ran; only that file may name it otherwise (a dumped
        # <config>_train_config.yaml carries its run's name; bases cannot set CFG_NAME).
        cfg.CFG_NAME = cfg.CFG_NAME or os.path.splitext(os.path.basename(path))[0]
    merge_opts(cfg, list(opts), origins=origins)
    sources.append(COMMAND_LINE)
    _check(cfg, origins, sources)
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


def _range_test(rule) -> tuple[Callable[[Any], bool], str]:
    """A RANGES entry -> (test of one value, the words for the error: 'be >= 1', 'be in [0, 1)', ...)."""
    if isinstance(rule, tuple):
        return (lambda v: v in rule), f"be one of {', '.join(repr(c) for c in rule)}"
    bound = re.fullmatch(r'(>=|>)\s*(\S+)', rule)
    if bound:
        op, low = bound.group(1), float(bound.group(2))
        return ((lambda v: v >= low) if op == '>=' else (lambda v: v > low)), f'be {rule}'
    interval = re.fullmatch(r'([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])', rule)
    if not interval:
        raise ValueError(f'lib/config/default.py RANGES: cannot read the rule {rule!r}')
    left, low, high, right = interval.group(1), float(interval.group(2)), float(interval.group(3)), interval.group(4)

    def test(v) -> bool:
        return (v >= low if left == '[' else v > low) and (v <= high if right == ']' else v < high)
    return test, f'be in {rule}'


_RANGE_TESTS = {key: _range_test(rule) for key, rule in RANGES.items()}  # a bad rule fails at import

# Rules between keys (or on a whole list), checked in order after the ranges, so a rule may assume the
# ranges and the rules before it: (keys, test of their values, what must hold).
_RULES: tuple[tuple[tuple[str, ...], Callable[..., bool], str], ...] = (
    (('MODEL.IMAGE_SIZE',), lambda size: len(size) == 2, 'MODEL.IMAGE_SIZE must be [width, height]'),
    (('MODEL.HEATMAP_SIZE',), lambda size: len(size) == 2, 'MODEL.HEATMAP_SIZE must be [width, height]'),
    (('MODEL.IMAGE_SIZE', 'MODEL.HEATMAP_SIZE'), lambda image, heat: list(image) == [4 * v for v in heat],
     "MODEL.HEATMAP_SIZE must be MODEL.IMAGE_SIZE / 4 (Lite-HRNet's output stride)"),
    (('MODEL.IMAGE_SIZE',), lambda size: size[0] % 32 == 0 and size[1] % 32 == 0,
     'MODEL.IMAGE_SIZE must be multiples of 32 (four branches at strides 4..32)'),
    (('TRAIN.BEGIN_EPOCH', 'TRAIN.END_EPOCH'), lambda begin, end: end > begin,
     'TRAIN.END_EPOCH must be greater than TRAIN.BEGIN_EPOCH (else no epoch trains)'),
    (('TRAIN.LR_STEP',), lambda steps: list(steps) == sorted(steps), 'TRAIN.LR_STEP must be increasing'),
    (('LOSS.USE_OHKM', 'LOSS.TOPK', 'MODEL.NUM_JOINTS'), lambda ohkm, topk, joints: not ohkm or topk <= joints,
     'LOSS.TOPK must be at most MODEL.NUM_JOINTS when LOSS.USE_OHKM is on'),
    (('TRAIN.OPTIMIZER', 'TRAIN.NESTEROV', 'TRAIN.MOMENTUM'),
     lambda optimizer, nesterov, momentum: optimizer != 'sgd' or not nesterov or momentum > 0,
     'TRAIN.NESTEROV needs TRAIN.MOMENTUM > 0 (torch SGD)'),
    (('TEST.BLUR_KERNEL',), lambda kernel: kernel % 2 == 1, 'TEST.BLUR_KERNEL must be odd'),
    (('TEST.BACKEND', 'TEST.PRECISION'),
     lambda backend, precision: precision in BACKEND_PRECISIONS[backend],
     "TEST.PRECISION: the torch backend runs fp32, onnxruntime fp32 or int8 (its CPU kernels have no bfloat16), "
     "openvino fp32, bf16 or int8"),
    (('TEST.BACKEND', 'TEST.COMPILE', 'TEST.CHANNELS_LAST'),
     lambda backend, compiled, channels_last: backend == 'torch' or not (compiled or channels_last),
     'TEST.COMPILE and TEST.CHANNELS_LAST apply to the torch backend only (onnxruntime and OpenVINO optimise '
     'their own graphs)'),
)


def _value(cfg: CN, key: str) -> Any:
    node = cfg
    for part in key.split('.'):
        node = node[part]
    return node


def _check(cfg: CN, origins: dict[str, str], sources: Sequence[str]) -> None:
    """Every value in its range (default.RANGES), then the rules between keys (_RULES).

    An error starts with the source that set the value last: for several keys, the latest of their
    sources in merge order (`sources`: defaults, the _BASE_ files deepest first, the file, the command
    line), since that is the setting that broke the rule; each key's own source follows its value.
    """
    def origin(key: str) -> str:
        return origins.get(key, DEFAULTS)

    for key, (test, words) in _RANGE_TESTS.items():
        value = _value(cfg, key)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            numeric = isinstance(item, (int, float)) and not isinstance(item, bool)
            if not test(item) or (numeric and not math.isfinite(item)):
                which = f'item {i} of {key}' if isinstance(value, list) else key
                raise ConfigError(f'{origin(key)}: {which} must {words}, got {item!r}')
    for keys, test, what in _RULES:
        values = [_value(cfg, key) for key in keys]
        if not test(*values):
            blamed = max((origin(key) for key in keys), key=sources.index)
            got = ', '.join(f'{key} {value!r} ({origin(key)})' for key, value in zip(keys, values))
            raise ConfigError(f'{blamed}: {what}; got {got}')


def experiment_configs(experiments_dir: str) -> list[str]:
    """Every YAML under `experiments_dir` that is a config to run, sorted; files in `_base_/` folders are skipped."""
    paths = glob.glob(os.path.join(experiments_dir, '**', '*.yaml'), recursive=True)
    return sorted(p for p in paths if BASES_DIR not in os.path.relpath(p, experiments_dir).split(os.sep))


def output_dirs(cfg: CN) -> tuple[str, str]:
    """(output folder, TensorBoard folder): <ROOT>/<dataset>/<model>/<config name>."""
    parts = (cfg.DATASET.DATASET, cfg.MODEL.NAME, cfg.CFG_NAME or 'default')
    return os.path.join(cfg.OUTPUT_DIR, *parts), os.path.join(cfg.LOG_DIR, *parts)
