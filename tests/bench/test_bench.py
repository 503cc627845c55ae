"""The latency benchmark runs end to end and reports every stage and field (never timings)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ecg_stream.bench.latency import STAGES
from ecg_stream.cli import main
from tests.helpers import MqttBroker

PERCENTILE_FIELDS = {"count", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}


def assert_distribution(figures: dict[str, Any], *, mean: bool = True) -> None:
    assert set(figures) == PERCENTILE_FIELDS
    assert figures["count"] > 0
    order = [figures[key] for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    assert all(isinstance(value, float) and math.isfinite(value) for value in order)
    assert order == sorted(order)
    assert (figures["mean_ms"] is not None) == mean


def run_bench(argv: list[str], data_dir: Path, broker: MqttBroker, out: Path) -> dict[str, Any]:
    url = f"mqtt://127.0.0.1:{broker.port}"
    common = ["--data-dir", str(data_dir), "--broker", url, "--json", str(out / "bench.json")]
    assert main(["bench", "100", *argv, *common, "--plot-dir", str(out)]) == 0
    result: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return result


@pytest.mark.mqtt
def test_quick_benchmark_reports_every_stage(
    data_dir: Path, mqtt_broker: MqttBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no.keras"
    argv = ["--quick", "--keras", str(missing), "--rounds", "3", "--batch", "8"]
    report = run_bench(argv, data_dir, mqtt_broker, tmp_path)

    assert set(report["stages"]) == set(STAGES)
    for figures in report["stages"].values():
        assert_distribution(figures)
    counts = {figures["count"] for figures in report["stages"].values()}
    assert counts == {report["beats"]["published"]}  # every beat, every stage: none lost
    assert report["beats"]["received"] == report["beats"]["published"] > 100
    assert_distribution(report["signal_latency"])
    assert_distribution(report["signal_latency_needed"])

    inference = report["inference"]
    assert inference["keras_skipped"] is not None
    assert str(missing) in inference["keras_skipped"]
    assert set(inference["variants"]) == {
        "onnx shipped model, batch 1",
        "onnx shipped model, batch 8",
        "onnx shipped model int8, batch 1",
        "onnx shipped model int8, batch 8",
    }
    assert 0.0 <= inference["int8"]["label_agreement"] <= 1.0
    assert inference["int8"]["max_abs_probability_difference"] >= 0.0
    assert inference["variants"][inference["baseline"]]["ratio_p50"] == 1.0
    for variant in inference["variants"].values():
        assert set(variant) == PERCENTILE_FIELDS | {"ratio_p50"}
        assert variant["count"] == 3

    throughput = report["throughput"]
    assert throughput["chain_x_real_time"] > 0
    assert throughput["pipeline_x_real_time"] > 0
    assert "scale" not in report
    assert (tmp_path / "latency_cdf.png").stat().st_size > 0
    assert (tmp_path / "inference_cdf.png").stat().st_size > 0

    table = capsys.readouterr().out
    for title in STAGES.values():
        assert title in table
    assert "Keras: skipped" in table


@pytest.mark.mqtt
def test_the_scale_curve_reports_every_field_of_every_point(
    data_dir: Path, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    # 2 s of record 100 hold 3 beats per stream, whatever the pacing: every figure has counts
    argv = ["--streams", "1,3", "--duration-s", "2", "--workers", "2", "--samples-ms", "500"]
    argv += ["--ramp-s", "0.5"]
    report = run_bench(argv, data_dir, mqtt_broker, tmp_path)

    scale = report["scale"]
    assert scale["latency_target_ms"] == 50.0
    assert [point["streams"] for point in scale["curve"]] == [1, 3]
    assert [point["workers"] for point in scale["curve"]] == [1, 2]
    for point in scale["curve"]:
        for key in ("compute", "pacing_error"):
            assert_distribution(point[key])
        assert_distribution(point["end_to_end"], mean=False)
        assert point["beats_received"] == point["beats_published"] > 0
        assert point["dropped"] == 0
        assert point["samples_s"] == point["ramp_s"] == 0.5
        for key in ("cpu_percent", "subscriber_cpu_percent", "memory_per_stream_mb", "wall_s"):
            assert math.isfinite(point[key])
        assert math.isfinite(point["memory_growth_mb"])
        assert isinstance(point["holds"], bool)
    holding = [point["streams"] for point in scale["curve"] if point["holds"]]
    assert scale["streams_per_machine"] == max(holding, default=0)
    assert (tmp_path / "scale.png").stat().st_size > 0
    assert "stages" not in report
