#!/usr/bin/env python
"""Generate all prompts for one model x condition x seed into a run directory.

Example (prompt-only AudioLDM2)::

    python workflow_scripts/generate.py --model-key audioldm2 --model-id cvssp/audioldm2 \\
        --family audioldm2 --condition prompt --condition-type prompt \\
        --prompts config/prompts.txt --seed 42 --steps 200 --guidance 3.2 --seconds 10 \\
        --batch 2 --out-dir results/runs/audioldm2/prompt/seed42

The original scripts' command lines work too (their underscore spellings are aliases;
``--original-script NAME`` says what the script's name said; see the README's table)::

    python workflow_scripts/generate.py --original-script aldm2_retrieval_infer \\
        --adapter mlp --model_id cvssp/audioldm2 --prompts_file my_prompts.txt \\
        --style_bank style_bank.npy --out_dir OUT --blend_mode orth --alpha_style 0.08 \\
        --metrics --visualize --report --seed 42

The run directory (wav/, items.jsonl, style.npy, run_config.json, hardware.json) is
built in a temporary sibling and renamed into place only when complete.

Sharded (shard 1 of 4: every prompt is planned, only that shard's whole batches are
generated; gather_generate.py merges the 4 folders into the run directory)::

    python workflow_scripts/generate.py ... --prompt-shards 4 --prompt-shard 1 \
        --out-dir results/shards/audioldm2/prompt/seed42/shard1
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.blend import BLEND_MODES  # noqa: E402
from rcmg.generation.conditioning import (  # noqa: E402
    ADAPTERS,
    AUDIO_PROMPT_SOURCES,
    AUDIO_PROMPT_TYPES,
    COND_MIXES,
    CONDITION_TYPES,
    STYLE_TYPES,
    canonical_adapter,
)
from rcmg.generation.families import family_class  # noqa: E402
from rcmg.generation.job import (  # noqa: E402
    DEFAULT_REFERENCE_STATS,
    GenerateConfig,
    check_evaluation_inputs,
    evaluate_run,
    run_generation,
)
from rcmg.generation.original_flags import (  # noqa: E402
    GENERATE_ALIASES,
    ORIGINAL_CLAP,
    ORIGINAL_SCRIPTS,
    resolve_run_identity,
    script_name,
    sibling_mapping,
)
from rcmg.models.device import DTYPES  # noqa: E402
from rcmg.models.pipelines import SCHEDULER_CHOICES  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("generate")

EVAL_FLAGS = ("visualize", "report", "metrics")


def _d(name: str):
    return cli.default(GenerateConfig, name)


def _f(name: str) -> list[str]:
    return [name, GENERATE_ALIASES[name]] if name in GENERATE_ALIASES else [name]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    run = p.add_argument_group("run")
    run.add_argument(
        "--original-script",
        type=script_name,
        default=None,
        help=f"what the original script's name said (family + condition): one of {', '.join(ORIGINAL_SCRIPTS)}",
    )
    run.add_argument(*_f("--model-key"), default=None, help="name in results/runs/{model}")
    run.add_argument(*_f("--model-id"), required=True, help="hub id or local folder")
    run.add_argument(
        "--family",
        "--pipeline",
        dest="family",
        default=None,
        help="model family (config models.<m>.family): audioldm1, audioldm2, or "
        "package.module:ClassName of a ModelFamily (default: from the model)",
    )
    run.add_argument("--condition", default=None, help="condition name (config key)")
    run.add_argument("--condition-type", default=None, choices=CONDITION_TYPES)
    run.add_argument(*_f("--prompts"), required=True, help="text (one per line) or TSV")
    run.add_argument(*_f("--out-dir"), required=True, help="run directory (replaced atomically)")
    run.add_argument("--seed", type=int, default=_d("seed"), help="item i: seed + i")
    run.add_argument("--steps", type=int, default=_d("steps"))
    run.add_argument("--guidance", type=float, default=_d("guidance"))
    run.add_argument("--seconds", type=float, default=_d("seconds"))
    run.add_argument("--batch", type=int, default=_d("batch"))
    run.add_argument("--dtype", default=_d("dtype"), choices=DTYPES, help="fp32 forced on CPU")
    run.add_argument("--scheduler", default=_d("scheduler"), choices=SCHEDULER_CHOICES)
    run.add_argument("--negative-prompt", default=_d("negative_prompt"))
    run.add_argument("--num-waveforms-per-prompt", type=int, default=_d("num_waveforms_per_prompt"))
    run.add_argument("--device", default=_d("device"), help="auto | cpu | cuda | cuda:N")
    run.add_argument(
        "--prompt-shards",
        type=int,
        default=_d("prompt_shards"),
        help="split the prompts into this many shards of whole batches (gather_generate.py merges them)",
    )
    run.add_argument(
        "--prompt-shard",
        type=int,
        default=_d("prompt_shard"),
        help="the shard (0-based) this job generates; every prompt is still planned",
    )
    run.add_argument(
        "--prompt-subset",
        type=int,
        default=_d("prompt_subset"),
        help="generate a seeded draw of N prompts, keeping their item indices (sweeps.prompts)",
    )
    run.add_argument(
        "--prompt-subset-seed",
        type=int,
        default=_d("prompt_subset_seed"),
        help="seed of the --prompt-subset draw (one draw for every run that uses it)",
    )
    bank = p.add_argument_group("prompt_aug / retrieval")
    bank.add_argument(
        *_f("--clap-model"), default=None, help=f"CLAP of the bank (default {ORIGINAL_CLAP})"
    )
    bank.add_argument(
        "--clap-subfolder",
        default=_d("clap_subfolder"),
        help="ClapModel subfolder of --clap-model (a pipeline's text_encoder)",
    )
    bank.add_argument("--clap-revision", default=None, help="hub revision of --clap-model")
    bank.add_argument(
        "--style-space",
        default=None,
        help="the declared style space (config models.<m>.style_space); AudioLDM2: its own "
        "text_encoder embeds the queries; checked against --space-record",
    )
    bank.add_argument(
        "--space-record",
        dest="space_records",
        nargs="+",
        default=[],
        help="records of the jobs that embedded the space (space.json, or the bank's clap_embed "
        "stats): their weight fingerprint must be the conditioning CLAP's",
    )
    bank.add_argument(*_f("--bank"), default=None, help="style bank .npy [N, 512]")
    bank.add_argument(
        *_f("--bank-mapping"),
        default=None,
        help="bank mapping .jsonl (default: BANK.jsonl beside the bank; none: rows have no tags)",
    )
    bank.add_argument("--index", default=None, help="FAISS index (default: exact, on the fly)")
    bank.add_argument("--aug-topk", type=int, default=_d("aug_topk"))
    bank.add_argument("--aug-max-tags", type=int, default=_d("aug_max_tags"))
    bank.add_argument(*_f("--style-topk"), type=int, default=_d("style_topk"))
    bank.add_argument(*_f("--style-temp"), type=float, default=_d("style_temp"))
    bank.add_argument(*_f("--blend"), default=_d("blend"), help=f"one of {', '.join(BLEND_MODES)}")
    bank.add_argument(*_f("--alpha"), type=float, default=_d("alpha"), help="strength in [0, 1]")
    bank.add_argument(
        "--adapter",
        type=canonical_adapter,
        default=_d("adapter"),
        help=f"one of {', '.join(ADAPTERS)} (the original scripts' mlp means native)",
    )
    bank.add_argument(
        *_f("--adapter-checkpoint"),
        default=_d("adapter_checkpoint"),
        help="style adapter .safetensors (external); convert an original .pt with convert_projector.py",
    )
    bank.add_argument(
        *_f("--cond-mix"), default=_d("cond_mix"), help=f"one of {', '.join(COND_MIXES)}"
    )
    bank.add_argument(*_f("--cond-mix-beta"), type=float, default=_d("cond_mix_beta"))
    bank.add_argument(
        "--strength-deg",
        type=float,
        default=_d("strength_deg"),
        help="blend each item to this angle (degrees) instead of a fixed --alpha",
    )
    bank.add_argument(
        "--init-noise-level",
        type=float,
        default=_d("init_noise_level"),
        help="init-audio route: the retrieved item's audio as the initial audio, denoised "
        "from this noise level (sigma); families with the route (stable_audio)",
    )
    bank.add_argument(
        "--style-guidance",
        type=float,
        default=_d("style_guidance"),
        help="eps_u + g(eps_c - eps_u) + beta(eps_s - eps_c); 0 = off",
    )
    bank.add_argument(
        "--prompt-seconds",
        type=float,
        default=_d("prompt_seconds"),
        help="continuation / melody: seconds of the bank item's audio given to the model",
    )
    bank.add_argument(
        "--audio-prompt-source",
        choices=AUDIO_PROMPT_SOURCES,
        default=_d("audio_prompt_source"),
        help="continuation / melody: whose audio: top (the prompt's top hit); the controls "
        "random (a seeded random bank item), mismatched (the top hit of the prompt half the "
        "set away)",
    )
    bank.add_argument(
        "--segments-root",
        default=None,
        help="continuation / melody and the init-audio route: the bank dataset's segment "
        "shards (default: the workflow layout beside --bank, <processed>/<dataset>/segments)",
    )
    bank.add_argument("--alignment", default=None, help="align_check JSON of this model")
    bank.add_argument(
        "--min-alignment-cosine",
        type=float,
        default=None,
        help="refuse style conditions when the alignment's median cosine is below this",
    )
    bank.add_argument(
        "--match-angles",
        default=None,
        help="controls: items.jsonl of the retrieval run controlled; each item is turned by its angle",
    )
    ev = p.add_argument_group(
        "evaluation after generating (the evaluate step's CLI, run on the new run directory)"
    )
    for name in EVAL_FLAGS:
        ev.add_argument(f"--{name}", action="store_true", help="run the evaluation afterwards")
    ev.add_argument(
        "--reference-stats", default=DEFAULT_REFERENCE_STATS, help="ref_stats.npz for FAD/KAD"
    )
    ev.add_argument("--eval-clap-model", default=None, help="judge CLAP (default: --clap-model)")
    run.add_argument(
        "--judge-clap",
        default=None,
        help="the evaluation judge's CLAP (evaluation.clap.model; default --eval-clap-model): "
        "candidates ranked by it are flagged in run_config.ranking",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG shows tracebacks")
    return p


GENERATION_ONLY = {
    "log_level",
    "original_script",
    *EVAL_FLAGS,
    "reference_stats",
    "eval_clap_model",
}


def config_from_args(args: argparse.Namespace, command: list[str]) -> GenerateConfig:
    identity = resolve_run_identity(
        model_id=args.model_id,
        model_key=args.model_key,
        family=args.family,
        condition=args.condition,
        condition_type=args.condition_type,
        adapter=args.adapter,
        original_script=args.original_script,
    )
    values = {k: v for k, v in vars(args).items() if k not in GENERATION_ONLY}
    values.update(identity)
    if values["condition_type"] in ("prompt_aug", *STYLE_TYPES, *AUDIO_PROMPT_TYPES):
        values["clap_model"] = values["clap_model"] or ORIGINAL_CLAP
        values["bank_mapping"] = values["bank_mapping"] or sibling_mapping(values["bank"])
    if (
        values["num_waveforms_per_prompt"] > 1
        and not family_class(values["family"]).own_clap_subfolder
    ):
        # candidates of a family without its own CLAP are ranked by the bank CLAP
        values["clap_model"] = values["clap_model"] or ORIGINAL_CLAP
    values["judge_clap"] = values["judge_clap"] or args.eval_clap_model
    return GenerateConfig(**values, command=shlex.join(command))


def main(argv: list[str] | None = None) -> int:
    command = cli.command_line(argv)

    def run(args: argparse.Namespace) -> None:
        cfg = config_from_args(args, command)
        wants_eval = any(getattr(args, name) for name in EVAL_FLAGS)
        judge = args.eval_clap_model or cfg.clap_model or ORIGINAL_CLAP
        if wants_eval and not cfg.judge_clap:
            cfg = replace(cfg, judge_clap=judge)
        if wants_eval:
            check_evaluation_inputs(args.reference_stats)
        out = run_generation(cfg)
        log.info("run directory: %s", out)
        if wants_eval:
            evaluate_run(out, judge, args.reference_stats, cfg.device)

    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
