"""Full training state (for resuming) on top of lib/utils/checkpoint.py's atomic save and safe load.

A training checkpoint is a plain dict, readable with `torch.load(weights_only=True)`:
    model        state_dict with the official parameter names (no 'module.' prefix)
    optimizer    optimizer.state_dict()
    scaler       GradScaler.state_dict() ({} when AMP is off)
    epoch        number of finished epochs (the next epoch to run)
    iteration    number of finished optimizer steps (the lr schedule's position)
    best_perf, best_epoch   the best validation metric so far and its epoch
    rng          python / numpy / torch / cuda generator states
    config       the resolved config (YAML text), so a checkpoint documents its own run
Because `model` is under the key `model`, `lib.utils.checkpoint.load_weights` reads these files too.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from lib.utils.checkpoint import CheckpointError, describe, load_checkpoint_file, save_atomic
from lib.utils.logger import EXIT_FAILED, UserError

__all__ = ['NonFiniteModelError', 'apply_training_state', 'capture_rng_state', 'check_finite_model',
           'restore_rng_state', 'read_training_state', 'save_training_state', 'load_training_state',
           'save_model_file', 'unwrap']


class NonFiniteModelError(UserError):
    """A weight or BatchNorm statistic became NaN or infinite: the run diverged (exit 1), nothing is saved."""

    exit_code = EXIT_FAILED


def non_finite_names(model: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers holding a NaN or an infinity ([] if none).

    One reduction on the model's device and a single host sync in the usual (all finite) case; the
    per-tensor names are only looked up when something is wrong.
    """
    tensors = {name: t for name, t in unwrap(model).state_dict().items() if t.is_floating_point()}
    if not tensors or torch.stack([t.isfinite().all() for t in tensors.values()]).all():
        return []
    return [name for name, t in tensors.items() if not bool(t.isfinite().all())]


def check_finite_model(model: nn.Module, when: str, last_good: str | None = None) -> None:
    """Raise NonFiniteModelError if any weight or buffer is NaN/inf. `when` says at which point, `last_good`
    names the checkpoint to resume from (None: this run has written none)."""
    bad = non_finite_names(model)
    if not bad:
        return
    shown = ', '.join(bad[:3]) + (f' and {len(bad) - 3} more' if len(bad) > 3 else '')
    if last_good:
        resume = f'the last good checkpoint {last_good} is unchanged: lower TRAIN.LR and run again to resume from it'
    else:
        resume = 'no checkpoint was written yet: lower TRAIN.LR and start again'
    raise NonFiniteModelError(f'model weights are NaN or infinite {when} ({len(bad)} tensor(s): {shown}); '
                              f'nothing was saved; {resume}')


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, 'module') else model


def capture_rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors and plain containers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached': float(cached)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of capture_rng_state (the CUDA part only where CUDA is available)."""
    random.setstate(_as_tuple(state['python']))
    np_state = state['numpy']
    np.random.set_state((np_state['kind'], np_state['keys'].numpy().astype(np.uint32), np_state['pos'],
                         np_state['has_gauss'], np_state['cached']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples where a round trip through a file may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_training_state(path: str, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler | None, epoch: int, iteration: int,
                        best_perf: float, best_epoch: int, cfg) -> None:
    """Write the resumable state atomically (temporary file, then rename); never a non-finite model."""
    check_finite_model(model, f'when writing {path}')
    save_atomic({
        'model': unwrap(model).state_dict(),
        'optimizer': optimizer.state_dict(),
        'scaler': scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        'epoch': epoch,
        'iteration': iteration,
        'best_perf': float(best_perf),
        'best_epoch': int(best_epoch),
        'rng': capture_rng_state(),
        'config': cfg.dump(),
    }, path)


def read_training_state(path: str) -> dict[str, Any]:
    """A training checkpoint file as a dict (see the module docstring); raises CheckpointError if it is not one."""
    state = load_checkpoint_file(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f'{path}: not a training checkpoint: it holds {describe(state)}, expected a dict '
                              f'with model, optimizer, epoch, ... (delete or move it to start afresh)')
    missing = [key for key in ('model', 'optimizer', 'epoch', 'iteration', 'rng') if key not in state]
    if missing:
        raise CheckpointError(f'{path}: not a training checkpoint (missing {missing}); '
                              f'use MODEL.PRETRAINED or TEST.MODEL_FILE for weight files')
    return state


def apply_training_state(state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
                         scaler: torch.amp.GradScaler | None, source: str = 'checkpoint') -> dict[str, Any]:
    """Restore model, optimizer, scaler and RNG states in place; return the counters and the config text."""
    try:
        unwrap(model).load_state_dict(state['model'])
    except RuntimeError as err:  # another variant or number of joints: say which file and why
        raise CheckpointError(f'{source} does not fit the model (a checkpoint of another config in the same '
                              f'output folder?): {err}') from None
    try:
        optimizer.load_state_dict(state['optimizer'])
    except (ValueError, KeyError, TypeError) as err:  # another TRAIN.OPTIMIZER or parameter grouping
        raise CheckpointError(f'{source}: its optimizer state does not fit TRAIN.OPTIMIZER '
                              f'{type(optimizer).__name__}: {err}') from None
    if scaler is not None and scaler.is_enabled() and state.get('scaler'):
        scaler.load_state_dict(state['scaler'])
    restore_rng_state(state['rng'])
    return {key: state.get(key) for key in ('epoch', 'iteration', 'best_perf', 'best_epoch', 'config')}


def load_training_state(path: str, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    """read_training_state + apply_training_state."""
    return apply_training_state(read_training_state(path), model=model, optimizer=optimizer, scaler=scaler,
                                source=path)


def save_model_file(path: str, model: nn.Module, cfg, **extra: Any) -> None:
    """Weights only (model_best.pth, final_state.pth): {'model': state_dict, 'config': yaml, **extra}.

    Refuses (NonFiniteModelError) to write NaN or infinite weights."""
    check_finite_model(model, f'when writing {path}')
    save_atomic({'model': unwrap(model).state_dict(), 'config': cfg.dump(), **extra}, path)
