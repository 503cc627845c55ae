"""JSON documents that cross a module or a process, written and read in one call each.

Every document (training summaries, evaluation reports, the model card) has one schema, a
``msgspec.Struct`` owned by the module that writes it; this module only turns them into
indented JSON text and back. Reading is strict: a field of the wrong type is refused with
the file and the field named. NaN (an undefined ratio) is written as ``null``; files written
before these schemas, which may spell it ``NaN``, still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import msgspec

from ecg_stream.errors import ConfigError

T = TypeVar("T")


def encode_json(document: object) -> str:
    """``document`` (a Struct, or lists and dicts of them) as indented JSON text, one newline."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


def write_json(document: object, path: Path) -> None:
    """Write ``document`` to ``path`` as indented JSON (see :func:`encode_json`)."""
    path.write_text(encode_json(document))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole: a reader sees the old file or the new, never part.

    The parent directory is made if missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, newline="")
    partial.replace(path)


def read_json(path: Path, schema: type[T], *, made_by: str) -> T:
    """Read ``path`` into ``schema``, strictly.

    Args:
        path: The JSON file.
        schema: The document's type, e.g. ``CvSummary``.
        made_by: What writes the file, for the messages, e.g. ``ecg-stream train --cv``.

    Raises:
        ConfigError: The file does not exist, is not JSON or does not follow the schema.
    """
    if not path.is_file():
        msg = f"{path} does not exist; {made_by} writes it"
        raise ConfigError(msg)
    data = path.read_bytes()
    try:
        try:
            return msgspec.json.decode(data, type=schema)
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:
            # written by json.dumps before the schemas, which spells an undefined ratio NaN
            return msgspec.convert(json.loads(data), type=schema)
    except (msgspec.ValidationError, ValueError) as error:
        msg = f"{path}: {error}; write it again with {made_by}"
        raise ConfigError(msg) from error
