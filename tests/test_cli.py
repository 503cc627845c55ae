from __future__ import annotations

import argparse
import ast
import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import wfdb

import ecg_stream
from ecg_stream import cli
from ecg_stream.cli import main
from ecg_stream.records import DATA_ENV
from tests.helpers import MqttBroker


def test_analyze_writes_one_row_per_beat(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "100", "--data-dir", str(data_dir), "--out-dir", str(tmp_path)]) == 0
    with (tmp_path / "100.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        *("sample", "time_s", "rr_ms", "label", "confidence"),
        *("p_N", "p_S", "p_V", "p_F", "p_Q"),
        *("sqi", "sqi_issue"),
    ]
    assert 2270 <= len(rows) - 1 <= 2280
    assert {row[3] for row in rows[1:]} <= {"N", "S", "V", "F", "Q"}
    assert all(abs(sum(map(float, row[5:10])) - 1) < 1e-3 for row in rows[1:])
    # signal quality: every beat of record 100 is usable
    assert all(0.0 <= float(row[10]) <= 1.0 and not row[11] for row in rows[1:])
    assert "x real time" in capsys.readouterr().out


def test_analyze_without_model_writes_detections_only(short_record: Path, tmp_path: Path) -> None:
    argv = ["analyze", str(short_record), "--out-dir", str(tmp_path / "out")]
    assert main([*argv, "--no-classify"]) == 0
    lines = (tmp_path / "out" / "short.csv").read_text().splitlines()
    assert lines[0] == "sample,time_s,rr_ms,sqi,sqi_issue"
    assert len(lines) > 10  # 10 s of record 100: about 12 beats


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


def test_evaluate_rhythm_prints_each_family_and_writes_json(
    short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rhythm.json"
    assert main(["evaluate", "--rhythm", str(short_record), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== af: (AFIB, (AFL" in printed
    assert "false af: 0.00 min on 1 record(s)" in printed
    assert set(json.loads(out.read_text())) == {"af", "vt", "svt", "bigeminy", "trigeminy", "vfl"}


def test_evaluate_classifier_writes_its_report_to_json_too(
    short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json F`` on every command that writes a report: the classifier's too."""
    out = tmp_path / "classification.json"
    argv = ["evaluate", "--classifier", str(short_record), "--out-dir", str(tmp_path / "figures")]
    assert main([*argv, "--json", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report == json.loads((tmp_path / "figures" / "classification.json").read_text())
    assert report["whole_record"]["gross"]["matched_beats"] >= 10


def test_evaluate_on_training_records_says_so_above_the_table(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--classifier", "119", "--out-dir", str(tmp_path)]
    assert main([*argv, "--data-dir", str(data_dir)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("note: the model was trained on 119: their figures are not a test")


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


# Bad input (issue 13): one line on stderr, exit status 2, never a traceback.


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"ecg-stream {command}: error: ")
    return err


@pytest.mark.parametrize(
    "argv", [["analyze", "--no-classify"], ["evaluate", "--detector"]], ids=["analyze", "evaluate"]
)
def test_truncated_signal_file_is_one_line_and_exit_2(
    short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    signal_file = short_record.with_suffix(".dat")
    signal_file.write_bytes(signal_file.read_bytes()[:1001])
    assert main([*argv, str(short_record), "--out-dir", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys, argv[0])
    assert f"{signal_file}: holds 1001 bytes" in err
    assert "the file is truncated" in err


def test_corrupt_annotations_stop_only_the_commands_that_need_them(
    short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    atr = short_record.with_suffix(".atr")
    atr.write_bytes(np.random.default_rng(13).bytes(4000))
    out = tmp_path / "out"
    assert main(["analyze", str(short_record), "--no-classify", "--out-dir", str(out)]) == 0
    assert (out / "short.csv").read_text().startswith("sample,time_s,rr_ms,sqi,sqi_issue\n")
    capsys.readouterr()
    assert main(["evaluate", "--detector", str(short_record)]) == 2
    assert f"{atr}: cannot read the WFDB annotations" in one_line_error(capsys, "evaluate")


@pytest.mark.mqtt
def test_replay_ignores_corrupt_annotations(short_record: Path, mqtt_broker: MqttBroker) -> None:
    short_record.with_suffix(".atr").write_bytes(np.random.default_rng(13).bytes(4000))
    url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
    argv = ["replay", str(short_record), "--broker", url, "--speed", "max", "--quiet"]
    assert main([*argv, "--topic-prefix", "cli-atr"]) == 0


@pytest.mark.parametrize("speed", ["0.001", "0", "-2", "20000", "1e400", "nan", "inf"])
def test_speed_outside_bounds_is_refused(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "100", "--speed", speed]) == 2
    err = one_line_error(capsys, "replay")
    assert f"--speed {speed!r} is not valid; use a positive factor from 0.01 to 10000" in err


@pytest.mark.parametrize(
    "argv",
    [["analyze", "100"], ["replay", "100"], ["evaluate", "--classifier", "100"]],
    ids=["analyze", "replay", "evaluate"],
)
def test_model_directory_is_refused(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run.onnx").write_bytes(b"")
    assert main([*argv, "--model", str(tmp_path)]) == 2
    err = one_line_error(capsys, argv[0])
    assert f"--model {tmp_path} is a directory; pass the .onnx file itself" in err
    assert f"--model {tmp_path / 'run.onnx'}" in err


def test_missing_model_is_refused_before_records_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "no-such-record", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx does not exist" in one_line_error(capsys, "replay")


def damage_signal_byte(stem: Path) -> None:
    data = bytearray(stem.with_suffix(".dat").read_bytes())
    data[1000] ^= 0xFF
    stem.with_suffix(".dat").write_bytes(bytes(data))


def damage_with_gap(stem: Path, first: int = 100, end: int = 110) -> None:
    """Samples ``first`` to ``end`` of lead 0 missing (WFDB's invalid-sample code)."""
    raw = wfdb.rdrecord(str(stem))
    signals = raw.p_signal.copy()
    signals[first:end, 0] = np.nan
    wfdb.wrsamp(
        stem.name,
        fs=raw.fs,
        units=raw.units,
        sig_name=raw.sig_name,
        p_signal=signals,
        fmt=["16", "16"],
        write_dir=str(stem.parent),
    )


def damage_header(record_line: str, units: str = "mV") -> Callable[[Path], None]:
    def damage(stem: Path) -> None:
        lines = stem.with_suffix(".hea").read_text().splitlines()
        signals = [line.replace("/mV", f"/{units}") for line in lines[1:]]
        stem.with_suffix(".hea").write_text("\n".join([record_line, *signals]) + "\n")

    return damage


BAD_FILES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "checksum": (damage_signal_byte, ".dat", "does not match its checksum in short.hea"),
    "rate-1hz": (damage_header("short 2 1 3600"), ".hea", "sampling rate 1 Hz is outside"),
    "length-lie": (damage_header("short 2 360 3500"), ".dat", "the file is longer or the head"),
    "units": (damage_header("short 2 360 3600", "mmHg"), ".hea", "'mmHg', not a voltage"),
}


def command_lines(stem: Path, out: Path, noise_dir: Path) -> dict[str, list[str]]:
    record, noise = str(stem), ["--data-dir", str(noise_dir), "--noise", "em", "--snr", "12"]
    return {
        "analyze": ["analyze", record, "--out-dir", str(out)],
        "analyze-no-classify": ["analyze", record, "--no-classify", "--out-dir", str(out)],
        "evaluate-detector": ["evaluate", "--detector", record],
        "evaluate-classifier": ["evaluate", "--classifier", record, "--out-dir", str(out)],
        "replay": ["replay", record, "--speed", "max", "--quiet", "--broker", "mqtt://127.0.0.1:9"],
        "dataset": ["dataset", str(out / "beats.npz"), record],
        "stress": ["stress", record, *noise, "--json", str(out / "stress.json")],
    }


@pytest.mark.parametrize("damage", list(BAD_FILES))
@pytest.mark.parametrize(
    "command", list(command_lines(Path("x"), Path("o"), Path("n"))), ids=lambda name: name
)
def test_every_command_refuses_a_bad_file_in_one_line(
    short_record: Path,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    command: str,
) -> None:
    """Issue 13: each class of damaged file, each command that reads records: exit 2, one line
    naming the file and the fault, nothing written, no traceback."""
    noise_dir = data_dir.parent / "nstdb-noise"
    if command == "stress" and not (noise_dir / "em.hea").is_file():
        pytest.skip(f"the noise record em is not in {noise_dir}")
    make_damage, suffix, fault = BAD_FILES[damage]
    make_damage(short_record)
    out = tmp_path / "out"
    argv = command_lines(short_record, out, noise_dir)[command]
    assert main(argv) == 2
    err = one_line_error(capsys, argv[0])
    assert f"{short_record}{suffix}: " in err
    assert fault in err
    assert not out.exists() or not any(out.iterdir())


def test_a_record_with_missing_samples_is_analyzed_with_its_gap_reported(
    short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing samples are a gap, as live: reported, and the chain starts afresh after it (no
    beat in it, no RR interval across it)."""
    damage_with_gap(short_record, 1800, 1900)
    assert main(["analyze", str(short_record), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "100 missing samples in 1 stretch(es), the first at sample 1800" in out
    rows = [row.split(",") for row in (tmp_path / "short.csv").read_text().splitlines()[1:]]
    samples = [int(row[0]) for row in rows]
    assert not [sample for sample in samples if 1800 <= sample < 1900]
    first_after = next(row for row in rows if int(row[0]) >= 1900)
    assert first_after[2] == ""  # its RR would span the gap: none
    assert len(rows) >= 10


def test_a_batch_goes_on_past_a_record_it_cannot_read(
    short_record: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_signal_byte(short_record)
    argv = ["analyze", str(short_record), "100", "--no-classify", "--out-dir", str(tmp_path)]
    assert main([*argv, "--data-dir", str(data_dir)]) == 2
    captured = capsys.readouterr()
    assert (tmp_path / "100.csv").is_file()  # the good record after the bad one
    assert not (tmp_path / "short.csv").exists()
    assert "short: skipped" in captured.out
    assert captured.err.count("\n") == 1
    assert "short.dat: lead 'MLII' does not match its checksum" in captured.err


def test_card_is_a_subcommand_and_a_missing_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", "--run", str(tmp_path / "run"), "--out-dir", str(tmp_path)]) == 2
    err = one_line_error(capsys, "card")
    assert f"{tmp_path / 'run' / 'cv.json'} does not exist; ecg-stream train" in err
    with pytest.raises(SystemExit):
        main(["card", "--run", str(tmp_path), "--compare", "no-label"])
    assert "give LABEL=RUN_DIR" in capsys.readouterr().err


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every --option of a parser and of its subcommands."""
    found = {s for action in parser._actions for s in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= option_strings(subparser)
    return found


def test_messages_name_only_options_that_exist() -> None:
    """Every ``--flag`` in a string of the package is an option of some command (issue 12)."""
    package = Path(ecg_stream.__file__).parent
    named: dict[str, str] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    named.setdefault(flag, path.name)
    benchmark_options = {"--models"}  # benchmarks/classifier_cost.py, quoted by the model card
    known = option_strings(cli._build_parser()) | benchmark_options
    unknown = {flag: where for flag, where in named.items() if flag not in known}
    assert not unknown, unknown


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["analyze", "100", "--bradycardia-bpm", "130"], "--bradycardia-bpm 130"),
        (["replay", "100", "--pause-s", "5"], "--pause-s 5 and --asystole-s 4"),
        (["serve", "--asystole-s", "-1"], "--asystole-s -1"),
    ],
)
def test_a_rhythm_limit_out_of_range_is_one_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert named in err


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ecg-stream {cli.package_version()}"


def test_every_help_shows_each_default() -> None:
    """An option with a default says it in --help (e.g. analyze --out-dir out)."""
    parser = cli._build_parser()
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    for name, command in subparsers.choices.items():
        text = " ".join(command.format_help().split())
        for action in command._actions:
            silent = action.default in (None, False, argparse.SUPPRESS) or action.default == []
            if not action.option_strings or silent or action.help is None:
                continue
            said = "default" in action.help or f"(default: {action.default})" in text
            assert said, (name, action.option_strings)
    assert "(default: out)" in " ".join(subparsers.choices["analyze"].format_help().split())


def test_the_licence_file_matches_the_package_metadata() -> None:
    root = Path(__file__).resolve().parents[1]
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (root / "pyproject.toml").read_text()
