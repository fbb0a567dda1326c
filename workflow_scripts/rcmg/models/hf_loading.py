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


def load_error_message(name: str, exc: BaseException) -> str:
    """One message for a failed load: which id/folder, why, and how to make it available."""
    source = str(name)
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
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
    source = resolve_model_source(name_or_path)
    try:
        return loader(source, **kwargs)
    except _load_failure_types() as exc:
        raise ModelLoadError(load_error_message(source, exc)) from exc
