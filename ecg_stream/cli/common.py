"""What the command groups share: argument helpers, the model default, checks and output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_stream.config import RhythmSettings
from ecg_stream.errors import ConfigError

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """The subcommands action that each group's ``add_*`` function adds its parser to."""

EXIT_USER_ERROR = 2
"""Exit code of a user error (an ``EcgStreamError``), as argparse uses for a bad option."""


def add_screenshot_arguments(parser: argparse.ArgumentParser, needs: str) -> None:
    """Add ``--screenshot PNG`` and ``--duration``; ``needs`` names what --screenshot needs."""
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help=f"run headless{needs}: collect for --duration s, write this PNG, exit",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds to collect before --screenshot (default: 10)"
    )


def add_broker_arguments(parser: argparse.ArgumentParser, default_help: str) -> None:
    """Add ``--broker URL`` (``default_help``: what is used without it) and ``--topic-prefix``."""
    parser.add_argument(
        "--broker",
        metavar="URL[,URL...]",
        help=f"mqtt://host:port or mqtts://host:port (default: {default_help}); the nodes of a "
        "cluster separated by commas, tried in turn (a lost link moves to the next); "
        "credentials from $ECG_STREAM_MQTT_USERNAME / $ECG_STREAM_MQTT_PASSWORD",
    )
    parser.add_argument("--topic-prefix", default="ecg", help="first topic level(s) (default: ecg)")


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers`` and ``--samples-ms``, the options of many concurrent streams."""
    parser.add_argument(
        "--workers",
        type=int,
        help="processes to spread the streams over, one per core at most (default: 1, or one "
        "per core from 32 streams on)",
    )
    parser.add_argument(
        "--samples-ms",
        type=float,
        help="signal per samples message, in ms (default: one per 100 ms chunk, or 500 in a "
        "process of 32 streams or more: fewer publishes, a coarser monitor trace)",
    )


def add_rhythm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the rhythm stage's alarm limits (``RhythmSettings``; the others keep defaults)."""
    defaults = RhythmSettings()
    limits = parser.add_argument_group("rhythm alarms")
    limits.add_argument(
        "--bradycardia-bpm",
        type=float,
        default=defaults.bradycardia_bpm,
        help="heart rate below which bradycardia starts (default: %(default)g)",
    )
    limits.add_argument(
        "--tachycardia-bpm",
        type=float,
        default=defaults.tachycardia_bpm,
        help="heart rate above which tachycardia starts (default: %(default)g)",
    )
    limits.add_argument(
        "--pause-s",
        type=float,
        default=defaults.pause_s,
        help="an RR interval longer than this is a pause (default: %(default)g)",
    )
    limits.add_argument(
        "--asystole-s",
        type=float,
        default=defaults.asystole_s,
        help="no beat for this long is asystole (default: %(default)g)",
    )
    limits.add_argument(
        "--no-af-gate",
        dest="af_gate",
        action="store_false",
        help="publish beats called S during atrial fibrillation as S (default: as N, conducted "
        "AF beats)",
    )


def rhythm_settings(args: argparse.Namespace) -> RhythmSettings:
    """The rhythm limits given on the command line.

    Raises:
        ConfigError: They are out of range or contradict each other.
    """
    return RhythmSettings(
        bradycardia_bpm=args.bradycardia_bpm,
        tachycardia_bpm=args.tachycardia_bpm,
        pause_s=args.pause_s,
        asystole_s=args.asystole_s,
        af_gate=args.af_gate,
    )


def add_data_dir(parser: argparse.ArgumentParser, holding: str = "the WFDB files") -> None:
    """Add ``--data-dir`` (repeatable); ``holding`` says what the directories hold."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        help=f"directory holding {holding} (repeat for more)",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` and ``--lead``."""
    add_data_dir(parser)
    parser.add_argument("--lead", default="0", help="lead name or index (default: first)")


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``RECORD`` positionals (names or groups), ``--data-dir`` and ``--lead``."""
    parser.add_argument(
        "records", nargs="+", metavar="RECORD", help="record names, or all / DS1 / DS2"
    )
    add_data_arguments(parser)


def default_model() -> Path:
    """The shipped ONNX model (imports the classifier module: call it in a handler)."""
    from ecg_stream.classify.classifier import default_model_path

    return default_model_path()


def check_model_argument(model: Path | None) -> None:
    """Refuse a ``--model`` that is no file before any record is loaded.

    Raises:
        ConfigError: ``model`` is a directory or does not exist.
    """
    if model is None or model.is_file():
        return
    if model.is_dir():
        found = sorted(model.glob("*.onnx"))
        example = found[0] if found else model / "beat_lstm.onnx"
        msg = f"--model {model} is a directory; pass the .onnx file itself, e.g. --model {example}"
    else:
        msg = f"--model {model} does not exist; pass the path of an exported .onnx file"
    raise ConfigError(msg)


def check_screenshot_arguments(args: argparse.Namespace, needs: str) -> None:
    """Refuse --duration without --screenshot, and --screenshot where it needs ``needs``.

    Raises:
        ConfigError: One of those two combinations.
    """
    if args.duration is not None and args.screenshot is None:
        msg = "--duration sets how long to collect before --screenshot; give --screenshot PNG too"
        raise ConfigError(msg)
    if needs and args.screenshot is not None:
        msg = f"--screenshot is a picture of the monitor; add {needs}"
        raise ConfigError(msg)


def add_summary_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--summary-json F``: the end-of-run summary as a JSON document too."""
    parser.add_argument(
        "--summary-json",
        type=Path,
        metavar="F",
        help="also write the summary printed at the end as a JSON document (per stream: beats "
        "by class, compute latency, published, dropped, refused, beats lost; totals)",
    )


def add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics-port P``: Prometheus metrics while the command runs."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics on http://127.0.0.1:P/metrics while running: streams "
        "online, beats by class, rhythm events, compute latency, messages dropped and refused, "
        "beats lost, raw messages, signal state",
    )


def check_summary_json(path: Path | None) -> None:
    """Refuse a ``--summary-json`` target that is a directory or a device, before the run."""
    from ecg_stream.documents import check_output_file

    if path is not None:
        check_output_file(path)


def say(line: str) -> None:
    """Print one line of a command's progress now (flushed: the output may be a pipe)."""
    print(line, flush=True)


def say_error(line: str) -> None:
    """Print one line on stderr now (stdout holds a command's machine-readable output)."""
    print(line, file=sys.stderr, flush=True)
