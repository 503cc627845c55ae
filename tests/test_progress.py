"""Progress bars only on a terminal: piped output stays the commands' lines."""

from __future__ import annotations

import io
import sys

import pytest

from ecg_stream.progress import progress


def test_no_bar_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(iter("abc"), 3, "analyze")) == ["a", "b", "c"]
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(range(4), 4, "evaluate --rhythm")) == [0, 1, 2, 3]
    assert "evaluate --rhythm" in terminal.getvalue()
    assert "/4" in terminal.getvalue()  # the bar of 4 records
