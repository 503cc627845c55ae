"""ecg-stream: real-time ECG beat classification, from samples to labeled beats over MQTT."""

from importlib import metadata as _metadata

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.detector.chain import BeatExtractor, Extracted
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.detector.segment import BeatSegmenter, Detected
from ecg_stream.detector.stage import Stage
from ecg_stream.errors import (
    BrokerError,
    ConfigError,
    DataNotFoundError,
    EcgStreamError,
    MissingExtraError,
    ModelContractError,
    PayloadError,
    RecordFormatError,
)
from ecg_stream.records import Record, load_record
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    BeatWindow,
    Chunk,
    LabeledBeat,
    RPeak,
    RRFeatures,
)

try:
    __version__ = _metadata.version("ecg-stream")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "BEAT_CLASSES",
    "CHAIN_FS_HZ",
    "BeatClass",
    "BeatExtractor",
    "BeatSegmenter",
    "BeatWindow",
    "BrokerError",
    "CausalBandpass",
    "ChainConfig",
    "Chunk",
    "ConfigError",
    "DataNotFoundError",
    "Detected",
    "EcgStreamError",
    "Extracted",
    "LabeledBeat",
    "MissingExtraError",
    "ModelContractError",
    "PayloadError",
    "RPeak",
    "RPeakDetector",
    "RRFeatures",
    "Record",
    "RecordFormatError",
    "Stage",
    "__version__",
    "load_record",
]
