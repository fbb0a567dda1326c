"""The generate job's checks that need no model: they raise before anything is loaded."""

from __future__ import annotations

from pathlib import Path

from rcmg.generation.conditioning import STYLE_TYPES, OptionError, validate_options
from rcmg.generation.generate_config import GenerateConfig


def _check_numbers(cfg: GenerateConfig) -> None:
    checks = [
        (cfg.steps >= 1, f"--steps must be >= 1, got {cfg.steps}"),
        (cfg.batch >= 1, f"--batch must be >= 1, got {cfg.batch}"),
        (cfg.seconds > 0, f"--seconds must be > 0, got {cfg.seconds}"),
        (cfg.num_waveforms_per_prompt >= 1, "--num-waveforms-per-prompt must be >= 1"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
        (cfg.style_guidance >= 0, "--style-guidance must be >= 0"),
        (cfg.prompt_shards >= 1, f"--prompt-shards must be >= 1, got {cfg.prompt_shards}"),
        (
            cfg.prompt_subset is None or cfg.prompt_subset >= 1,
            f"--prompt-subset must be >= 1 (prompts to draw), got {cfg.prompt_subset}",
        ),
        (
            cfg.prompt_shard is None or 0 <= cfg.prompt_shard < cfg.prompt_shards,
            f"--prompt-shard must be in [0, --prompt-shards={cfg.prompt_shards}), "
            f"got {cfg.prompt_shard}",
        ),
        (
            cfg.prompt_shard is not None or cfg.prompt_shards == 1,
            "--prompt-shards > 1 needs --prompt-shard (which shard this job generates)",
        ),
    ]
    if cfg.ranks_with_bank_clap:
        checks.append(
            (
                bool(cfg.clap_model),
                f"{cfg.family} with --num-waveforms-per-prompt > 1 ranks its candidates by "
                "--clap-model (it has no CLAP audio tower of its own): pass the bank CLAP",
            )
        )
    if cfg.style_guidance:
        checks += [
            (
                cfg.condition_type in STYLE_TYPES,
                "--style-guidance applies to style conditions (retrieval, controls)",
            ),
            (cfg.guidance > 1.0, "--style-guidance builds on CFG: use --guidance > 1"),
            (
                cfg.num_waveforms_per_prompt == 1,
                "--style-guidance needs --num-waveforms-per-prompt 1",
            ),
        ]
    for ok, message in checks:
        if not ok:
            raise OptionError(message)


def _check_bank_files(cfg: GenerateConfig) -> None:
    """The bank is needed; its mapping and index are optional (a bare ``.npy`` bank gets
    synthetic mapping rows and an exact index built on the fly)."""
    if not cfg.bank:
        raise OptionError(f"--condition-type {cfg.condition_type} needs --bank (or --style_bank)")
    for flag, value in (
        ("--bank", cfg.bank),
        ("--bank-mapping", cfg.bank_mapping),
        ("--index", cfg.index),
    ):
        if value and not Path(value).is_file():
            raise OptionError(
                f"{flag} {value} does not exist; build it with the build_bank/build_index steps"
            )
    if not cfg.clap_model:
        raise OptionError(
            f"--condition-type {cfg.condition_type} needs --clap-model (the bank's CLAP model)"
        )


def alignment_summary(cfg: GenerateConfig) -> dict | None:
    """The align_check figures (without the per-text list) for run_config.json."""
    if not cfg.alignment:
        return None
    import json

    figures = json.loads(Path(cfg.alignment).read_text())
    return {k: v for k, v in figures.items() if k != "per_text"}


def check_alignment(cfg: GenerateConfig) -> None:
    """Refuse a style condition whose bank space does not match the model's (align_check)."""
    if not cfg.alignment or cfg.min_alignment_cosine is None or not cfg.uses_style:
        return
    if cfg.adapter == "external":  # the trained adapter is the map between the spaces
        return
    fig = alignment_summary(cfg)
    if fig["cosine_median"] < cfg.min_alignment_cosine:
        raise OptionError(
            f"{cfg.alignment}: the bank CLAP ({fig['clap_model']}) and {cfg.model_id}'s own text "
            f"tower do not share a space (median per-text cosine {fig['cosine_median']:.3f} < "
            f"{cfg.min_alignment_cosine}; Procrustes residual {fig['procrustes_residual']:.3f}, "
            f"CKA {fig['linear_cka']:.3f}: {fig['verdict']}); a style from the bank would not mean "
            "the same thing in the model's conditioning. Use adapter: external (a trained map), "
            "embed the bank with the model's own CLAP, or lower alignment.min_cosine knowingly"
        )


def validate_config(cfg: GenerateConfig) -> None:
    """Every check that needs no model: raises before anything is loaded or generated."""
    _check_numbers(cfg)
    check_alignment(cfg)
    validate_options(cfg.condition_options())
    if cfg.needs_bank:
        _check_bank_files(cfg)
    if cfg.init_noise_level is not None:
        if cfg.condition_type not in STYLE_TYPES:
            raise OptionError(
                "--init-noise-level takes the retrieved item's audio: use it with the "
                "retrieval conditions (retrieval, retrieval_random, retrieval_mismatched)"
            )
        from rcmg.generation.planning import segments_root

        root = segments_root(cfg)
        if not root.is_dir():
            raise OptionError(
                f"--init-noise-level reads the retrieved items' audio from {root} (--segments-"
                "root, default the workflow layout beside --bank), which is not a folder; pass "
                "--segments-root the bank dataset's segments folder "
                "(data/processed/<dataset>/segments)"
            )
        if cfg.match_angles:
            raise OptionError(
                "--match-angles matches a style blend's angle; the init-audio route's "
                "controls take the same --init-noise-level instead: drop --match-angles"
            )
    for record in cfg.space_records:
        if not Path(record).is_file():
            raise OptionError(
                f"--space-record {record} does not exist; embed the style space "
                f"{cfg.style_space} first (space_embed, or clap_embed for the bank's space)"
            )
    if cfg.space_records and not cfg.style_space:
        raise OptionError("--space-record needs --style-space (the space the records embed)")
    if cfg.match_angles and not Path(cfg.match_angles).is_file():
        raise OptionError(
            f"--match-angles {cfg.match_angles} does not exist; generate the retrieval run it "
            "controls first (its items.jsonl)"
        )
    if cfg.adapter == "external" and cfg.uses_style:
        from rcmg.generation.adapter import read_safetensors_header

        read_safetensors_header(cfg.adapter_checkpoint)
