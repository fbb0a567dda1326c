"""Style spaces: which CLAP embeds the bank (and the text queries) for which model.

Planned from config alone (standard library only: rules/common.smk imports it while
Snakemake parses), so the DAG needs no weights; the jobs verify the plan at run time by
a fingerprint of the weights (rcmg.models.fingerprint).

A model's ``style_space`` is one of

* ``bank``: the bank's CLAP (``clap.model``), where the bank is filtered and
  deduplicated. AudioLDM1 (no audio tower in its checkpoint) uses it, bridged by the
  alignment check.
* ``own_text_encoder``: the model's own ``text_encoder`` subfolder (AudioLDM2 and
  AudioLDM2-Music: a full ClapModel with an audio tower). Named ``<model>.text_encoder``.
* a key of ``style_spaces`` (``{model, subfolder, revision}``), e.g. one space several
  models share.

Spaces with the same (model path, subfolder, revision) are one space, embedded once: the
first name in the order bank, ``style_spaces`` (config order), own text encoders (model
order) is the one used for its files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

BANK_SPACE = "bank"
OWN_TEXT_ENCODER = "own_text_encoder"
TEXT_ENCODER = "text_encoder"


@dataclass(frozen=True)
class Space:
    name: str
    model: str
    subfolder: str = ""
    revision: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        """What makes two spaces one: the model path, the subfolder, the revision."""
        model = os.path.normpath(self.model) if self.model else self.model
        return (model, os.path.normpath(self.subfolder) if self.subfolder else "", self.revision)

    @property
    def label(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{self.model}{sub}{at}"


def segment_ids_digest(segment_ids) -> str:
    """sha256 of the bank's segment ids in row order: equal digests = same rows, same order."""
    digest = hashlib.sha256()
    for segment_id in segment_ids:
        digest.update(str(segment_id).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def own_space_name(model_key: str) -> str:
    return f"{model_key}.{TEXT_ENCODER}"


def declared_spaces(config: dict) -> dict[str, Space]:
    """Every space a name can refer to, before deduplication (bank, named, own)."""
    spaces = {
        BANK_SPACE: Space(BANK_SPACE, config["clap"]["model"], "", config["clap"].get("revision"))
    }
    for name, spec in (config.get("style_spaces") or {}).items():
        spaces[name] = Space(name, spec["model"], spec.get("subfolder") or "", spec.get("revision"))
    for key, model in config["models"].items():
        if model.get("style_space") == OWN_TEXT_ENCODER:
            name = own_space_name(key)
            spaces[name] = Space(name, model["id"], TEXT_ENCODER, model.get("revision"))
    return spaces


def canonical_names(config: dict) -> dict[str, str]:
    """Each declared space name -> the name of the space it is (first with its key)."""
    first: dict[tuple, str] = {}
    out = {}
    for name, space in declared_spaces(config).items():
        out[name] = first.setdefault(space.key, name)
    return out


def model_space_name(config: dict, model_key: str) -> str:
    """The canonical space ``model_key`` declares (``bank`` when it declares none)."""
    declared = config["models"][model_key].get("style_space", BANK_SPACE)
    name = own_space_name(model_key) if declared == OWN_TEXT_ENCODER else declared
    return canonical_names(config)[name]


def model_space(config: dict, model_key: str) -> Space:
    return declared_spaces(config)[model_space_name(config, model_key)]


def embedded_spaces(config: dict, models=None) -> list[str]:
    """Canonical spaces other than the bank's that some model uses (each embedded once)."""
    names = [model_space_name(config, m) for m in (config["models"] if models is None else models)]
    return [n for n in dict.fromkeys(names) if n != BANK_SPACE]


def _has_own_clap(family: str) -> bool:
    """Whether the family's checkpoint has its own full CLAP (audio tower) to embed with."""
    from rcmg.generation.families import family_class, family_problem

    return not family_problem(family) and bool(family_class(family).own_clap_subfolder)


def space_problems(config: dict) -> list[str]:
    """Config mistakes about spaces, each naming the key and the fix."""
    out = []
    named = config.get("style_spaces") or {}
    if BANK_SPACE in named:
        out.append(
            f"style_spaces.{BANK_SPACE}: '{BANK_SPACE}' is the bank CLAP (clap.model); "
            "give this space another name"
        )
    for key, model in config["models"].items():
        declared = model.get("style_space", BANK_SPACE)
        if declared not in (BANK_SPACE, OWN_TEXT_ENCODER, *named):
            out.append(
                f"models.{key}.style_space: '{declared}' is not '{BANK_SPACE}', "
                f"'{OWN_TEXT_ENCODER}' or a key of style_spaces ({', '.join(named) or 'none'})"
            )
        elif declared == OWN_TEXT_ENCODER and not _has_own_clap(model["family"]):
            out.append(
                f"models.{key}.style_space: a {model['family']} checkpoint has no CLAP audio "
                f"tower to embed the bank with; use '{BANK_SPACE}' (with the alignment check) "
                "or a style_spaces entry naming a full CLAP"
            )
    return out
