"""The generate job's loading: the model once (through its family), the bank and its
retriever, the CLAP that embeds the queries, the adapter, and the verified style space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcmg.generation.conditioning import OptionError
from rcmg.generation.generate_config import CLAP_DIM, GenerateConfig, Resources
from rcmg.generation.prompts import PromptItem


def _read_style_audio(items: list[PromptItem]) -> dict[int, tuple[np.ndarray, int]]:
    from rcmg.data.audio_io import read_audio

    return {it.item: read_audio(it.style.audio_path) for it in items if it.style.kind == "audio"}


def load_resources(cfg: GenerateConfig, items: list[PromptItem]) -> Resources:
    """Load the pipeline once, plus CLAP / retriever / adapter when the condition needs them."""
    family = cfg.model_family
    retriever = style_audio = None
    if cfg.needs_bank:
        from rcmg.bank.retrieval import StyleRetriever

        retriever = StyleRetriever(cfg.bank, cfg.bank_mapping, cfg.index)
        if retriever.dim != CLAP_DIM:
            raise OptionError(
                f"bank {cfg.bank} has dim {retriever.dim}; expected CLAP dim {CLAP_DIM}"
            )
        space = verify_style_space(cfg, [m.get("segment_id") for m in retriever.mapping])
    if cfg.uses_style:
        style_audio = _read_style_audio(items)
    loaded = family.load(cfg.model_id, cfg.device, cfg.dtype, cfg.scheduler)
    res = Resources(
        loaded=loaded, family=family, retriever=retriever, style_audio=style_audio or {}
    )
    if cfg.needs_bank:
        res.space = space
        if conditions_in_own_clap(cfg):  # the conditioning CLAP itself embeds the queries
            res.clap = family.own_clap(loaded)
        else:
            res.clap = _bank_clap(cfg, loaded.device)
        if res.clap.dim != retriever.dim:
            raise OptionError(
                f"CLAP model {cfg.clap_model} has dim {res.clap.dim} but bank {cfg.bank} has {retriever.dim}"
            )
    if cfg.ranks_with_bank_clap and res.clap is None:
        res.clap = _bank_clap(cfg, loaded.device)
    if cfg.uses_style and cfg.adapter == "external":
        res.adapter = _load_external_adapter(cfg, loaded)
    return res


def _bank_clap(cfg: GenerateConfig, device: str):
    """The bank CLAP (``--clap-model``, its subfolder and revision) in float32."""
    from rcmg.models.clap import ClapEmbedder

    return ClapEmbedder(
        cfg.clap_model,
        device=device,
        dtype="float32",
        subfolder=cfg.clap_subfolder,
        revision=cfg.clap_revision,
    )


def conditions_in_own_clap(cfg: GenerateConfig) -> bool:
    """A family with its own full CLAP and a declared space: that CLAP (e.g. the pipeline's
    ``text_encoder``) is the conditioning CLAP and the space's; it embeds the queries (and
    audio styles)."""
    return bool(cfg.style_space) and bool(cfg.model_family.own_clap_subfolder)


def conditioning_clap(cfg: GenerateConfig) -> tuple[str, dict]:
    """(label, fingerprint) of the CLAP whose space the style vectors must live in.

    A family with its own CLAP: that CLAP (it turns the prompt into the conditioning the
    style is blended into). A family without one: the CLAP that embeds the queries, the
    space's own; whether it matches the model's text tower is the alignment check's
    question (families with ``checks_alignment``).
    """
    from rcmg.models.fingerprint import clap_space_fingerprint

    if conditions_in_own_clap(cfg):
        sub = cfg.model_family.own_clap_subfolder
        return f"{cfg.model_id}/{sub}", clap_space_fingerprint(cfg.model_id, sub)
    sub = f"/{cfg.clap_subfolder}" if cfg.clap_subfolder else ""
    return f"{cfg.clap_model}{sub}", clap_space_fingerprint(
        cfg.clap_model, cfg.clap_subfolder, cfg.clap_revision
    )


def verify_style_space(cfg: GenerateConfig, segment_ids: list) -> dict:
    """Check the declared style space against the weights: the fingerprint recorded by
    every job that embedded the space must be the conditioning CLAP's, and the space must
    hold the bank mapping's items in order. Returns what run_config/items record."""
    import json

    from rcmg.bank.spaces import segment_ids_digest

    label, fingerprint = conditioning_clap(cfg)
    out = {
        "name": cfg.style_space,
        "conditioning_clap": label,
        "fingerprint": fingerprint["sha256"],
        "fingerprint_tensors": fingerprint["tensors"],
        "records": list(cfg.space_records),
        "verified": False,
    }
    if not cfg.style_space:
        out["note"] = "no --style-space declared: the bank's space is not checked"
        return out
    if fingerprint["sha256"] is None:
        raise OptionError(
            f"cannot fingerprint {label}, the conditioning CLAP of {cfg.model_key} "
            f"({fingerprint['reason']}); give a local folder or a model in the HF cache"
        )
    digest = segment_ids_digest(segment_ids)
    for path in cfg.space_records:
        record = json.loads(Path(path).read_text())
        made_by = record.get("fingerprint") or {}
        if made_by.get("sha256") != fingerprint["sha256"]:
            model = made_by.get("model", "?") + (
                f"/{made_by['subfolder']}" if made_by.get("subfolder") else ""
            )
            raise OptionError(
                f"style space '{cfg.style_space}' ({path}) was embedded with {model} (weights "
                f"sha256 {str(made_by.get('sha256'))[:12]}) but {cfg.model_key}'s conditioning "
                f"CLAP is {label} (sha256 {fingerprint['sha256'][:12]}): its style vectors "
                "would be blended into another space. Fix models."
                f"{cfg.model_key}.style_space (own_text_encoder for a model with its own CLAP), "
                "or re-embed the "
                "space if its weights changed (snakemake --forcerun space_embed / clap_embed)"
            )
        if record.get("segment_ids_sha256") not in (None, digest):
            raise OptionError(
                f"style space '{cfg.style_space}' ({path}) holds other bank items than "
                f"{cfg.bank_mapping}; re-embed it from this bank (space_embed)"
            )
    out.update(verified=True, segment_ids_sha256=digest)
    return out


def _load_external_adapter(cfg: GenerateConfig, loaded):
    from rcmg.generation.adapter import adapter_file_config, load_adapter

    found = int(adapter_file_config(cfg.adapter_checkpoint).get("out_dim", -1))
    out_dim = cfg.model_family.generation_adapter_dim(loaded.pipe, found)
    return load_adapter(
        cfg.adapter_checkpoint, expected_in=CLAP_DIM, expected_out=out_dim, device=loaded.device
    )
