from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ecg_stream.cli import main
from ecg_stream.records import DATA_ENV


def test_analyze_writes_one_row_per_beat(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "100", "--data-dir", str(data_dir), "--out-dir", str(tmp_path)]) == 0
    with (tmp_path / "100.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        *("sample", "time_s", "rr_ms", "label", "confidence"),
        *("p_N", "p_S", "p_V", "p_F", "p_Q"),
    ]
    assert 2270 <= len(rows) - 1 <= 2280
    assert {row[3] for row in rows[1:]} <= {"N", "S", "V", "F", "Q"}
    assert all(abs(sum(map(float, row[5:])) - 1) < 1e-3 for row in rows[1:])
    assert "x real time" in capsys.readouterr().out


def test_analyze_without_model_writes_detections_only(data_dir: Path, tmp_path: Path) -> None:
    argv = ["analyze", "100", "--data-dir", str(data_dir), "--out-dir", str(tmp_path)]
    assert main([*argv, "--no-classify"]) == 0
    assert (tmp_path / "100.csv").read_text().splitlines()[0] == "sample,time_s,rr_ms"


def test_evaluate_needs_detector_or_classifier(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["evaluate", "100"])
    assert caught.value.code == 2
    assert "--detector --classifier" in capsys.readouterr().err.replace("/", " ")


def test_evaluate_detector_prints_gross_and_writes_json(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "detector.json"
    argv = ["evaluate", "--detector", "100", "--data-dir", str(data_dir), "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "gross" in printed
    assert "EC57 span" in printed
    assert '"ecg-stream"' in out.read_text()


def test_unknown_record_is_one_line_and_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "999", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "record '999' not found" in err
    assert DATA_ENV in err


def test_missing_data_directory_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    assert main(["analyze", "100", "--out-dir", str(tmp_path)]) == 2
    assert f"point {DATA_ENV}" in capsys.readouterr().err


def test_bad_speed_is_refused_before_streaming(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "100", "--data-dir", str(data_dir), "--speed", "fast"]) == 2
    assert "--speed 'fast' is not valid" in capsys.readouterr().err


def test_bad_lead_is_refused(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "100", "--data-dir", str(data_dir), "--lead", "V9"]) == 2
    assert "no lead 'V9'" in capsys.readouterr().err


def test_bad_jobs_is_refused(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "100", "--data-dir", str(data_dir), "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err
