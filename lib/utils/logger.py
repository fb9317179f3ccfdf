"""Run logging: the output tree, a log file and console output, written by the main process only.

    logger, output_dir, tb_log_dir = create_logger(cfg, 'train')

creates `output_dirs(cfg)` = (OUTPUT_DIR/<dataset>/<model>/<config name>, LOG_DIR/<...same...>), a log file
`<config name>_<phase>_<time>.log` in the output folder, and the resolved config beside it
(`<config name>_<phase>_config.yaml`). The returned logger ('litehrnet') and every logger of the `lib`
package (lib.dataset.coco, lib.evaluation.coco_keypoints, ...) write to the console and that file. Other
ranks only report warnings and errors, so a multi-process run prints each line once.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable

from lib.config import output_dirs
from lib.utils.dist import cleanup, get_rank

__all__ = ['EXIT_BAD_INPUT', 'EXIT_FAILED', 'UserError', 'create_logger', 'run_tool']

_FORMAT = '%(asctime)s %(levelname)s %(message)s'


# Exit statuses, the same for every tool: 0 done; 1 the work ran and failed (a diverged training, a
# parity check beyond tolerance); 2 the input is wrong (config, files, arguments: nothing or little ran).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UserError(RuntimeError):
    """A failure the user fixes (a setting, an input, a diverged run), not a bug: `run_tool` prints it as
    one 'error: …' line and exits with `exit_code`. Library code raises subclasses, e.g.
    lib.core.function.NonFiniteLossError (exit_code EXIT_FAILED)."""

    exit_code = EXIT_BAD_INPUT


class _TqdmStreamHandler(logging.StreamHandler):
    """Console lines written through tqdm, so they do not tear an active progress bar.

    The stream is the current sys.stdout at each line, not the one of the create_logger call: a caller
    that swaps stdout later (pytest's capture, a notebook, a redirect) gets the lines, and a closed old
    stream never turns a log line into a 'Logging error' traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


# Loggers a tool's run writes: the tools' own ('litehrnet', lib.core.function) and the whole `lib` package
# (lib.dataset.coco, lib.evaluation.coco_keypoints, ... log under their module names). Both get the same
# two handlers, so every line reaches the console and the log file once.
LIB_LOGGER = 'lib'


def _reset(logger: logging.Logger) -> None:
    """Remove the handlers an earlier create_logger call added (tests, train then test in one process)."""
    for handler in list(logger.handlers):
        if getattr(handler, '_litehrnet', False):
            logger.removeHandler(handler)
            handler.close()


def create_logger(cfg, phase: str = 'train', name: str = 'litehrnet') -> tuple[logging.Logger, str, str]:
    """(logger, output_dir, tb_log_dir); only rank 0 creates folders and files.

    Raises UserError '<folder>: not writable (...)' when the output or log folder cannot be created or
    written, before any work starts.
    """
    output_dir, tb_log_dir = output_dirs(cfg)
    loggers = [logging.getLogger(name), logging.getLogger(LIB_LOGGER)]
    for logger in loggers:
        _reset(logger)
    if get_rank() != 0:
        _attach(loggers, [logging.StreamHandler(sys.stderr)], logging.WARNING)
        return loggers[0], output_dir, tb_log_dir

    cfg_name = cfg.CFG_NAME or 'default'
    stamp = time.strftime('%Y-%m-%d-%H-%M-%S')
    log_file = os.path.join(output_dir, f'{cfg_name}_{phase}_{stamp}.log')
    folder = output_dir
    try:
        os.makedirs(output_dir, exist_ok=True)
        folder = tb_log_dir
        os.makedirs(tb_log_dir, exist_ok=True)
        folder = output_dir
        with open(os.path.join(output_dir, f'{cfg_name}_{phase}_config.yaml'), 'w') as f:
            f.write(cfg.dump())
        file_handler = logging.FileHandler(log_file)
    except OSError as err:  # PermissionError, a read-only file system, a file where a folder should be
        raise UserError(f'{folder}: not writable ({err.strerror or err})') from None
    _attach(loggers, [file_handler, _TqdmStreamHandler()], logging.INFO)
    loggers[0].info('log file: %s', log_file)
    return loggers[0], output_dir, tb_log_dir


def _attach(loggers: list[logging.Logger], handlers: list[logging.Handler], level: int) -> None:
    formatter = logging.Formatter(_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._litehrnet = True  # ours: removed again by the next create_logger call
    for logger in loggers:
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        # Records still propagate to the root logger, which has no handler in our tools (nothing calls
        # logging.basicConfig there), so each line is printed once; pytest's caplog reads them at the root.
        logger.propagate = True


def one_line(err: BaseException) -> str:
    """The error's message; for an error re-raised from a DataLoader worker, the original message only.

    torch re-raises a worker's exception in the main process as the same type, with the message
    'Caught ImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last): ...'
    whose last line is '<module>.<type>: <original message>'.
    """
    text = str(err)
    if 'Original Traceback' in text and text.startswith('Caught '):
        last = text.rstrip().splitlines()[-1]
        name = type(err).__name__
        for prefix in (f'{type(err).__module__}.{name}: ', f'{name}: '):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last
    return text


def run_tool(main: Callable[[], int]) -> int:
    """Run a tool's `main()`; a user error (bad config, missing or mismatched file, NaN loss) becomes one
    'error: …' line on stderr instead of a traceback, with exit status EXIT_BAD_INPUT (2), or the error's
    own `exit_code` (a diverged run: EXIT_FAILED, 1). LITEHRNET_TRACEBACK=1 re-raises."""
    from lib.utils.checkpoint import CheckpointError

    try:
        return main()
    except (ValueError, FileNotFoundError, CheckpointError, UserError) as err:  # ConfigError is a ValueError
        if os.environ.get('LITEHRNET_TRACEBACK'):
            raise
        print(f'error: {one_line(err)}', file=sys.stderr, flush=True)
        cleanup()
        return getattr(err, 'exit_code', EXIT_BAD_INPUT)
