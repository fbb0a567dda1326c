"""One way to name and load a Hugging Face model: a hub id or a local folder.

Every step that loads a model goes through :func:`resolve_model_source` and
:func:`load_pretrained`, so an offline machine or a missing model gives one clear
message instead of a long stack of hub errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rcmg.workflow.cli import InputError

T = TypeVar("T")


class ModelLoadError(InputError, RuntimeError):
    """A model could not be loaded; the message says which one and how to fix it."""


REVISION_SEP = "@"
# A local folder's "resolved revision": sha256 over every file's relative path and bytes;
# a file over this size contributes its size and first/last LARGE_FILE_EDGE bytes.
LARGE_FILE_BYTES = 64 * 1024**2
LARGE_FILE_EDGE = 4 * 1024**2
FOLDER_DIGEST = (
    "sha256 over each file's relative path and bytes (files over 64 MiB: size and first/last 4 MiB)"
)


def model_reference(model_id: str, revision: str | None = None) -> str:
    """How the rules hand a model to a CLI: ``ID`` or ``ID@REVISION`` (a hub commit SHA;
    config ``models.<m>.revision``, ``clap.revision``, ``evaluation.clap.revision``)."""
    return f"{model_id}{REVISION_SEP}{revision}" if revision else str(model_id)


def split_revision(reference: str) -> tuple[str, str | None]:
    """``ID@REVISION`` -> (ID, REVISION); a plain id or an existing folder -> (it, None)."""
    text = str(reference).strip()
    if Path(os.path.expanduser(text)).is_dir():
        return text, None
    head, sep, tail = text.rpartition(REVISION_SEP)
    if sep and head and tail and "/" not in tail:
        return head, tail
    return text, None


def resolve_model_source(name_or_path: str) -> str:
    """An existing local folder as its absolute path; anything else as the hub id given.

    A string that looks like a path (starts with ``/``, ``./``, ``../`` or ``~``) but
    is not an existing folder raises, rather than being sent to the hub as an id.
    """
    text = str(name_or_path).strip()
    if not text:
        raise ModelLoadError(
            "empty model name: give a hub id (e.g. laion/clap-htsat-unfused) or a local folder"
        )
    expanded = Path(os.path.expanduser(text))
    if expanded.is_dir():
        return str(expanded.resolve())
    if text.startswith(("/", "./", "../", "~")) or expanded.is_file():
        raise ModelLoadError(
            f"model folder {text!r} does not exist (or is not a folder); give an existing "
            "folder written by save_pretrained, or a hub id"
        )
    return text


GATED_MARKERS = ("gated", "401 client error")


def is_gated_refusal(exc: BaseException) -> bool:
    """The hub refused a gated (licence-accepting) or private repository: a
    ``GatedRepoError``, an HTTP 401/403, or a loader's error wrapping one (anywhere in
    the exception's cause chain)."""
    try:
        from huggingface_hub.errors import GatedRepoError
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        GatedRepoError = ()  # noqa: N806
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if GatedRepoError and isinstance(exc, GatedRepoError):
            return True
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return True
        if any(m in str(exc).lower() for m in GATED_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def gated_message(source: str) -> str:
    """The fix for a gated model: accept its licence on the model page and log in."""
    return (
        f"model {source!r} is gated on the Hugging Face hub and this machine is not allowed "
        f"to download it. Accept the licence on https://huggingface.co/{source} (logged in), "
        "then authenticate here: `huggingface-cli login` or set HF_TOKEN to a read token "
        "of that account (or pre-fetch it where you can log in with `huggingface-cli "
        f"download {source}` and copy HF_HOME)."
    )


def load_error_message(name: str, exc: BaseException) -> str:
    """One message for a failed load: which id/folder, why, and how to make it available."""
    source = str(name)
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if not Path(os.path.expanduser(source)).is_dir() and is_gated_refusal(exc):
        return f"{gated_message(source)} ({reason})"
    if Path(os.path.expanduser(source)).is_dir():
        return (
            f"could not load the model in local folder {source!r} ({reason}). The folder must "
            "hold a complete save_pretrained output (config/model_index.json and weights)."
        )
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    return (
        f"could not load model {source!r} ({reason}). "
        f"It must already be in the Hugging Face cache under HF_HOME={hf_home}"
        f"{' (HF_HUB_OFFLINE is set, so nothing is downloaded)' if offline else ''}, "
        "or be given as a local folder path. Pre-fetch it on a machine with internet with "
        f"`huggingface-cli download {source}` (then copy HF_HOME), or "
        "save it with save_pretrained into a folder and pass that folder."
    )


def _load_failure_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub_errors

        types.append(hub_errors.HfHubHTTPError)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        pass
    return tuple(types)


def load_pretrained(loader: Callable[..., T], name_or_path: str, **kwargs) -> T:
    """``loader(source, **kwargs)`` with the source resolved and failures explained.

    ``loader`` is a ``from_pretrained`` bound method (``ClapModel.from_pretrained``,
    ``AudioLDM2Pipeline.from_pretrained``, ...). Offline/missing-model errors are
    re-raised as :class:`ModelLoadError` with :func:`load_error_message`.
    """
    model_id, revision = split_revision(name_or_path)
    source = resolve_model_source(model_id)
    if revision:
        if Path(source).is_dir():
            raise ModelLoadError(
                f"{name_or_path!r}: a revision pins a hub snapshot, but {model_id!r} is a local "
                "folder; drop the revision (config *.revision) or give the hub id"
            )
        kwargs.setdefault("revision", revision)
    try:
        return loader(source, **kwargs)
    except _load_failure_types() as exc:
        raise ModelLoadError(load_error_message(source, exc)) from exc


def folder_digest(folder: Path) -> str:
    """:data:`FOLDER_DIGEST` of ``folder`` (hex)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size <= LARGE_FILE_BYTES:
                digest.update(fh.read())
            else:
                digest.update(str(size).encode() + fh.read(LARGE_FILE_EDGE))
                fh.seek(size - LARGE_FILE_EDGE)
                digest.update(fh.read(LARGE_FILE_EDGE))
    return digest.hexdigest()


def resolved_revision(reference: str, cache_dir: str | Path | None = None) -> dict:
    """What ``reference`` (``ID`` or ``ID@REVISION``) loads, for run_config / summary.json.

    A local folder: ``resolved`` "local" with its :func:`folder_digest`. A hub id: the
    commit of the snapshot the (offline) Hugging Face cache resolves it to, read from the
    snapshot path (``.../snapshots/<commit>``); ``pinned`` says whether a revision was
    requested and matches. Nothing is downloaded.
    """
    model_id, revision = split_revision(reference)
    record = {"model": str(reference), "id": model_id, "requested_revision": revision}
    local = Path(os.path.expanduser(model_id))
    if local.is_dir():
        return {
            **record,
            "kind": "local",
            "resolved_revision": "local",
            "content_sha256": folder_digest(local),
            "digest": FOLDER_DIGEST,
        }
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                model_id, revision=revision, local_files_only=True, cache_dir=cache_dir
            )
        )
    except Exception as exc:  # noqa: BLE001 - not in the cache is recorded, not fatal
        return {
            **record,
            "kind": "hub",
            "resolved_revision": None,
            "reason": f"{type(exc).__name__}: {str(exc).strip()[:200]}",
        }
    commit = folder.name
    return {
        **record,
        "kind": "hub",
        "resolved_revision": commit,
        "pinned": bool(revision) and commit.startswith(str(revision)),
        "snapshot": str(folder),
    }


def revision_records(models: dict[str, str | None]) -> dict:
    """{role: :func:`resolved_revision`} for the models a step used (None: not used)."""
    return {role: resolved_revision(ref) for role, ref in models.items() if ref}
