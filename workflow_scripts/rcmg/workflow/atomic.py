"""Atomic outputs: write to a temporary sibling, rename into place when complete.

A killed job never leaves a file (or directory) that looks finished.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; a finished output gets the permissions a plain open() would give,
    # so collaborators on shared storage can read it.
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _tmp_dir_beside(path: Path) -> Path:
    """A fresh temporary folder next to ``path`` (stale ones of killed writers removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partdir", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete temporaries a killed writer of ``path`` left behind (``.NAME.*.part*``).

    Snakemake never runs two jobs for the same output, so any such sibling is stale.
    """
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.part*"))
    for leftover in stale:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    ``suffix`` keeps an extension on the temporary name for writers that infer the
    format from it (soundfile, matplotlib, numpy's ``.npy``). On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.parent.is_dir():
        remove_stale_parts(path)
    tmp = _tmp_sibling(path, suffix if suffix is not None else path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it onto ``path`` on success.

    An existing ``path`` is replaced only after the new contents are complete.
    """
    path = Path(path)
    tmp = _tmp_dir_beside(path)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_members(
    path: str | os.PathLike, last: str | None = None, owned: tuple[str, ...] = ()
) -> Iterator[Path]:
    """Stage one step's files for folder ``path`` in a temporary sibling; publish on success.

    For a folder that several steps fill (a run folder: ``generate`` writes the audio and
    ``run_config.json``, ``evaluate`` the metrics and ``report.html``). On success each
    staged top-level entry replaces its namesake in ``path``; ``last`` (the step's
    completion marker) is removed first and published last, so a kill mid-publish never
    leaves an old marker beside new files; names in ``owned`` that were not staged this
    time are removed. Entries of other steps stay. On failure nothing in ``path`` changes
    and ``path`` is not created.
    """
    path = Path(path)
    tmp = _tmp_dir_beside(path)
    try:
        yield tmp
        path.mkdir(exist_ok=True)
        staged = os.listdir(tmp)
        if last:
            _remove(path / last)
        for name in owned:
            if name not in staged:
                _remove(path / name)
        for name in sorted(staged, key=lambda name: name == last):
            if (path / name).is_dir():
                _remove(path / name)
            os.replace(tmp / name, path / name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
