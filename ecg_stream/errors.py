"""Exceptions raised by ecg-stream.

Every error a user can cause derives from :class:`EcgStreamError`; ``cli/`` turns one
into a one-line message and exit code 2. Anything else is a bug and keeps its traceback::

    EcgStreamError
    ├── ConfigError            a setting is out of range or inconsistent
    ├── DataNotFoundError      a record is in none of the searched directories
    ├── RecordFormatError      a record loads but cannot be streamed (lead, rate, length)
    ├── ModelContractError     an ONNX model does not fit the chain's configuration
    ├── PayloadError           an MQTT payload does not follow the wire contract
    ├── BrokerError            no MQTT broker could be reached or started
    └── MissingExtraError      an optional dependency group is not installed
"""

from __future__ import annotations

from pathlib import Path


class EcgStreamError(Exception):
    """Base of every error a user can cause; its message says what to do."""


class ConfigError(EcgStreamError):
    """A setting is out of range or inconsistent with another."""


class DataNotFoundError(EcgStreamError):
    """A record is in none of the searched directories and could not be downloaded.

    Attributes:
        record: The record name that was asked for.
        searched_dirs: The directories searched, in order.
    """

    def __init__(self, message: str, record: str, searched_dirs: tuple[Path, ...]) -> None:
        super().__init__(message)
        self.record = record
        self.searched_dirs = searched_dirs


class RecordFormatError(EcgStreamError):
    """A record loads but cannot be streamed (unknown lead, too short, bad rate)."""


class ModelContractError(EcgStreamError):
    """An ONNX model's contract does not match the chain's configuration."""


class ModelOutputError(EcgStreamError):
    """A model gave a batch outputs that are not class probabilities (NaN, logits): no label."""


class PayloadError(EcgStreamError):
    """An MQTT payload does not follow the versioned wire contract."""


class BrokerError(EcgStreamError):
    """No MQTT broker could be reached or started."""


TRAIN_EXTRA = "train"
"""Optional dependency group of training, export and report pictures."""


class MissingExtraError(EcgStreamError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs {module!r}, which is not installed; "
            f"run: pip install 'ecg-stream[{extra}]'"
        )
        self.extra = extra
        self.module = module
