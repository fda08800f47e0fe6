"""Atomic file helpers: a crash never leaves a half-written file or folder behind."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

PathLike = str | os.PathLike[str]


def _temp_sibling_prefix(final: Path) -> str:
    """Prefix of temporary siblings of ``final``: hidden, and named after it for debugging."""
    return f".{final.name}.tmp-{os.getpid()}-"


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary sibling file and ``os.replace``."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=_temp_sibling_prefix(final))
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return final


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temporary sibling of ``path``; when the block ends it becomes ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=_temp_sibling_prefix(final))
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


@contextlib.contextmanager
def atomic_dir(final_path: PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; when the block ends it becomes ``final_path``.

    If the block raises, the temporary folder is removed and ``final_path`` is untouched.
    An existing ``final_path`` is either replaced (``replace=True``; readers see the old or the new
    folder, never a mix: on Linux the two are swapped atomically, elsewhere the old one is renamed
    aside first) or kept (``replace=False``: for caches, where a writer that got there first is as good).
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=_temp_sibling_prefix(final)))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
    try:
        yield tmp
        _move_into_place(tmp, final, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only still there after an error or a lost race


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    libc = _libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _move_into_place(tmp: Path, final: Path, replace: bool, attempts: int = 5) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (see ``atomic_dir``)."""
    asides: list[Path] = []
    try:
        for _ in range(attempts):
            try:
                os.replace(tmp, final)  # atomic; fails if ``final`` is a non-empty folder
                return
            except OSError:
                if not final.exists():
                    raise
            if not replace:
                return
            if _exchange(tmp, final):  # the old version is now at ``tmp`` and gets deleted
                return
            # No atomic swap here: move the old version aside, then retry (``final`` briefly absent).
            aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            asides.append(aside)
            with contextlib.suppress(FileNotFoundError):  # another writer may have moved it already
                os.replace(final, aside)  # onto an empty folder: allowed, and atomic
        raise OSError(f"could not move {tmp} to {final}: other writers kept replacing it")
    finally:
        for aside in asides:
            shutil.rmtree(aside, ignore_errors=True)


def read_json_object(path: PathLike, error: type[Exception] = ValueError, what: str = "a JSON object") -> dict:
    """The JSON object in ``path``; bad UTF-8, bad JSON or another JSON type raise ``error`` naming the file
    (and the line and column of a syntax error)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected {what}, got {type(value).__name__}")
    return value


def append_jsonl(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line and flush at once (for metrics logs read while running)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with target.open("a", encoding="utf-8", buffering=1) as handle:
        handle.write(line)
        handle.flush()


def truncate_jsonl(path: PathLike, last_step: int) -> None:
    """Keep only the records of ``path`` with ``step <= last_step`` (a resumed run redoes the rest)."""
    log = Path(path)
    lines = log.read_text().splitlines() if log.exists() else []
    kept = [line + "\n" for line in lines if line.strip() and json.loads(line)["step"] <= last_step]
    atomic_write_text(log, "".join(kept))
