"""Run logging: the output tree, a log file and console output, written by the main process only.

    logger, output_dir, tb_log_dir = create_logger(cfg, 'train')

creates `output_dirs(cfg)` = (OUTPUT_DIR/<dataset>/<model>/<config name>, LOG_DIR/<...same...>), a log file
`<config name>_<phase>_<time>.log` in the output folder, and the resolved config beside it
(`<config name>_<phase>_config.yaml`). Other ranks get a logger that only reports warnings and errors,
so a multi-process run prints each line once.
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
    """Console lines written through tqdm, so they do not tear an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def create_logger(cfg, phase: str = 'train', name: str = 'litehrnet') -> tuple[logging.Logger, str, str]:
    """(logger, output_dir, tb_log_dir); only rank 0 creates folders and files."""
    output_dir, tb_log_dir = output_dirs(cfg)
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):  # a second call (tests, train then test) starts afresh
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    if get_rank() != 0:
        logger.setLevel(logging.WARNING)
        logger.addHandler(logging.StreamHandler(sys.stderr))
        return logger, output_dir, tb_log_dir

    os.makedirs(output_dir, exist_ok=True)
    os.makedirs(tb_log_dir, exist_ok=True)
    cfg_name = cfg.CFG_NAME or 'default'
    stamp = time.strftime('%Y-%m-%d-%H-%M-%S')
    log_file = os.path.join(output_dir, f'{cfg_name}_{phase}_{stamp}.log')
    formatter = logging.Formatter(_FORMAT)
    for handler in (logging.FileHandler(log_file), _TqdmStreamHandler(sys.stdout)):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with open(os.path.join(output_dir, f'{cfg_name}_{phase}_config.yaml'), 'w') as f:
        f.write(cfg.dump())
    logger.info('log file: %s', log_file)
    return logger, output_dir, tb_log_dir


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
        print(f'error: {err}', file=sys.stderr, flush=True)
        cleanup()
        return getattr(err, 'exit_code', EXIT_BAD_INPUT)
