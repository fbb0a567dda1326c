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

from pathlib import Path

# One fingerprint definition (rcmg.models.fingerprint), shared with the style spaces.
from rcmg.models.fingerprint import TEXT_TOWER_PREFIXES, local_folder, weights_fingerprint

CONDITIONING_COMPONENTS = ("text_encoder",)  # AudioLDM 1 and 2: the CLAP text tower
__all__ = ["TEXT_TOWER_PREFIXES", "judge_record", "local_folder", "text_tower_fingerprint"]


def text_tower_fingerprint(folder: Path | None) -> dict:
    """{sha256, tensors} of the CLAP text tower in ``folder``'s safetensors, or {reason}."""
    return weights_fingerprint(folder, TEXT_TOWER_PREFIXES)


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
