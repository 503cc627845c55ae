"""The ``ecg-stream`` command line; subcommand modules are imported only when used.

One module per command group parses its options, builds the settings and calls one
function: :mod:`~ecg_stream.cli.analysis` (analyze, evaluate, stress),
:mod:`~ecg_stream.cli.training` (train, dataset, export, card), :mod:`~ecg_stream.cli.live`
(replay, broker, subscribe, serve, device, monitor) and :mod:`~ecg_stream.cli.bench`. Their
handlers import the heavy modules (TensorFlow, Qt, the MQTT edge) when they run, so that
``ecg-stream --help`` stays quick. Here alone an ``EcgStreamError`` becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ecg_stream.cli import analysis, bench, live, training
from ecg_stream.cli.common import EXIT_USER_ERROR
from ecg_stream.errors import EcgStreamError

if TYPE_CHECKING:
    from ecg_stream.cli.common import Commands

__all__ = ["EXIT_USER_ERROR", "main"]

_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    analysis.add_analyze,
    analysis.add_evaluate,
    training.add_train,
    analysis.add_stress,
    training.add_dataset,
    training.add_export,
    training.add_card,
    live.add_replay,
    live.add_broker,
    live.add_nats_cluster,
    live.add_subscribe,
    live.add_store,
    live.add_history,
    live.add_serve,
    live.add_device,
    live.add_monitor,
    bench.add_bench,
)
"""Each command's parser, in the order ``--help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors become one line on stderr and exit code 2."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except EcgStreamError as error:
        print(f"ecg-stream {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    return code


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or "default" in text or not action.option_strings:
            return text
        if action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return f"{text} (default: %(default)s)"


def package_version() -> str:
    """The installed package's version (``unknown`` when run from a tree not installed)."""
    from importlib import metadata

    try:
        return metadata.version("ecg-stream")
    except metadata.PackageNotFoundError:
        return "unknown"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-stream", description="Real-time ECG beat classification over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"ecg-stream {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(commands)
    for command in commands.choices.values():
        command.formatter_class = DefaultsHelpFormatter
    return parser
