"""Loading weights (ours and official mmpose-format) and writing checkpoints atomically.

Our model's parameter names are the official ones (`backbone.…`, `keypoint_head.final_layer.…`), so
an official checkpoint loads without renaming. Every load uses `torch.load(weights_only=True)`:
a checkpoint file can never run code.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ['CheckpointError', 'extract_state_dict', 'load_checkpoint_file', 'load_weights', 'save_atomic']


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
        raise CheckpointError(f"{path}: no state dict found (expected a mapping of names to tensors, "
                              f"or one under 'model' or 'state_dict')")
    state = {}
    for name, tensor in checkpoint.items():
        for old, new in _PREFIX_RENAMES:
            if name.startswith(old):
                name = new + name[len(old):]
        state[name] = tensor
    return state


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint strictly into `model`; on any mismatch raise an error listing every key at fault.

    Missing keys, unexpected keys and keys with the wrong shape are all reported together, so a
    checkpoint of another variant (or another number of joints) is diagnosed in one message.
    """
    path = os.fspath(path)
    state = extract_state_dict(load_checkpoint_file(path), path)
    own = model.state_dict()
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
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
    return model


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file in the same folder, then rename: never a half-written file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
