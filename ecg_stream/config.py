"""The chain's configuration: the one home of the sampling rate and window geometry."""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from ecg_stream.errors import ConfigError

CHAIN_FS_HZ = 360.0
"""Every stage after the source runs at this rate; other records are resampled to it."""

SUPPORTED_FS_HZ = (50.0, 10_000.0)
"""Lowest and highest sampling rate accepted, in Hz (records and ``samples`` messages)."""


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """Settings shared by the filter, detector, segmenter, training and the model contract.

    Args:
        fs_hz: Sampling rate of the chain, in Hz.
        band_hz: Pass band of the display/classification filter, in Hz.
        notch_hz: Mains frequency to notch out (50 or 60), or None for no notch.
        window_before_samples: Samples of the beat window before the R peak.
        window_after_samples: Samples of the beat window from the R peak on.
        rr_mean_beats: Number of past RR intervals in the local mean RR.
    """

    fs_hz: float = CHAIN_FS_HZ
    band_hz: tuple[float, float] = (0.5, 40.0)
    notch_hz: float | None = None
    window_before_samples: int = 90
    window_after_samples: int = 160
    rr_mean_beats: int = 10

    def __post_init__(self) -> None:
        low, high = self.band_hz
        if not 0.0 < low < high < self.fs_hz / 2:
            msg = (
                f"band_hz={self.band_hz} must satisfy 0 < low < high < {self.fs_hz / 2:g} Hz "
                "(fs_hz/2)"
            )
            raise ConfigError(msg)
        if self.notch_hz is not None and not 0.0 < self.notch_hz < self.fs_hz / 2:
            msg = f"notch_hz={self.notch_hz} must lie in (0, {self.fs_hz / 2:g}) Hz, e.g. 50 or 60"
            raise ConfigError(msg)
        if self.window_before_samples < 0 or self.window_after_samples < 1:
            msg = (
                f"window geometry ({self.window_before_samples} before, "
                f"{self.window_after_samples} after) must have before >= 0 and after >= 1"
            )
            raise ConfigError(msg)
        if self.rr_mean_beats < 1:
            msg = f"rr_mean_beats={self.rr_mean_beats} must be >= 1"
            raise ConfigError(msg)

    @property
    def window_samples(self) -> int:
        """Length of a beat window, in samples."""
        return self.window_before_samples + self.window_after_samples


MQTT_USERNAME_ENV = "ECG_STREAM_MQTT_USERNAME"
"""Environment variable holding the MQTT username (never given on the command line)."""

MQTT_PASSWORD_ENV = "ECG_STREAM_MQTT_PASSWORD"
"""Environment variable holding the MQTT password (never given on the command line)."""

MQTT_PASSWORD_FILE_ENV = "ECG_STREAM_MQTT_PASSWORD_FILE"
"""Environment variable naming a file that holds the MQTT password (e.g. a container secret)."""

MQTT_CA_FILE_ENV = "ECG_STREAM_MQTT_CA_FILE"
"""Environment variable naming a PEM file of CA certificates to trust for ``mqtts://`` (instead
of the system's), e.g. the CA of a private broker's self-signed certificate."""

MQTT_DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883}
"""Port of each URL scheme when the URL names none."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and how to reach an MQTT broker, and under which topic prefix to publish.

    Args:
        host: Broker host name or address.
        port: Broker TCP port.
        tls: Connect with TLS (``mqtts://``), verifying the broker's certificate.
        topic_prefix: First topic level(s), e.g. ``ecg`` for ``ecg/<stream>/beats``.
        username: User name, from $ECG_STREAM_MQTT_USERNAME (never from the command line).
        password: Password, from $ECG_STREAM_MQTT_PASSWORD or the file named by
            $ECG_STREAM_MQTT_PASSWORD_FILE; never shown by ``repr``.
        ca_file: PEM file of the CA certificates to trust (``mqtts://`` only), from
            $ECG_STREAM_MQTT_CA_FILE; None: the system's CAs.
        keepalive_s: MQTT keep-alive interval, in s; the broker publishes the last will after
            about 1.5 times this without traffic from a dead client.
        connect_timeout_s: How long one connection attempt may take, in s.
        mqtt5: Persistent sessions speak MQTT 5 (clean start off, a session expiry interval);
            False for a broker that speaks only MQTT 3.1.1 (amqtt, the embedded broker, NATS),
            where they are 3.1.1 sessions without ``clean_session`` (kept until the broker
            drops them).
        more_nodes: Further nodes of a broker cluster, ``(host, port)``, after ``host:port``:
            a client tries them in turn when a node cannot be reached or its link is lost.

    Example:
        >>> MqttConfig.from_url("mqtts://broker.example:8884", environ={}).url
        'mqtts://broker.example:8884'
        >>> MqttConfig.from_url("mqtt://n1:4001,n2:4002", environ={}).nodes
        (('n1', 4001), ('n2', 4002))
    """

    host: str = "localhost"
    port: int = 1883
    tls: bool = False
    topic_prefix: str = "ecg"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    ca_file: Path | None = None
    mqtt5: bool = True
    more_nodes: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for host, port in self.nodes:
            if not host:
                msg = "MQTT host is empty; pass e.g. --broker mqtt://localhost:1883"
                raise ConfigError(msg)
            if not 0 < port < 65536:
                msg = f"MQTT port {port} is out of range; use 1..65535 (1883, or 8883 for TLS)"
                raise ConfigError(msg)
        if self.keepalive_s < 1 or not self.connect_timeout_s > 0:
            msg = (
                f"keepalive_s={self.keepalive_s} and connect_timeout_s={self.connect_timeout_s} "
                "must be positive"
            )
            raise ConfigError(msg)
        if self.password is not None and self.username is None:
            msg = f"${MQTT_PASSWORD_ENV} is set but ${MQTT_USERNAME_ENV} is not; set both"
            raise ConfigError(msg)
        if self.ca_file is not None and not self.tls:
            msg = (
                f"${MQTT_CA_FILE_ENV} names a CA file for {self.url}, a connection without TLS; "
                f"use mqtts://{self.host}:... or unset ${MQTT_CA_FILE_ENV}"
            )
            raise ConfigError(msg)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``mqtts://`` (certificate and host name verified), else None.

        Raises:
            ConfigError: ``ca_file`` cannot be read or holds no PEM certificate.
        """
        if not self.tls:
            return None
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as error:  # missing, unreadable, or no certificate
            reason = getattr(error, "strerror", None) or str(error)
            msg = (
                f"${MQTT_CA_FILE_ENV}: cannot load CA certificates from {self.ca_file} "
                f"({reason}); name a PEM file holding the CA that signed the broker's certificate"
            )
            raise ConfigError(msg) from None

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """Every node, ``(host, port)``, in the order they are tried."""
        return ((self.host, self.port), *self.more_nodes)

    def node(self, index: int) -> MqttConfig:
        """This configuration for its node ``index`` alone (modulo the number of nodes)."""
        host, port = self.nodes[index % len(self.nodes)]
        return replace(self, host=host, port=port, more_nodes=())

    @property
    def url(self) -> str:
        """The broker as a URL, without credentials (its nodes separated by commas)."""
        scheme = "mqtts" if self.tls else "mqtt"
        return ",".join(f"{scheme}://{host}:{port}" for host, port in self.nodes)

    @classmethod
    def from_url(
        cls,
        url: str,
        topic_prefix: str = "ecg",
        environ: Mapping[str, str] | None = None,
    ) -> MqttConfig:
        """Build a configuration from ``mqtt://host[:port]`` or ``mqtts://host[:port]``.

        Credentials come from the environment only: $ECG_STREAM_MQTT_USERNAME, and
        $ECG_STREAM_MQTT_PASSWORD or a file named by $ECG_STREAM_MQTT_PASSWORD_FILE (its first
        line); $ECG_STREAM_MQTT_CA_FILE names the CA certificates ``mqtts://`` trusts.

        Args:
            url: Broker URL; ``host:port`` alone means ``mqtt://host:port``; the nodes of a
                cluster separated by commas (``mqtt://n1:1883,mqtt://n2:1883``), tried in turn.
            topic_prefix: First topic level(s).
            environ: Environment to read credentials from (default: ``os.environ``).

        Raises:
            ConfigError: The URL has another scheme, holds credentials, or a bad port; the
                password or CA file cannot be read.
        """
        env = os.environ if environ is None else environ
        nodes = [_broker_node(part.strip()) for part in url.split(",")]
        schemes = {scheme for scheme, _, _ in nodes}
        if len(schemes) > 1:
            msg = (
                f"broker URL {without_credentials(url)!r} mixes mqtt:// and mqtts:// nodes; "
                "give every node of a cluster the same scheme"
            )
            raise ConfigError(msg)
        (scheme, host, port), *more = nodes
        ca_file = env.get(MQTT_CA_FILE_ENV) or None
        config = cls(
            host=host,
            port=port,
            more_nodes=tuple((more_host, more_port) for _, more_host, more_port in more),
            tls=scheme == "mqtts",
            topic_prefix=topic_prefix,
            username=env.get(MQTT_USERNAME_ENV) or None,
            password=_password_from(env),
            ca_file=Path(ca_file) if ca_file else None,
        )
        config.tls_context()  # a bad CA file fails here, before any connection
        return config


def _broker_node(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of one node's URL (``host:port`` alone means ``mqtt://``).

    Raises:
        ConfigError: The URL is empty, has another scheme, holds credentials, a path or a bad
            port.
    """
    shown = without_credentials(url)
    if not url:
        msg = "a broker URL is empty; use e.g. mqtt://localhost:1883 (nodes separated by commas)"
        raise ConfigError(msg)
    if "@" in url:
        msg = (
            f"broker URL {shown} holds credentials; command lines are visible to other "
            f"users: set ${MQTT_USERNAME_ENV} and ${MQTT_PASSWORD_ENV} instead"
        )
        raise ConfigError(msg)
    try:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        port = parts.port
    except ValueError as error:  # an unclosed [IPv6 literal, a port out of range
        msg = f"broker URL {shown!r}: {error}; use e.g. mqtt://localhost:1883"
        raise ConfigError(msg) from None
    scheme = parts.scheme.lower()
    if scheme not in MQTT_DEFAULT_PORTS:
        msg = f"broker URL {shown!r} has scheme {scheme!r}; use mqtt://host:port or mqtts://..."
        raise ConfigError(msg)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        msg = f"broker URL {shown!r} has a path or query; use mqtt://host:port only"
        raise ConfigError(msg)
    return scheme, parts.hostname or "", port if port is not None else MQTT_DEFAULT_PORTS[scheme]


def without_credentials(url: str) -> str:
    """``url`` as a message may show it: whatever comes before an ``@`` is hidden.

    Example:
        >>> without_credentials("tcp://user:secret@broker:1883")
        'tcp://...@broker:1883'
    """
    if "@" not in url:
        return url
    scheme, separator, _ = url.partition("://")
    host = url.rsplit("@", 1)[1]
    return f"{scheme}://...@{host}" if separator else f"...@{host}"


def _password_from(env: Mapping[str, str]) -> str | None:
    """The password from $ECG_STREAM_MQTT_PASSWORD or the first line of its file, if any."""
    given, path = env.get(MQTT_PASSWORD_ENV) or None, env.get(MQTT_PASSWORD_FILE_ENV) or None
    if given is not None and path is not None:
        msg = f"both ${MQTT_PASSWORD_ENV} and ${MQTT_PASSWORD_FILE_ENV} are set; set one"
        raise ConfigError(msg)
    if path is None:
        return given
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:  # the message names the file, never content
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        msg = f"${MQTT_PASSWORD_FILE_ENV}: cannot read the password file {path} ({reason})"
        raise ConfigError(msg) from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        msg = f"${MQTT_PASSWORD_FILE_ENV}: the password file {path} is empty"
        raise ConfigError(msg)
    return lines[0]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential reconnect delays with jitter ("equal jitter").

    Attempt ``n`` waits between half and all of ``min(max_s, initial_s * factor**n)``, so many
    publishers that lost the same broker do not reconnect in lockstep.

    Args:
        initial_s: Ceiling of the first delay, in s.
        max_s: Largest ceiling, in s.
        factor: Growth of the ceiling per failed attempt.

    Example:
        >>> delays = [Backoff(1.0, 8.0).delay_s(n, random.Random(0)) for n in range(6)]
        >>> all(0.5 * c <= d <= c for d, c in zip(delays, [1, 2, 4, 8, 8, 8]))
        True
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and self.factor >= 1):
            msg = f"{self}: need 0 < initial_s <= max_s and factor >= 1"
            raise ConfigError(msg)

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Delay before reconnect attempt ``attempt`` (0 for the first), in s."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


MANY_STREAMS = 32
"""From this many streams in one process on, the defaults change for scale: ``samples``
messages every 500 ms, and ``replay`` and ``bench`` spread the streams over a worker process per
core."""

DEFAULT_MAX_STREAMS = 2000
"""Streams one ``serve`` worker serves at once (``--max-streams``); chunks of more are dropped
and counted until one goes idle."""


@dataclass(frozen=True, slots=True)
class RhythmSettings:
    """Limits of the rhythm stage (``detector/rhythm/stage.py``): rates, runs, pauses, asystole.

    Args:
        bradycardia_bpm: Heart rate below which bradycardia starts, in bpm (default 50).
        tachycardia_bpm: Heart rate above which tachycardia starts, in bpm (default 120).
        rate_hysteresis_bpm: How far back past its limit the rate must come to end bradycardia
            or tachycardia, in bpm (default 5: bradycardia ends at >= 55 bpm).
        rate_beats: RR intervals between usable beats the heart rate is taken over (default 8).
        pause_s: An RR interval between two usable beats longer than this is a pause, in s
            (default 2.0).
        asystole_s: No beat for longer than this is asystole, in s (default 4.0).
        asystole_margin_s: Time past ``asystole_s`` the stage waits for a beat the chain may
            still report, in s (default 0.5: the chain reports a regularly detected beat at most
            0.44 s after its R peak, when its window is complete); asystole is raised this long
            after its limit.
        vt_bpm: Rate of a run of ventricular beats above which it is ventricular tachycardia,
            at or below which it is idioventricular, in bpm (default 90: MIT-BIH annotates
            ventricular runs of 90-100 bpm as VT, e.g. record 223).
        run_min_beats: Consecutive ventricular (or supraventricular) beats that start a VT,
            idioventricular (or SVT) episode (default 3).
        run_max_beats: Longest run reported as a ``ventricular_run`` (default 5).
        sustained_vt_s: VT lasting this long is sustained, in s (default 30).
        svt_bpm: Rate of a run of supraventricular beats above which it is SVT, in bpm
            (default 100).
        pattern_cycles: Cycles (N V, or N N V) in a row that start ventricular bigeminy or
            trigeminy (default 3).
        af_enabled: Run the atrial fibrillation detector (``detector/rhythm/af.py``; default
            True).
        af_gate: While AF is open, a beat the classifier calls S is a conducted AF beat: its
            S probability moves to N, for the rhythm rules and in the beats the stream
            publishes (annotators label conducted AF beats N; default True; needs AF on).
    """

    bradycardia_bpm: float = 50.0
    tachycardia_bpm: float = 120.0
    rate_hysteresis_bpm: float = 5.0
    rate_beats: int = 8
    pause_s: float = 2.0
    asystole_s: float = 4.0
    asystole_margin_s: float = 0.5
    vt_bpm: float = 90.0
    run_min_beats: int = 3
    run_max_beats: int = 5
    sustained_vt_s: float = 30.0
    svt_bpm: float = 100.0
    pattern_cycles: int = 3
    af_enabled: bool = True
    af_gate: bool = True

    def __post_init__(self) -> None:
        low, high, band = self.bradycardia_bpm, self.tachycardia_bpm, self.rate_hysteresis_bpm
        checks = (
            (
                low > 0.0 and band >= 0.0 and low + band < high - band,
                f"--bradycardia-bpm {low:g} and --tachycardia-bpm {high:g} (hysteresis {band:g} "
                "bpm): need 0 < bradycardia + hysteresis < tachycardia - hysteresis, e.g. 50 "
                "and 120",
            ),
            (
                2 <= self.rate_beats <= 64,
                f"rate_beats={self.rate_beats} must lie in [2, 64] RR intervals (e.g. 8)",
            ),
            (
                0.0 < self.pause_s < self.asystole_s,
                f"--pause-s {self.pause_s:g} and --asystole-s {self.asystole_s:g}: need "
                "0 < pause < asystole, e.g. 2 and 4",
            ),
            (
                0.0 <= self.asystole_margin_s <= 1.0,
                f"asystole_margin_s={self.asystole_margin_s} must lie in [0, 1] s (e.g. 0.5)",
            ),
            (
                self.vt_bpm > 0.0 and self.svt_bpm > 0.0,
                f"vt_bpm={self.vt_bpm} and svt_bpm={self.svt_bpm} must be > 0 (e.g. 100)",
            ),
            (
                2 <= self.run_min_beats <= self.run_max_beats,
                f"run_min_beats={self.run_min_beats} and run_max_beats={self.run_max_beats}: "
                "need 2 <= run_min_beats <= run_max_beats (e.g. 3 and 5)",
            ),
            (
                self.sustained_vt_s > 0.0,
                f"sustained_vt_s={self.sustained_vt_s} must be > 0 s (e.g. 30)",
            ),
            (
                self.pattern_cycles >= 2,
                f"pattern_cycles={self.pattern_cycles} must be >= 2 (e.g. 3)",
            ),
        )
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


DEFAULT_RHYTHM = RhythmSettings()
"""The rhythm stage's limits unless a command says otherwise."""
