from __future__ import annotations

import inspect

import ecg_stream


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {
        name
        for name, value in vars(ecg_stream).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(ecg_stream.__all__) == public | {"__version__"}


def test_every_error_derives_from_the_base() -> None:
    errors = [
        v for v in vars(ecg_stream).values() if inspect.isclass(v) and issubclass(v, Exception)
    ]
    assert all(issubclass(error, ecg_stream.EcgStreamError) for error in errors)
