"""What a publisher did: delivery counters and compute latency (plain data, no MQTT client)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecg_stream.stats import DurationHistogram
from ecg_stream.wire import TopicKind


@dataclass(slots=True)
class PublisherStats:
    """What a publisher did, for the summary.

    Args:
        published: Messages the broker took (acknowledged, for QoS 1), per topic kind.
        dropped: Messages that never reached the broker, per topic kind: refused by a full
            queue, a QoS 0 message whose connection dropped, or left undelivered at shutdown.
        refused: Messages the broker acknowledged with a failure code (for example an ACL
            that does not let these credentials write the topic), per topic kind: lost.
        refusal: The broker's reason for the last refusal (None: none refused).
        republished: Beats and status updates published again after a lost connection: the
            one in flight, and beats acknowledged in the last ``RESEND_WINDOW_S`` (the broker
            may hold them twice).
        reconnects: Successful reconnections after a lost connection.
        compute: Compute latency of the published beats, in ms.
    """

    published: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))
    dropped: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))
    refused: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))
    refusal: str | None = None
    republished: int = 0
    reconnects: int = 0
    compute: DurationHistogram = field(default_factory=DurationHistogram)

    @property
    def dropped_total(self) -> int:
        """Messages dropped, all kinds."""
        return sum(self.dropped.values())

    @property
    def beats_dropped(self) -> int:
        """Beats that never reached the broker."""
        return self.dropped[TopicKind.BEATS]

    @property
    def refused_total(self) -> int:
        """Messages the broker refused, all kinds."""
        return sum(self.refused.values())

    @property
    def beats_lost(self) -> int:
        """Beats no subscriber can get: dropped before the broker, or refused by it."""
        return self.dropped[TopicKind.BEATS] + self.refused[TopicKind.BEATS]

    @property
    def samples_dropped(self) -> int:
        """Display messages that never reached the broker."""
        return self.dropped[TopicKind.SAMPLES]

    def merge(self, other: PublisherStats) -> None:
        """Add another publisher's counters (a stream's next session)."""
        for kind in TopicKind:
            self.published[kind] += other.published[kind]
            self.dropped[kind] += other.dropped[kind]
            self.refused[kind] += other.refused[kind]
        self.refusal = other.refusal or self.refusal
        self.reconnects += other.reconnects
        self.republished += other.republished
        self.compute.merge(other.compute)
