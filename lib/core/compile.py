"""Compiled execution as a switch: regional torch.compile of a Lite-HRNet, eager when it cannot compile.

    model = compile_model(build_model(cfg))                  # training: forward + backward compiled
    model = compile_model(build_model(cfg).eval().fold_bn())  # inference (TEST.COMPILE)

Compiled modules use the 'compiled' kernel set (lib/models/layers.py): the eager 'train' set's gathers
have a gradient that torch 2.13's inductor compiles wrongly for some shapes (a segfault in compiled
training at 256x192); the broadcast forms compute the same numbers.

Regional compilation: instead of one graph for the whole network, each repeated block is compiled on
its own (`nn.Module.compile`, in place): the stem, every `LiteHRModule`, the transitions and the head.
Dynamo treats parameters as graph inputs (inline_inbuilt_nn_modules, always on in torch >= 2.6), so
all modules of a stage share one compiled graph and compile time grows with the number of distinct
block shapes (about ten), not with depth. The modules stay the model's own: parameter and state-dict
names are unchanged (no `_orig_mod.` prefix) and checkpoints stay official-format.

Compiled graphs are cached on disk by inductor (its FX graph cache, on by default and turned on here
if a user turned it off; TORCHINDUCTOR_CACHE_DIR sets the folder), so a second process with the same
model and input size skips most of the code generation and C++ compilation.

Inductor's CPU backend needs a C++ compiler. Without one, or when compiling fails on the first call,
the model runs eagerly (the same module, the same numbers) after ONE warning per process.
Compile last: after loading weights, `fold_bn()`, `.to(device)`, and before DDP wrapping. Copies of
a compiled model (copy.deepcopy, fold_bn) still call the ORIGINAL's compiled blocks: copy first, then
compile the copy (as torch's own nn.Module.compile behaves).
"""
from __future__ import annotations

import logging
import shutil
import warnings
from typing import Callable, Iterator

from torch import nn

__all__ = ['compile_model', 'compiled_regions', 'compiler_available', 'is_compiled', 'use_compiled_kernels']

logger = logging.getLogger(__name__)

_RECOMPILE_LIMIT = 64
_warned = False  # one fallback warning per process, however many models or blocks fall back


def compiler_available() -> tuple[bool, str]:
    """(True, compiler) when inductor's C++ compiler (g++ unless TORCHINDUCTOR_CXX / cpp.cxx say
    otherwise) is on PATH; (False, why) otherwise."""
    try:
        from torch._inductor import cpp_builder
        cxx = cpp_builder.get_cpp_compiler()
    except Exception as err:  # noqa: BLE001  (inductor raises its own types when it finds no compiler)
        return False, f'inductor found no C++ compiler ({type(err).__name__}: {err})'
    if shutil.which(cxx) is None:
        return False, f"inductor's C++ compiler {cxx!r} is not on PATH"
    return True, cxx


def compiled_regions(model: nn.Module) -> Iterator[nn.Module]:
    """The blocks compiled one by one: the stem, each transition path, each LiteHRModule, the
    iterative head and the keypoint head of a PoseLiteHRNet (or of its backbone alone)."""
    backbone = getattr(model, 'backbone', model)
    yield backbone.stem
    for transition, stage in backbone.stages():
        yield from (layer for layer in transition if layer is not None)
        yield from stage
    yield backbone.head_layer
    if hasattr(model, 'keypoint_head'):
        yield model.keypoint_head


def compile_model(model: nn.Module, mode: str | None = None, dynamic: bool | None = None) -> nn.Module:
    """Compile `model`'s blocks in place (see the module docstring) and return it.

    mode: torch.compile mode (None or 'default'; 'reduce-overhead' adds CUDA graphs on CUDA devices;
    'max-autotune-no-cudagraphs' tries more kernels and compiles longer): TRAIN/TEST.COMPILE_MODE.
    dynamic: None lets dynamo mark the batch dynamic once a second batch size shows
    up (one more compile, then any batch size), False compiles every batch size separately.
    Works in training mode (backward is compiled too) and on a BN-folded eval model. Without a C++
    compiler it warns once and returns the model uncompiled.
    """
    if is_compiled(model):
        return model
    mode = None if mode == 'default' else mode
    ok, why = compiler_available()
    if not ok:
        _warn_fallback(why)
        return model
    from torch._dynamo import config as dynamo_config
    from torch._inductor import config as inductor_config
    inductor_config.fx_graph_cache = True  # the default; a user's TORCHINDUCTOR_FX_GRAPH_CACHE=0 is overridden
    # Dynamo keeps at most recompile_limit (8) graphs per code object, and every LiteHRModule shares one
    # forward: 3 stage shapes x (first batch size, then a dynamic batch) x (train / eval / BN folded)
    # would pass 8 and silently run the rest eagerly.
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, _RECOMPILE_LIMIT)
    use_compiled_kernels(model)
    regions = list(compiled_regions(model))
    for region in regions:
        region.compile(mode=mode, dynamic=dynamic)
        region._compiled_call_impl = _eager_on_failure(region, region._compiled_call_impl, regions)
    logger.info('compiled %d blocks of %s (mode %s)', len(regions), type(model).__name__, mode or 'default')
    return model


def use_compiled_kernels(model: nn.Module) -> None:
    """Switch every module of `model` that uses the eager 'train' kernels to the 'compiled' ones, in place
    (same numbers; no gathers, whose compiled gradient is broken in torch 2.13: lib/models/layers.py)."""
    from lib.models.layers import KERNELS
    for module in model.modules():
        kernels = getattr(module, 'kernels', None)
        if kernels is not None and kernels.name == 'train':  # by name: copy.deepcopy copies the set
            module.kernels = KERNELS['compiled']


def is_compiled(model: nn.Module) -> bool:
    """True if any module of `model` was compiled with nn.Module.compile (as compile_model does)."""
    return any(getattr(m, '_compiled_call_impl', None) is not None for m in model.modules())


def _eager_on_failure(region: nn.Module, compiled: Callable, regions: list[nn.Module]) -> Callable:
    """region's compiled call, except that a call failing to compile (a backend error such as a broken
    C++ toolchain) warns once, turns every region of the model back to eager and reruns eagerly.
    Only compile failures are caught: an error of the model itself is raised as in eager mode.
    (Inductor compiles the backward graph at the first backward; failures there are not caught, which
    is why compile_model checks for the compiler first.)"""
    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except _COMPILE_ERRORS as err:
            _warn_fallback(f'compiling {type(region).__name__} failed ({type(err).__name__}: '
                           f'{str(err).strip().splitlines()[0] if str(err).strip() else "no message"})')
            for r in regions:
                r._compiled_call_impl = None  # nn.Module.__call__ goes back to the eager _call_impl
            return region._call_impl(*args, **kwargs)
    return call


def _warn_fallback(why: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f'torch.compile unavailable, running eagerly: {why}', RuntimeWarning, stacklevel=3)


def _compile_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import BackendCompilerFailed
        errors.append(BackendCompilerFailed)
    except ImportError:
        pass
    try:
        from torch._inductor.exc import InductorError
        errors.append(InductorError)
    except ImportError:
        pass
    return tuple(errors) or (RuntimeError,)


_COMPILE_ERRORS = _compile_errors()
