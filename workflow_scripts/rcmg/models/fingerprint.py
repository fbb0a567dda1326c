"""Fingerprints of model weights: sha256 over a fixed set of tensors, read from the files.

One definition, used by the evaluation judge (is the judge the generator's own text
tower?) and by the style spaces (was the bank embedded with the weights a model
conditions on?). The digest covers the tensors whose names start with the given
prefixes, in sorted name order: each name's bytes, then its values cast to float32.
Read from the folder's ``*.safetensors`` (``pytorch_model*.bin`` through
``torch.load(weights_only=True)`` when a folder has no safetensors) without building a
model, so it does not depend on the dtype or device a job loads the model in: a space
embedded in fp16 on a GPU and a generate job in fp32 on a CPU agree when their files do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# The CLAP text tower (AudioLDM1's whole text_encoder is this).
TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")
# Both towers of a ClapModel: a style space is its audio tower (bank vectors) and its
# text tower (queries) together.
CLAP_SPACE_PREFIXES = (*TEXT_TOWER_PREFIXES, "audio_model.", "audio_projection.")


def local_folder(
    model_id: str, component: str | None = None, revision: str | None = None
) -> Path | None:
    """A local folder for ``model_id`` (a folder, or the hub cache offline), or None.
    ``model_id`` may carry its revision as ``ID@REVISION`` (the CLIs' spelling)."""
    from rcmg.models.hf_loading import split_revision

    model_id, pinned = split_revision(str(model_id))
    revision = revision or pinned
    path = Path(str(model_id)).expanduser()
    if path.is_dir():
        return path / component if component else path
    try:
        from huggingface_hub import snapshot_download

        pattern = f"{component}/*" if component else "*"
        folder = Path(
            snapshot_download(
                str(model_id),
                revision=revision,
                allow_patterns=[pattern],
                local_files_only=True,
            )
        )
    except Exception:  # noqa: BLE001 - absent from the cache is an answer, not an error
        return None
    return folder / component if component else folder


def _weight_files(folder: Path) -> list[tuple[str, Path]]:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return [("safetensors", f) for f in files]
    return [("torch", f) for f in sorted(folder.glob("pytorch_model*.bin"))]


def _tensors(kind: str, file: Path, prefixes: tuple[str, ...]) -> dict:
    if kind == "safetensors":
        from safetensors.numpy import load_file

        return {k: v for k, v in load_file(file).items() if k.startswith(prefixes)}
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) checkpoint cannot be memory-mapped
        state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() for k, v in state.items() if str(k).startswith(prefixes)}


def weights_fingerprint(folder: Path | None, prefixes: tuple[str, ...]) -> dict:
    """``{sha256, tensors, reason}`` of the tensors under ``prefixes`` in ``folder``.

    ``sha256`` is None (and ``reason`` says why) when the folder or the tensors are absent.
    """
    if folder is None or not Path(folder).is_dir():
        return {"sha256": None, "tensors": 0, "reason": f"no local folder {folder}"}
    tensors = {}
    for kind, file in _weight_files(Path(folder)):
        tensors.update(_tensors(kind, file, prefixes))
    if not tensors:
        return {
            "sha256": None,
            "tensors": 0,
            "reason": f"no tensors named {', '.join(p + '*' for p in prefixes)} in {folder}",
        }
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].astype("float32").tobytes())
    return {"sha256": digest.hexdigest(), "tensors": len(tensors), "reason": ""}


def clap_space_fingerprint(model_id: str, subfolder: str = "", revision: str | None = None) -> dict:
    """The fingerprint of a CLAP space (both towers) of ``model_id[/subfolder]``."""
    folder = local_folder(model_id, subfolder or None, revision)
    return {
        **weights_fingerprint(folder, CLAP_SPACE_PREFIXES),
        "model": str(model_id),
        "subfolder": subfolder,
        "revision": revision,
    }
