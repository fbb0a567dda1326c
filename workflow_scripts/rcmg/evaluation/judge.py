"""The evaluation judge (evaluation.clap) and whether it shares weights with a generator.

A judge that is the generator's own conditioning text tower scores the generator's
prompt following with the very encoder the generator was trained to satisfy. The
fingerprint of a CLAP text tower is the sha256 over its ``text_model.*`` and
``text_projection.*`` tensors (sorted names, values cast to float32), read from the
safetensors files without building a model: the judge's (a ClapModel folder) and each
generator's conditioning text encoder (``text_encoder/`` of AudioLDM 1 and 2) are
compared, and equal weights are flagged in every report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")
CONDITIONING_COMPONENTS = ("text_encoder",)  # AudioLDM 1 and 2: the CLAP text tower


def local_folder(model_id: str, component: str | None = None) -> Path | None:
    """A local folder for ``model_id`` (a folder, or the hub cache offline), or None."""
    from rcmg.models.hf_loading import split_revision

    model_id, revision = split_revision(str(model_id))
    path = Path(model_id)
    if path.is_dir():
        return path / component if component else path
    try:
        from huggingface_hub import snapshot_download

        pattern = f"{component}/*" if component else "*.safetensors"
        folder = Path(
            snapshot_download(
                model_id, revision=revision, allow_patterns=[pattern], local_files_only=True
            )
        )
    except Exception:  # noqa: BLE001 - absent from the cache is an answer, not an error
        return None
    return folder / component if component else folder


def text_tower_fingerprint(folder: Path | None) -> dict:
    """{sha256, tensors} of the CLAP text tower in ``folder``'s safetensors, or {reason}."""
    if folder is None or not Path(folder).is_dir():
        return {"sha256": None, "tensors": 0, "reason": f"no local folder {folder}"}
    from safetensors.numpy import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    tensors = {}
    for file in files:
        for name, value in load_file(file).items():
            if name.startswith(TEXT_TOWER_PREFIXES):
                tensors[name] = value
    if not tensors:
        return {"sha256": None, "tensors": 0, "reason": f"no CLAP text tower in {folder}"}
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].astype("float32").tobytes())
    return {"sha256": digest.hexdigest(), "tensors": len(tensors), "reason": ""}


def judge_record(judge_model: str, generator_model_id: str | None) -> dict:
    """The judge, its text-tower fingerprint and the generator's, with the equality flag."""
    judge = text_tower_fingerprint(local_folder(judge_model))
    generator = {}
    if generator_model_id:
        for component in CONDITIONING_COMPONENTS:
            generator[component] = text_tower_fingerprint(
                local_folder(generator_model_id, component)
            )
    shared = [
        component
        for component, print_ in generator.items()
        if print_["sha256"] and print_["sha256"] == judge["sha256"]
    ]
    return {
        "model": str(judge_model),
        "text_tower_sha256": judge["sha256"],
        "reason": judge["reason"],
        "generator_model": generator_model_id,
        "generator_text_towers": generator,
        "shares_weights_with": shared,
    }
