"""Prometheus metrics of a running ``replay`` or ``serve`` (``--metrics-port P``).

The figures are read at each scrape from what the command keeps anyway: its
:class:`~ecg_stream.live.session.RunSummary` (beats, publisher counters, compute latency, raw
messages) and a :class:`MetricsSink` among its sinks (streams online, their signal state,
rhythm events). Nothing is counted twice and nothing is added to a stream's hot path but the
sink's dictionary updates. The endpoint listens on loopback: ``http://127.0.0.1:P/metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ecg_stream.errors import ConfigError
from ecg_stream.live.session import RunSummary, SessionOutput
from ecg_stream.types import BEAT_CLASSES, SignalState
from ecg_stream.wire import StatusMessage, StreamState, TopicKind

LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""Upper edges of the compute-latency histogram's buckets, in ms (exported in s)."""
METRICS_HOST = "127.0.0.1"
"""The endpoint listens on loopback only: stream ids name patients' beds."""


class MetricsSink:
    """A sink that keeps what the summary does not: online streams, signal states, events."""

    def __init__(self) -> None:
        self.online: dict[str, SignalState] = {}  # stream -> its input's state
        self.events: Counter[tuple[str, str]] = Counter()  # (kind, state) -> count

    async def status(self, message: StatusMessage) -> None:
        """Online streams and their signal state; offline ones are forgotten."""
        if message.state is StreamState.ONLINE:
            self.online[message.stream] = message.signal or SignalState.OK
        else:
            self.online.pop(message.stream, None)

    async def write(self, output: SessionOutput) -> None:
        """Count the output's rhythm events."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Count the output's rhythm events."""
        for placed in output.events:
            self.events[placed.event.kind.value, placed.event.state.value] += 1

    async def close(self) -> None:
        """Nothing to release."""


class SummaryCollector(Collector):
    """The command's figures as Prometheus metrics, read at each scrape."""

    def __init__(self, summary: RunSummary, sink: MetricsSink) -> None:
        self.summary, self.sink = summary, sink

    def collect(self) -> Iterator[Metric]:
        """Every metric, from the summary and the sink as they are now."""
        summary, reports = self.summary, self.summary.reports
        yield GaugeMetricFamily(
            "ecg_stream_streams_online", "Streams online now", value=len(self.sink.online)
        )
        signal = GaugeMetricFamily(
            "ecg_stream_signal_state",
            "Online streams by the state of their input",
            labels=["state"],
        )
        states = Counter(self.sink.online.values())
        for state in SignalState:
            signal.add_metric([state.value], states[state])
        yield signal
        beats = CounterMetricFamily(
            "ecg_stream_beats", "Beats handed to the sinks, by class", labels=["class"]
        )
        for beat_class in BEAT_CLASSES:
            beats.add_metric([beat_class.value], sum(r.beats[beat_class] for r in reports))
        yield beats
        events = CounterMetricFamily(
            "ecg_stream_events", "Rhythm events, by kind and state", labels=["kind", "state"]
        )
        for (rhythm, change), count in sorted(self.sink.events.items()):
            events.add_metric([rhythm, change], count)
        yield events
        for name, help_text, field in (
            ("dropped", "Messages that never reached the broker, by topic", "dropped"),
            ("refused", "Messages the broker refused, by topic", "refused"),
        ):
            family = CounterMetricFamily(f"ecg_stream_messages_{name}", help_text, labels=["topic"])
            for topic in TopicKind:
                counts = (getattr(r.publisher, field)[topic] for r in reports)
                family.add_metric([topic.value], sum(counts, 0))
            yield family
        yield CounterMetricFamily(
            "ecg_stream_beats_lost",
            "Beats no subscriber can get (dropped before the broker, or refused by it)",
            value=summary.beats_lost,
        )
        raw = CounterMetricFamily(
            "ecg_stream_raw_messages", "Raw device messages received, by fate", labels=["fate"]
        )
        for fate, count in (
            ("received", summary.received),
            ("malformed", summary.malformed),
            ("foreign", summary.foreign),
            ("refused_streams", summary.refused_streams),
        ):
            raw.add_metric([fate], count)
        yield raw
        yield _latency(summary)


def _latency(summary: RunSummary) -> HistogramMetricFamily:
    """Compute latency (chunk arrival -> publish acknowledged) of every published beat."""
    histogram = summary.compute()
    buckets = [
        (f"{edge / 1000.0:g}", float(histogram.count_at_most(edge))) for edge in LATENCY_BUCKETS_MS
    ]
    buckets.append(("+Inf", float(histogram.count)))
    return HistogramMetricFamily(
        "ecg_stream_compute_latency_seconds",
        "Compute latency of the published beats: chunk arrival to publish acknowledged",
        buckets=buckets,
        sum_value=histogram.total_ms / 1000.0,
    )


def start_metrics(port: int, summary: RunSummary, say: Callable[[str], None]) -> MetricsSink:
    """Serve ``http://127.0.0.1:port/metrics`` from a daemon thread for the process's life.

    Returns:
        The sink the command adds to its sinks, which the endpoint reads with ``summary``.

    Raises:
        ConfigError: The port is out of range or taken.
    """
    sink = MetricsSink()
    if not 1 <= port <= 65535:
        msg = f"--metrics-port {port} must lie in 1..65535"
        raise ConfigError(msg)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SummaryCollector(summary, sink))
    try:
        start_http_server(port, addr=METRICS_HOST, registry=registry)
    except OSError as error:
        msg = f"--metrics-port {port}: cannot listen ({error.strerror}); choose a free port"
        raise ConfigError(msg) from None
    say(f"metrics at http://{METRICS_HOST}:{port}/metrics")
    return sink
