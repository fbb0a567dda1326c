"""The original research scripts' command lines, accepted by the generate/train CLIs.

The original scripts (see the project README's table) spelled flags with underscores
(``--model_id``, ``--alpha_style``, ...) and inferred the model family and the
condition from the script's name (``exp1_audioldm2_prompt.py``,
``aldm1_retrieval_infer.py``, ...). Here the spellings are aliases of the CLIs' own
flags, and ONE flag, ``--original-script NAME``, says what the script name said.

``exp2_audioldm*_retrieval_augment.py`` is read as the ``prompt_aug`` condition
(retrieved tags appended to the prompt text); that is our reading of the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rcmg.workflow.cli import InputError

# The CLAP the original scripts used for the bank and the text queries.
ORIGINAL_CLAP = "laion/clap-htsat-unfused"


@dataclass(frozen=True)
class OriginalScript:
    family: str
    condition_type: str


ORIGINAL_SCRIPTS = {
    "exp1_audioldm1_prompt": OriginalScript("audioldm1", "prompt"),
    "exp1_audioldm2_prompt": OriginalScript("audioldm2", "prompt"),
    "aldm1_retrieval_infer": OriginalScript("audioldm1", "retrieval"),
    "aldm2_retrieval_infer": OriginalScript("audioldm2", "retrieval"),
    "exp2_audioldm1_retrieval_augment": OriginalScript("audioldm1", "prompt_aug"),
    "exp2_audioldm2_retrieval_augment": OriginalScript("audioldm2", "prompt_aug"),
}

# generate.py: original spelling -> the CLI's own flag (same value, same meaning).
GENERATE_ALIASES = {
    "--model-id": "--model_id",
    "--prompts": "--prompts_file",
    "--out-dir": "--out_dir",
    "--bank": "--style_bank",
    "--adapter-checkpoint": "--projector",
    "--blend": "--blend_mode",
    "--alpha": "--alpha_style",
    "--cond-mix": "--cond_mix",
    "--cond-mix-beta": "--cond_mix_beta",
    "--style-topk": "--style_topk",
    "--style-temp": "--style_temp",
    "--model-key": "--model_key",
    "--bank-mapping": "--bank_mapping",
    "--clap-model": "--clap_model",
}
TRAIN_ALIASES = {
    "--model-id": "--model_id",
    "--prompts": "--prompts_file",
    "--out-dir": "--out_dir",
    "--bank": "--style_bank",
    "--style-topk": "--style_topk",
    "--style-temp": "--style_temp",
    "--weight-decay": "--weight_decay",
    "--model-key": "--model_key",
    "--bank-mapping": "--bank_mapping",
    "--clap-model": "--clap_model",
}


def flags(name: str, aliases: dict[str, str]) -> list[str]:
    """``[name]`` plus its original spelling, for ``parser.add_argument(*flags(...))``."""
    return [name, aliases[name]] if name in aliases else [name]


def script_name(value: str) -> str:
    """``scripts/aldm2_retrieval_infer.py`` -> ``aldm2_retrieval_infer`` (checked)."""
    name = Path(str(value)).stem
    if name not in ORIGINAL_SCRIPTS:
        raise InputError(
            f"--original-script {value!r} is not one of the original scripts: "
            f"{', '.join(ORIGINAL_SCRIPTS)}"
        )
    return name


def infer_family(model_id: str) -> str | None:
    """The model family of a model: a local folder's model_index.json, or the hub id."""
    index = Path(str(model_id)).expanduser() / "model_index.json"
    if index.is_file():
        from rcmg.generation.families import REGISTERED, family_class

        found = json.loads(index.read_text()).get("_class_name")
        for name in REGISTERED:
            if getattr(family_class(name), "pipeline_class", None) == found:
                return name
        return None
    name = str(model_id).lower().rsplit("/", 1)[-1]
    if name.startswith("audioldm2"):
        return "audioldm2"
    if name.startswith("audioldm"):
        return "audioldm1"
    return None


def model_key_from_id(model_id: str) -> str:
    """``cvssp/audioldm2-music`` -> ``audioldm2-music`` (a folder: its name)."""
    return Path(str(model_id).rstrip("/")).name or "model"


def default_condition(condition_type: str, adapter: str) -> str:
    """The config's condition names: prompt, prompt_aug, retrieval_native, retrieval_external."""
    if condition_type == "retrieval" and adapter not in ("none", ""):
        return f"retrieval_{adapter}"
    return condition_type


def resolve_run_identity(
    *,
    model_id: str,
    model_key: str | None,
    family: str | None,
    condition: str | None,
    condition_type: str | None,
    adapter: str,
    original_script: str | None,
) -> dict:
    """Fill model_key / family / condition / condition_type the way the original scripts did.

    Explicit flags win; ``--original-script`` must agree with them.
    """
    if original_script:
        spec = ORIGINAL_SCRIPTS[script_name(original_script)]
        for flag, given, implied in (
            ("--family", family, spec.family),
            ("--condition-type", condition_type, spec.condition_type),
        ):
            if given and given != implied:
                raise InputError(
                    f"{flag} {given} contradicts --original-script {original_script} "
                    f"(which means {flag} {implied}); drop one of them"
                )
        family, condition_type = spec.family, spec.condition_type
    family = family or infer_family(model_id)
    if not family:
        raise InputError(
            f"cannot tell the model family of {model_id!r}; pass --family audioldm1|audioldm2 "
            "or --original-script NAME"
        )
    if not condition_type:
        raise InputError(
            "pass --condition-type prompt|prompt_aug|retrieval (or --original-script NAME, "
            f"one of {', '.join(ORIGINAL_SCRIPTS)})"
        )
    return {
        "model_key": model_key or model_key_from_id(model_id),
        "family": family,
        "condition_type": condition_type,
        "condition": condition or default_condition(condition_type, adapter),
    }


def sibling_mapping(bank: str | None) -> str | None:
    """``style_bank.npy`` -> ``style_bank.jsonl`` when that file exists (the bank step writes both)."""
    if not bank:
        return None
    candidate = Path(bank).with_suffix(".jsonl")
    return str(candidate) if candidate.is_file() else None
