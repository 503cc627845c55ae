"""Redraw cost of the monitor, in ms per frame, with 1 and 8 streams (offscreen Qt).

Synthetic but realistic traffic goes through the real path: wire-encoded ``samples`` (100 ms
chunks at 360 Hz), ``beats`` (~75 bpm, one V beat in seven) and ``status`` payloads are handed
to a :class:`Subscriber` (decode, bounded queue, exactly as from the broker, minus the socket),
and the :class:`MonitorWindow` drains and draws them. Signal time advances in real-time
steps of one frame (1/30 s) per frame, so each frame draws what a live monitor would.

A frame is timed twice: ``refresh`` (drain, trackers, ``setData`` calls, the part on the GUI
thread's timer) and ``refresh + paint`` (plus Qt painting the changed rows, forced with
``processEvents``). Offscreen Qt paints with the raster engine on the CPU, as most desktops do.

Run: ``QT_QPA_PLATFORM=offscreen python benchmarks/monitor_redraw.py [--frames 600]``
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ecg_stream.config import MqttConfig
from ecg_stream.types import BEAT_CLASSES, BeatClass
from ecg_stream.wire import (
    BeatMessage,
    ClassProbabilities,
    SamplesMessage,
    StatusMessage,
    StreamState,
    TopicKind,
    encode,
    topic_for,
)

FS_HZ = 360.0
CHUNK_SAMPLES = 36
FRAME_HZ = 30.0


def beat_shape(fs_hz: float, ventricular: bool) -> npt.NDArray[np.float64]:
    """One beat (1 s) as a sum of Gaussian waves: P, QRS, T; a V beat is wide, tall, no P."""
    t = np.arange(round(fs_hz)) / fs_hz - 0.25  # R peak at 0.25 s
    waves = (
        [(-0.01, 0.025, -1.1), (0.0, 0.035, 1.9), (0.06, 0.03, -0.8), (0.3, 0.07, -0.6)]
        if ventricular
        else [
            (-0.17, 0.025, 0.15),
            (-0.02, 0.008, -0.1),
            (0.0, 0.011, 1.2),
            (0.025, 0.009, -0.25),
            (0.25, 0.045, 0.3),
        ]
    )
    return sum(
        (amp * np.exp(-0.5 * ((t - mu) / sd) ** 2) for mu, sd, amp in waves),
        start=np.zeros_like(t),
    )


class SyntheticStream:
    """Wire payloads of one stream: samples chunks and labeled beats, in signal order."""

    def __init__(self, stream: str, seed: int) -> None:
        self.stream = stream
        rng = np.random.default_rng(seed)
        self.normal, self.ventricular = beat_shape(FS_HZ, False), beat_shape(FS_HZ, True)
        duration = round(FS_HZ * 120)
        self.signal = 0.05 * np.sin(2 * np.pi * 0.25 * np.arange(duration) / FS_HZ)
        self.signal += rng.normal(0.0, 0.015, duration)
        self.beats: list[tuple[int, BeatClass, float]] = []
        r_index, previous = round(0.3 * FS_HZ), None
        while r_index + FS_HZ < duration:
            label = BeatClass.V if rng.random() < 1 / 7 else BeatClass.N
            if label is BeatClass.V and previous is not None:  # premature ...
                r_index = previous + round(0.6 * (r_index - previous))
            shape = self.ventricular if label is BeatClass.V else self.normal
            start = r_index - round(0.25 * FS_HZ)
            self.signal[start : start + shape.size] += shape
            rr_ms = math.nan if previous is None else (r_index - previous) / FS_HZ * 1000
            self.beats.append((r_index, label, rr_ms))
            previous = r_index
            pause = 1.5 if label is BeatClass.V else 1.0  # ... then a compensatory pause
            r_index += round(FS_HZ * rng.uniform(0.72, 0.88) * pause)
        self.sent_samples = 0
        self.sent_beats = 0

    def status_payload(self) -> tuple[str, bytes]:
        message = StatusMessage(
            self.stream, StreamState.ONLINE, self.stream, FS_HZ, "beat_lstm", BEAT_CLASSES
        )
        return topic_for("ecg", self.stream, TopicKind.STATUS), encode(message)

    def payloads_until(self, end_index: int, wall_s: float) -> list[tuple[str, bytes]]:
        """Every payload whose data is complete before ``end_index`` (wrapping the record)."""
        out: list[tuple[str, bytes]] = []
        while self.sent_samples + CHUNK_SAMPLES <= end_index:
            start = self.sent_samples % (self.signal.size - CHUNK_SAMPLES)
            chunk = self.signal[start : start + CHUNK_SAMPLES]
            samples = SamplesMessage.from_mv(self.stream, self.sent_samples, FS_HZ, chunk, 1.0)
            out.append((topic_for("ecg", self.stream, TopicKind.SAMPLES), encode(samples)))
            self.sent_samples += CHUNK_SAMPLES
        period = self.signal.size - CHUNK_SAMPLES
        while True:
            lap, position = divmod(self.sent_beats, len(self.beats))
            r_index, label, rr_ms = self.beats[position]
            r_index += lap * period
            if r_index + 160 > self.sent_samples:
                break
            probabilities = [0.01] * 5
            probabilities[label.index] = 0.96
            message = BeatMessage(
                stream=self.stream,
                record=self.stream,
                sample=r_index,
                chain_sample=r_index,
                time_s=r_index / FS_HZ,
                r_wall_time=wall_s,
                label=label,
                confidence=0.96,
                probabilities=ClassProbabilities(*probabilities),
                rr_ms=None if math.isnan(rr_ms) else rr_ms,
                hr_bpm=None if math.isnan(rr_ms) else 60_000 / rr_ms,
                compute_ms=1.5,
                published_at=wall_s,
            )
            out.append((topic_for("ecg", self.stream, TopicKind.BEATS), encode(message)))
            self.sent_beats += 1
        return out


def percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:6.2f}  p95 {p95:6.2f}  p99 {p99:6.2f}  max {max(values):6.2f} ms"


def measure(
    stream_count: int, frames: int, warmup_frames: int, screenshot: Path | None
) -> tuple[list[float], list[float], list[bool]]:
    """Per frame: cost of refresh, of refresh + paint (ms), and whether new samples came."""
    from PySide6 import QtWidgets

    from ecg_stream.viewer.monitor import MonitorWindow
    from ecg_stream.viewer.subscriber import Subscriber

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    subscriber = Subscriber(MqttConfig())  # never started: handle() is the decode path
    window = MonitorWindow(subscriber)
    window.timer.stop()  # frames are driven here, one at a time
    window.resize(1600, 1000)
    window.show()
    streams = [SyntheticStream(f"{200 + k}", seed=k) for k in range(stream_count)]
    for stream in streams:
        subscriber.handle(*stream.status_payload())
    refresh_ms: list[float] = []
    total_ms: list[float] = []
    with_data: list[bool] = []
    for frame in range(warmup_frames + frames):
        end_index = round((frame + 1) / FRAME_HZ * FS_HZ) + round(12 * FS_HZ)  # 12 s in
        handed = 0
        for stream in streams:
            for topic, payload in stream.payloads_until(end_index, time.time()):
                subscriber.handle(topic, payload)
                handed += 1
        started = time.perf_counter()
        window.refresh()
        refreshed = time.perf_counter()
        app.processEvents()  # paint what changed
        done = time.perf_counter()
        if frame >= warmup_frames:
            refresh_ms.append((refreshed - started) * 1000)
            total_ms.append((done - started) * 1000)
            with_data.append(handed > 0)
    if screenshot is not None:
        window.save_screenshot(screenshot)
    status = subscriber.status()
    assert status.malformed == status.dropped == 0, status
    window.close()
    return refresh_ms, total_ms, with_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=900, help="frames timed per case (30 s)")
    parser.add_argument("--warmup", type=int, default=60, help="frames run before timing")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--screenshot", type=Path, help="save the last frame of each case here")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(
        f"monitor redraw cost, {args.frames} frames per case at {FRAME_HZ:g} Hz, window "
        "1600x1000, offscreen raster; samples come in 100 ms chunks, so 1 frame in 3 has new data"
    )
    for count in args.streams:
        shot = None
        if args.screenshot is not None:
            shot = args.screenshot.with_name(
                f"{args.screenshot.stem}-{count}{args.screenshot.suffix}"
            )
        refresh_ms, total_ms, with_data = measure(count, args.frames, args.warmup, shot)
        data_refresh = [ms for ms, new in zip(refresh_ms, with_data, strict=True) if new]
        data_total = [ms for ms, new in zip(total_ms, with_data, strict=True) if new]
        busy = sum(total_ms) / (len(total_ms) / FRAME_HZ) / 10  # ms per s -> % of one core
        print(f"{count} stream(s), frames with new data ({len(data_total)}):")
        print(f"    refresh (drain, trackers, setData)  {percentiles(data_refresh)}")
        print(f"    refresh + paint                     {percentiles(data_total)}")
        print(f"  all frames: refresh + paint {percentiles(total_ms)}; GUI thread busy {busy:.0f}%")


if __name__ == "__main__":
    main()
