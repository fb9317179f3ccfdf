"""Command-line parsing shared by the demo and deployment scripts."""
from __future__ import annotations

import argparse

__all__ = ['parse_args_with_overrides']


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse options found anywhere on the line; every other word is a config override, kept in `args.opts`.

    Unlike a trailing `argparse.REMAINDER`, this accepts `--cfg X TEST.MODEL_FILE m.pth --output y`
    (overrides before options). A misspelt option (any leftover word starting with '--') is an error,
    so it never reaches the config as a bogus key.
    """
    parser.usage = parser.format_usage().removeprefix('usage: ').rstrip() + ' [KEY VALUE ...]'
    args, rest = parser.parse_known_args(argv)
    unknown = [word for word in rest if word.startswith('--')]
    if unknown:
        parser.error(f'unrecognized arguments: {" ".join(unknown)}')
    args.opts = rest
    return args
