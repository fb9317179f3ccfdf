"""Loading weights (ours and official mmpose-format) and writing checkpoints atomically.

Our model's parameter names are the official ones (`backbone.…`, `keypoint_head.final_layer.…`), so
an official checkpoint loads without renaming. Every load uses `torch.load(weights_only=True)`:
a checkpoint file can never run code.
"""
from __future__ import annotations

import fnmatch
import glob
import logging
import os
import secrets
from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = ['CheckpointError', 'extract_state_dict', 'load_checkpoint_file', 'load_weights', 'pid_alive',
           'remove_stale_temp_files', 'save_atomic']

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A weights file is missing, unreadable, or does not fit the model; the message says why."""


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """`torch.load` of a file, CPU-mapped and restricted to tensors and plain containers."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"cannot read weights file {path}: {type(err).__name__}: {err}") from None


def describe(obj: Any) -> str:
    """A short description of what a file held, for error messages: 'a Tensor of shape (3, 4)', 'a list'."""
    if isinstance(obj, torch.Tensor):
        return f'a Tensor of shape {tuple(obj.shape)}'
    return f'a {type(obj).__name__}'


# Prefixes written by other tools for the same tensors.
_PREFIX_RENAMES = (
    ('module.', ''),  # saved from a DistributedDataParallel / DataParallel wrapper
    ('head.final_layer.', 'keypoint_head.final_layer.'),  # mmpose 1.x ports
)


def extract_state_dict(checkpoint: Any, path: str = '<checkpoint>') -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint: ours ({'model': …}), mmpose ({'state_dict': …}) or bare."""
    if isinstance(checkpoint, Mapping):
        for key in ('model', 'state_dict'):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: no state dict found: it holds {describe(checkpoint)}, expected a mapping "
                              f"of names to tensors, or one under 'model' or 'state_dict'")
    state = {}
    for name, tensor in checkpoint.items():
        for old, new in _PREFIX_RENAMES:
            if name.startswith(old):
                name = new + name[len(old):]
        state[name] = tensor
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, exclude: Sequence[str] = ()) -> nn.Module:
    """Load a checkpoint strictly into `model`; on any mismatch raise an error listing every key at fault.

    Missing keys, unexpected keys and keys with the wrong shape are all reported together, so a
    checkpoint of another variant (or another number of joints) is diagnosed in one message.
    exclude: fnmatch patterns (MODEL.PRETRAINED_EXCLUDE) of names not loaded: matching checkpoint keys are
    dropped and matching model keys keep their initial values, e.g. ['keypoint_head.*'] to fine-tune a
    17-joint checkpoint to 5 joints. Every pattern must match some key (a typo would otherwise load
    nothing less and say nothing); the skipped keys are logged. The strict check covers every other key.
    """
    path = os.fspath(path)
    state = extract_state_dict(load_checkpoint_file(path), path)
    own = model.state_dict()
    if exclude:
        state, own = _drop_excluded(state, own, exclude, path)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                         for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        lines = [f"{path} does not fit the model ({type(model).__name__}):"]
        for title, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                            ('wrong-shaped keys', wrong_shape)):
            if keys:
                shown = keys[:20] + ([f'... and {len(keys) - 20} more'] if len(keys) > 20 else [])
                lines.append(f"  {len(keys)} {title}:\n    " + '\n    '.join(shown))
        if not exclude:
            lines.append("  (to load all but some layers, e.g. another number of joints, list them in "
                         "MODEL.PRETRAINED_EXCLUDE, e.g. ['keypoint_head.*'])")
        raise CheckpointError('\n'.join(lines))
    # strict=False only when keys were excluded on purpose: every other key was checked above.
    model.load_state_dict(state, strict=not exclude)
    return model


def _drop_excluded(state: dict, own: dict, exclude: Sequence[str], path: str) -> tuple[dict, dict]:
    """(checkpoint state, model state) without the names matching `exclude`; logs what was skipped."""
    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)

    unused = [p for p in exclude if not any(fnmatch.fnmatchcase(k, p) for k in (*state, *own))]
    if unused:
        raise CheckpointError(f"MODEL.PRETRAINED_EXCLUDE: pattern(s) {unused} match no parameter of {path} "
                              f"or of the model (names look like 'backbone.stem.conv1.conv.weight', "
                              f"'keypoint_head.final_layer.weight')")
    skipped = sorted({k for k in (*state, *own) if excluded(k)})
    for name in skipped:
        ckpt = tuple(state[name].shape) if name in state else 'absent'
        mine = tuple(own[name].shape) if name in own else 'absent'
        logger.info('%s: not loaded (MODEL.PRETRAINED_EXCLUDE): %s: checkpoint %s, model %s (keeps its '
                    'initial value)', path, name, ckpt, mine)
    logger.info('%s: %d key(s) skipped by MODEL.PRETRAINED_EXCLUDE %s', path, len(skipped), list(exclude))
    return ({k: v for k, v in state.items() if not excluded(k)},
            {k: v for k, v in own.items() if not excluded(k)})


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file in the same folder, then rename: never a half-written file.

    The temporary file is named after this process (`.<name>.<pid>.<random>.tmp`), so temporary files of
    earlier runs that were killed mid-write can be told apart and are removed here. It gets the mode of
    any new file (0644 under the usual umask), not mkstemp's 0600. An OSError (read-only folder, full
    disk) becomes a CheckpointError naming the file; the previous file at `path` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temp_files(path)
        tmp, fd = _create_temp(path)
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise CheckpointError(f'{path}: cannot write ({err.strerror or err}); the previous file there, '
                                  f'if any, is unchanged') from None
        raise


def _temp_prefix(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), '.' + os.path.basename(path) + '.')


def _create_temp(path: str) -> tuple[str, int]:
    """(name, descriptor) of a new, exclusively created temporary file beside `path`."""
    tmp = f'{_temp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp'
    # 0o666 minus the umask, as open() gives any other output file; O_EXCL: never reuse another's file.
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def remove_stale_temp_files(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files save_atomic left beside `path` when its process was killed mid-write.

    A file is stale when the process named in it is gone (checked on this machine). Files of a live
    process, or in another name format, are left alone. Returns the removed names.
    """
    prefix = _temp_prefix(os.fspath(path))
    removed = []
    for tmp in glob.glob(glob.escape(prefix) + '*.tmp'):
        pid = tmp[len(prefix):].split('.', 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.remove(tmp)
                removed.append(tmp)
            except FileNotFoundError:  # another process cleaned it first
                pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
