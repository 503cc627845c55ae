"""JSON documents that cross a module or a process, written and read in one call each.

Every document (training summaries, evaluation reports, the model card) has one schema, a
``msgspec.Struct`` owned by the module that writes it; this module only turns them into
indented JSON text and back. Reading is strict: a field of the wrong type is refused with
the file and the field named. NaN (an undefined ratio) is written as ``null``; files written
before these schemas, which may spell it ``NaN``, still read.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import msgspec

from ecg_stream.errors import ConfigError

T = TypeVar("T")


def encode_json(document: object) -> str:
    """``document`` (a Struct, or lists and dicts of them) as indented JSON text, one newline."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


def write_json(document: object, path: Path) -> None:
    """Write ``document`` to ``path`` as indented JSON (see :func:`encode_json`), atomically."""
    write_atomically(path, encode_json(document))


def check_output_file(path: Path) -> None:
    """Refuse an output path that names something other than a regular file.

    Raises:
        ConfigError: ``path`` is a directory, a device, a pipe or a socket.
    """
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        msg = f"{path} is {kind}; name a file to write"
        raise ConfigError(msg)


def make_output_dir(path: Path) -> Path:
    """Make the output directory ``path`` (and its parents) unless it exists; return it.

    Raises:
        ConfigError: It cannot be made (a read-only place, a file in the way), with the reason.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
        msg = f"cannot make the output directory {path} ({reason}); choose a writable place"
        raise ConfigError(msg) from None
    return path


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` whole once the block ends without error.

    Written under a name of its own in the same directory, then renamed: a reader sees the old
    file or the new, never part of one; a failed write leaves ``path`` as it was. The parent
    directory is made if missing.

    Raises:
        ConfigError: ``path`` is not a regular file, or cannot be written (a read-only
            directory, a full disk, a file size limit), with the reason.
    """
    check_output_file(path)
    make_output_dir(path.parent)
    partial: Path | None = None
    try:
        descriptor, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
        )
        partial = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        partial.chmod(0o666 & ~umask)  # as open() would make it; mkstemp makes it private
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
        partial.replace(path)
    except OSError as error:
        if partial is not None:
            partial.unlink(missing_ok=True)
        msg = f"cannot write {path} ({error.strerror or error}); choose a writable place with room"
        raise ConfigError(msg) from None
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` whole (text as UTF-8, newlines as given).

    See :func:`atomic_output`.
    """
    with atomic_output(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def written_aside(*paths: Path) -> Iterator[Path]:
    """A scratch directory for a writer that names its files itself (wfdb, Keras).

    The block writes ``<scratch>/<path.name>`` for each of ``paths``; once it ends without
    error, each replaces its path whole (:func:`write_atomically`). The scratch is removed.

    Raises:
        ConfigError: A path cannot be written (see :func:`atomic_output`).
    """
    with tempfile.TemporaryDirectory() as scratch:
        yield Path(scratch)
        for path in paths:
            write_atomically(path, (Path(scratch) / path.name).read_bytes())


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
