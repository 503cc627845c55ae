"""Output files: written whole or not at all, never over a device or a directory, and every
failure one line with exit status 2 that leaves what was there before (issue 22, "Files")."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ecg_stream.cli import main
from ecg_stream.documents import atomic_output, write_atomically
from ecg_stream.errors import ConfigError
from ecg_stream.training import export as export_onnx

ROOT = Path(__file__).resolve().parents[1]


def ecg_stream(*args: str, file_size_limit: int | None = None) -> tuple[int, str]:
    """Run a command to its end (optionally under ``ulimit -f``); exit status and stderr."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    done = subprocess.run(
        [sys.executable, "-m", "ecg_stream.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
        check=False,
        preexec_fn=limit,  # a resource limit, set in the child only
    )
    return done.returncode, done.stderr


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_atomically(path, "old\n")

    def write_half() -> None:
        with atomic_output(path) as handle:
            handle.write(b"half of the new")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_half()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("target", ["/dev/null", "directory"])
def test_export_refuses_devices_and_directories_before_converting(
    target: str, tmp_path: Path
) -> None:
    path = tmp_path if target == "directory" else Path(target)
    with pytest.raises(ConfigError, match=r"is a directory|not a regular file"):
        export_onnx.export_model(tmp_path / "no-run", path)
    assert Path("/dev/null").is_char_device()


def test_analyze_under_a_file_size_limit_is_one_line_and_keeps_the_good_csv(
    data_dir: Path, tmp_path: Path
) -> None:
    """``ulimit -f``: the CSV that no longer fits is refused whole; the earlier one stays."""
    out = tmp_path / "out"
    assert main(["analyze", "100", "--out-dir", str(out), "--data-dir", str(data_dir)]) == 0
    good = (out / "100.csv").read_bytes()
    status, stderr = ecg_stream(
        "analyze", "100", "--out-dir", str(out), "--data-dir", str(data_dir),
        file_size_limit=50_000,
    )  # fmt: skip
    assert status == 2
    assert "cannot write" in stderr
    assert "Traceback" not in stderr
    assert (out / "100.csv").read_bytes() == good
    assert not list(out.glob(".*partial"))


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "100", "--out-dir", "/proc/ecg-stream-test"],
        ["evaluate", "--detector", "100", "--json", "/proc/ecg-stream-test/x.json"],
        ["dataset", "/proc/ecg-stream-test.npz", "100"],
    ],
)
def test_an_output_place_that_cannot_be_written_is_one_line(
    args: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*args, "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "cannot " in err
    assert len(err.strip().splitlines()) == 1


def test_train_refuses_a_directory_that_holds_no_run_of_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "mine"
    users.mkdir()
    (users / "cv.json").write_text("the user's own file\n")
    assert main(["train", str(users), "--cv", "5", "--records", "DS1"]) == 2
    assert "holds files but no ecg-stream run" in capsys.readouterr().err
    assert (users / "cv.json").read_text() == "the user's own file\n"
    assert sorted(p.name for p in users.iterdir()) == ["cv.json"]
