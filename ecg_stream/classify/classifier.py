"""Runtime beat classifier: an onnxruntime session that checks the model's contract.

The ONNX file carries its contract in ``metadata_props`` (written by ``training/export.py``):
class order, sampling rate, window geometry, filter band, normalisation and RR features. The
classifier refuses a model whose contract does not match the chain it will be fed by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, get_args, get_origin

import msgspec
import numpy as np
import numpy.typing as npt
import onnxruntime

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import (
    FEATURE_NAMES,
    NORMALISATION,
    WINDOW_CHANNELS,
    feature_vector,
    unknown_channels,
    unknown_features,
    window_channels,
)
from ecg_stream.errors import ConfigError, ModelContractError, ModelOutputError
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatWindow,
    FloatArray,
    LabeledBeat,
    MorphologyFeatures,
    RPeak,
    RRFeatures,
)

CONTRACT_VERSION: Final = "1"
"""Version of the set of ``metadata_props`` keys below; bumped when their meaning changes."""
WINDOW_INPUT: Final = "window"
RR_INPUT: Final = "rr"
MAX_BATCH: Final = 512
"""Windows per onnxruntime call: bounds memory when a whole record is classified at once."""


class ModelContract(msgspec.Struct, frozen=True, kw_only=True):
    """What a model expects of the chain, as stored in the ONNX ``metadata_props``.

    Each field is one ``metadata_props`` key, in this order after ``contract_version``; its
    value is text (numbers as ``repr``, tuples joined by ``,``, None as ``none``).

    Args:
        model_name: Name of the model.
        class_names: Class of each output probability, in order.
        fs_hz: Sampling rate the windows were cut at, in Hz.
        band_hz: Pass band of the chain's filter, in Hz.
        notch_hz: Mains notch of the chain's filter, in Hz, or None.
        window_before_samples: Window samples before the R peak.
        window_after_samples: Window samples from the R peak on.
        normalisation: Name of the per-window normalisation.
        rr_features: Names of the per-beat features (``FEATURE_NAMES``) of the second input
            (``rr``), in order; empty for a window-only model. The key keeps its first name
            so that models exported before the shape features were added still load.
        rr_mean_beats: Past RR intervals in the local mean RR.
        window_channels: Channels (``WINDOW_CHANNELS``) of the ``window`` input, in order;
            a model exported before the template channel existed has ``beat`` alone (and no
            key).
        training_protocol: ``inter-patient`` or ``intra-patient``.
        training_records: Records the model was trained on (space-separated).
        validation_records: Records used for early stopping (space-separated).
        project_version: ecg-stream version that exported the model.
    """

    model_name: str
    class_names: tuple[str, ...]
    fs_hz: float
    band_hz: tuple[float, float]
    notch_hz: float | None
    window_before_samples: int
    window_after_samples: int
    normalisation: str
    rr_features: tuple[str, ...]
    rr_mean_beats: int
    window_channels: tuple[str, ...] = ("beat",)
    training_protocol: str
    training_records: str
    validation_records: str
    project_version: str

    @classmethod
    def for_chain(
        cls,
        config: ChainConfig,
        *,
        model_name: str,
        features: tuple[str, ...],
        channels: tuple[str, ...] = ("beat",),
        training_protocol: str,
        training_records: str,
        validation_records: str,
        project_version: str,
    ) -> ModelContract:
        """The contract of a model trained on windows of the chain ``config``."""
        return cls(
            **_set_by_chain(config),
            model_name=model_name,
            rr_features=features,
            window_channels=channels,
            training_protocol=training_protocol,
            training_records=training_records,
            validation_records=validation_records,
            project_version=project_version,
        )

    def to_metadata(self) -> dict[str, str]:
        """The contract as ONNX ``metadata_props`` (string keys and values)."""
        values = msgspec.structs.asdict(self)
        return {"contract_version": CONTRACT_VERSION} | {
            key: _metadata_text(value) for key, value in values.items()
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> ModelContract:
        """Read a contract from ONNX ``metadata_props``.

        Args:
            metadata: The model's metadata map.
            source: Name of the model file, for messages.

        Raises:
            ModelContractError: A key is missing or unreadable, or the contract version differs.
        """
        version = metadata.get("contract_version")
        if version != CONTRACT_VERSION:
            msg = (
                f"{source}: contract_version is {version!r}, this ecg-stream reads "
                f"{CONTRACT_VERSION!r}; re-export the model with `ecg-stream export`"
            )
            raise ModelContractError(msg)
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            text = metadata.get(field.name)
            if text is None and field.required:
                msg = (
                    f"{source}: contract field {field.name!r} is missing from metadata_props; "
                    "re-export the model with `ecg-stream export`"
                )
                raise ModelContractError(msg)
            if text is None:
                continue
            if get_origin(field.type) is tuple:
                values[field.name] = [item for item in text.split(",") if item]
            elif text == "none" and type(None) in get_args(field.type):
                values[field.name] = None
            else:
                values[field.name] = text
        try:
            return msgspec.convert(values, cls, strict=False)  # text to numbers
        except msgspec.ValidationError as error:
            msg = f"{source}: unreadable contract in metadata_props ({error}); re-export it"
            raise ModelContractError(msg) from error

    def check(self, config: ChainConfig, source: str) -> None:
        """Refuse a contract that does not fit the chain ``config`` and this runtime.

        Raises:
            ModelContractError: Naming the first differing field, both values and the fix.
        """
        unknown = unknown_features(self.rr_features)
        if unknown:
            msg = (
                f"{source}: contract field 'rr_features' names {unknown}, which this version "
                f"does not compute (it knows {', '.join(FEATURE_NAMES)}); upgrade ecg-stream "
                "or re-export the model with this version"
            )
            raise ModelContractError(msg)
        unknown = unknown_channels(self.window_channels)
        if unknown or not self.window_channels:
            msg = (
                f"{source}: contract field 'window_channels' names {list(self.window_channels)}; "
                f"this version feeds {', '.join(WINDOW_CHANNELS)}; upgrade ecg-stream or "
                "re-export the model with this version"
            )
            raise ModelContractError(msg)
        # no command line sets the chain (its one home is ChainConfig): the fix is the model
        for field_name, chain_value in _set_by_chain(config).items():
            model_value = getattr(self, field_name)
            if chain_value != model_value:
                msg = (
                    f"{source}: contract field {field_name!r} is {model_value!r}, "
                    f"the chain uses {chain_value!r}; re-export the model for this chain "
                    "(ecg-stream train + export)"
                )
                raise ModelContractError(msg)


def _set_by_chain(config: ChainConfig) -> dict[str, Any]:
    """The contract fields the chain ``config`` and this runtime decide, in contract order."""
    return {
        "class_names": tuple(beat_class.value for beat_class in BEAT_CLASSES),
        "fs_hz": config.fs_hz,
        "band_hz": config.band_hz,
        "notch_hz": config.notch_hz,
        "window_before_samples": config.window_before_samples,
        "window_after_samples": config.window_after_samples,
        "normalisation": NORMALISATION,
        "rr_mean_beats": config.rr_mean_beats,
    }


def _metadata_text(value: object) -> str:
    """A contract value as ``metadata_props`` text: floats by ``repr``, tuples joined by ``,``."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(_metadata_text(item) for item in value)
    return repr(value) if isinstance(value, float) else str(value)


class ClassifierState(Enum):
    """Lifecycle of an :class:`OnnxBeatClassifier`."""

    OPEN = "open"
    CLOSED = "closed"


class OnnxBeatClassifier:
    """Classify beat windows with an ONNX model whose contract fits the chain.

    The session is created (and the contract checked) at construction; ``close()`` or
    leaving a ``with`` block releases it. Windows are normalised with the chain's one
    normalisation and classified in batches.

    Args:
        path: The ``.onnx`` file.
        config: The chain's configuration, which the model's contract must match.
        threads: onnxruntime intra-op threads (one keeps the stream's CPU use predictable).

    Attributes:
        name: The model's name, from its contract.
        contract: The model's contract.
        state: Whether the session is open.

    Raises:
        ConfigError: The file does not exist or ``threads`` < 1.
        ModelContractError: The model's contract or inputs do not fit the chain.
    """

    def __init__(self, path: Path, config: ChainConfig, threads: int = 1) -> None:
        if threads < 1:
            msg = f"threads={threads} must be >= 1"
            raise ConfigError(msg)
        if not path.is_file():
            msg = f"model file {path} does not exist; pass --model PATH to an exported .onnx"
            raise ConfigError(msg)
        self.path, self.config, self.threads = path, config, threads
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            msg = f"{path.name}: onnxruntime cannot load it ({error}); re-export the model"
            raise ModelContractError(msg) from error
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.contract = ModelContract.from_metadata(metadata, path.name)
        self.contract.check(config, path.name)
        self.name = self.contract.model_name
        _check_inputs(session, path.name, config.window_samples, self.contract)
        self._session: Any = session
        self.state = ClassifierState.OPEN
        try:
            self.predict_proba(_probe_windows(config))
        except ModelOutputError as error:
            msg = f"{path.name}: {error}; export a model whose last layer is a softmax"
            raise ModelContractError(msg) from None

    def __enter__(self) -> OnnxBeatClassifier:
        if self.state is ClassifierState.CLOSED:
            msg = "this classifier was closed; create a new OnnxBeatClassifier"
            raise RuntimeError(msg)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the onnxruntime session."""
        self._session = None
        self.state = ClassifierState.CLOSED

    def predict_proba(self, windows: Sequence[BeatWindow]) -> FloatArray:
        """Class probabilities of each window, shape (n, 5), in ``BEAT_CLASSES`` order.

        Raises:
            ValueError: A window's length is not the contract's.
            RuntimeError: The classifier was closed.
        """
        if self.state is ClassifierState.CLOSED:
            msg = "predict_proba() on a closed classifier; create a new OnnxBeatClassifier"
            raise RuntimeError(msg)
        if not windows:
            return np.empty((0, len(BEAT_CLASSES)))
        parts = [
            self._run(windows[start : start + MAX_BATCH])
            for start in range(0, len(windows), MAX_BATCH)
        ]
        return np.concatenate(parts).astype(np.float64)

    def classify(self, windows: Sequence[BeatWindow]) -> list[LabeledBeat]:
        """Label each window with its class probabilities, in input order.

        A window whose signal is unusable (``window.usable`` False: lead-off, clipping, NaN,
        gap, noise) is not shown to the model: it is labelled Q (unclassifiable, AAMI) with
        probability 1, and its quality says why. ``predict_proba`` is the ungated model.
        """
        usable = [window for window in windows if window.usable]
        probabilities = iter(self.predict_proba(usable))
        return [
            LabeledBeat(
                window=window,
                probabilities=_five(next(probabilities)) if window.usable else UNCLASSIFIABLE,
            )
            for window in windows
        ]

    def _run(self, windows: Sequence[BeatWindow]) -> npt.NDArray[np.float32]:
        size = self.config.window_samples
        for window in windows:
            if window.samples.shape != (size,):
                msg = f"window at R peak {window.peak.index} has shape {window.samples.shape}, "
                msg += f"the model takes ({size},)"
                raise ValueError(msg)
        channels = self.contract.window_channels
        feeds = {
            WINDOW_INPUT: np.stack([window_channels(w, channels) for w in windows]).astype(
                np.float32
            )
        }
        if self.contract.rr_features:
            feeds[RR_INPUT] = np.stack(
                [feature_vector(w, self.contract.rr_features) for w in windows]
            ).astype(np.float32)
        (probabilities,) = self._session.run(None, feeds)
        probabilities = np.asarray(probabilities, dtype=np.float32)
        check_probabilities(probabilities, self.name)
        return probabilities


PROBABILITY_TOLERANCE: Final = 1e-3
"""How far outside [0, 1] a probability, and how far from 1 a beat's sum, may fall."""


def check_probabilities(probabilities: npt.NDArray[np.floating[Any]], model: str) -> None:
    """Refuse a batch whose rows are not probabilities: finite, in [0, 1], summing to 1.

    Raises:
        ModelOutputError: Says how many beats and how far off; none of them gets a label.
    """
    tolerance = PROBABILITY_TOLERANCE
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(probabilities).all(axis=1)
        bad |= (probabilities < -tolerance).any(axis=1) | (probabilities > 1 + tolerance).any(
            axis=1
        )
        bad |= ~(np.abs(probabilities.sum(axis=1) - 1.0) <= tolerance)
    if bad.any():
        row = probabilities[int(np.argmax(bad))]
        msg = (
            f"model {model} gave {int(bad.sum())} of {len(bad)} beats outputs that are not "
            f"class probabilities (e.g. {np.array2string(row, precision=3)}); no label given"
        )
        raise ModelOutputError(msg)


def _probe_windows(config: ChainConfig) -> list[BeatWindow]:
    """A few plausible beats (a QRS, P and T wave at 75 bpm) to try a model on at load."""
    time = np.arange(config.window_samples) - config.window_before_samples
    fs_ms = config.fs_hz / 1000.0
    beat = (
        np.exp(-((time / (12 * fs_ms)) ** 2))
        + 0.15 * np.exp(-(((time + 160 * fs_ms) / (25 * fs_ms)) ** 2))
        + 0.3 * np.exp(-(((time - 250 * fs_ms) / (60 * fs_ms)) ** 2))
    )
    return [
        BeatWindow(
            peak=RPeak(index, index),
            samples=scale * beat,
            rr=RRFeatures(rr_ms=rr_ms, local_mean_rr_ms=800.0, long_mean_rr_ms=800.0),
            morphology=MorphologyFeatures(template_correlation=1.0, amplitude_ratio=scale),
            ready_index=index + config.window_after_samples,
        )
        for index, (scale, rr_ms) in enumerate(((1.0, 800.0), (1.5, 500.0), (0.8, 1200.0)))
    ]


UNCLASSIFIABLE: Final = (0.0, 0.0, 0.0, 0.0, 1.0)
"""Probabilities given to a beat whose signal is unusable: Q, unclassifiable."""


def default_model_path() -> Path:
    """The shipped inter-patient model, ``ecg_stream/classify/assets/beat_lstm.onnx``."""
    return Path(__file__).parent / "assets" / "beat_lstm.onnx"


def keras_path_of(model_path: Path) -> Path:
    """Where ``export`` writes the Keras network behind an ONNX model (before calibration)."""
    return model_path.with_name(f"{model_path.stem}.keras")


def _check_inputs(session: Any, source: str, window_samples: int, contract: ModelContract) -> None:
    """Refuse a model whose input names or shapes do not fit the contract."""
    shapes = {node.name: list(node.shape) for node in session.get_inputs()}
    wanted = {WINDOW_INPUT: [window_samples, len(contract.window_channels)]}
    if contract.rr_features:
        wanted[RR_INPUT] = [len(contract.rr_features)]
    if set(shapes) != set(wanted):
        msg = (
            f"{source}: model inputs are {sorted(shapes)}, its contract needs {sorted(wanted)}; "
            "re-export the model with `ecg-stream export`"
        )
        raise ModelContractError(msg)
    for name, tail in wanted.items():
        if shapes[name][1:] != tail:
            msg = (
                f"{source}: input {name!r} has shape {shapes[name]}, the contract needs "
                f"[batch, {', '.join(map(str, tail))}]; re-export the model"
            )
            raise ModelContractError(msg)
    outputs = [list(node.shape) for node in session.get_outputs()]
    if len(outputs) != 1 or outputs[0][1:] != [len(BEAT_CLASSES)]:
        msg = f"{source}: model outputs {outputs}, expected one [batch, {len(BEAT_CLASSES)}]"
        raise ModelContractError(msg)


def _five(row: FloatArray) -> tuple[float, float, float, float, float]:
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]))
