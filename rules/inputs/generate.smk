# Input functions and params builders of rules/generate.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.


# run points by (model, run condition)
POINTS = {(p.model, p.condition): p for p in PLAN}


def run_settings(wildcards):
    """The effective sampling / retrieval / condition settings of a run point."""
    return sweeps.effective(config, wildcards.model, wildcards.condition)


def controlled_items(wildcards):
    """A control's input: the items.jsonl of the retrieval run whose angles it matches
    (a swept control matches the target's point at the same values when it is planned).
    """
    base, settings = sweeps.parse_point(wildcards.condition)
    target = CONDITIONS[base].get("control_of")
    if not target or uses_init_audio(wildcards.condition):  # init audio: the same level
        return []
    same_point = sweeps.point_name(target, settings)
    if (wildcards.model, same_point) in POINTS:
        target = same_point
    return [f"{run_dir(wildcards.model, target, wildcards.seed)}/items.jsonl"]


def n_candidates(wildcards):
    """num_waveforms_per_prompt of this run (a sweep point's value where it sets one)."""
    return run_settings(wildcards)["sampling"]["num_waveforms_per_prompt"]


def ranks_with_bank_clap(wildcards):
    """AudioLDM1 with candidates: ranked by the model's space CLAP (the bank CLAP by
    default), loaded for every condition alike (it has no audio tower)."""
    own = model_family(wildcards.model).own_clap_subfolder
    return not own and n_candidates(wildcards) > 1


def generate_inputs(wildcards):
    inputs = {"prompts": PROMPTS}
    model = MODELS[wildcards.model]
    for i, path in enumerate(model_input(model["id"])):
        inputs[f"model{i}"] = path
    if ranks_with_bank_clap(wildcards) and not needs_bank(wildcards.condition):
        for i, path in enumerate(model_input(model_space(wildcards.model).model)):
            inputs[f"clap{i}"] = path
    if needs_bank(wildcards.condition):
        files = space_files(model_space_name(wildcards.model))
        inputs.update(
            bank=files["npy"],
            bank_mapping=BANK["mapping"],
            index=files["index"],
            space_records=files["records"],
        )
        for i, path in enumerate(model_input(model_space(wildcards.model).model)):
            inputs[f"clap{i}"] = path
    if uses_bank_audio(wildcards.condition):
        inputs["segments"] = shard_dirs(BANK_DS)
    if uses_external_adapter(wildcards.condition):
        inputs["adapter"] = external_adapter(wildcards.model, wildcards.condition)
    for path in controlled_items(wildcards):
        inputs["match_angles"] = path
    if needs_alignment(wildcards):
        inputs["alignment"] = alignment_file(wildcards.model)
    return inputs


def generate_args(wildcards):
    """Every config value the generate job depends on, as CLI flags (so params track them).

    Only the values a condition uses are passed: editing the retrieval alpha of one model
    reruns that model's retrieval runs and nothing else. A sweep point's values replace
    the configured ones (run_settings), so each point's job tracks its own values.
    """
    model = MODELS[wildcards.model]
    settings = run_settings(wildcards)
    cond = settings["condition"]
    s = settings["sampling"]
    args = [
        f"--model-key {wildcards.model}",
        f"--model-id {shell_quote(model_ref(wildcards.model))}",
        f"--family {shell_quote(model['family'])}",
        f"--condition {wildcards.condition}",
        f"--condition-type {cond['type']}",
        f"--seed {wildcards.seed}",
        f"--steps {s['steps']}",
        f"--guidance {s['guidance']}",
        f"--seconds {s['seconds']}",
        f"--batch {s['batch']}",
        f"--dtype {s['dtype']}",
        f"--scheduler {s['scheduler']}",
        f"--negative-prompt {shell_quote(s['negative_prompt'])}",
        f"--num-waveforms-per-prompt {s['num_waveforms_per_prompt']}",
    ]
    # sweeps.prompts: sweep points and their baselines
    subset = settings["prompt_subset"]
    if subset:
        args.append(
            f"--prompt-subset {subset['n']} --prompt-subset-seed {subset['seed']}"
        )
    if cond["type"] in (
        "prompt_aug",
        *STYLE_TYPES,
        *AUDIO_PROMPT_TYPES,
    ) or ranks_with_bank_clap(wildcards):
        args.append(clap_flags(model_space(wildcards.model)))
    if s["num_waveforms_per_prompt"] > 1:  # flagged when the ranking CLAP is the judge
        args.append(f"--judge-clap {shell_quote(JUDGE_REF)}")
    if cond["type"] == "prompt_aug":
        args += [
            f"--aug-topk {cond.get('topk', 4)}",
            f"--aug-max-tags {cond.get('max_tags', 6)}",
        ]
    if cond["type"] in AUDIO_PROMPT_TYPES:
        args.append(f"--prompt-seconds {cond.get('prompt_seconds', 3.0)}")
        args.append(f"--audio-prompt-source {cond.get('audio_prompt_source', 'top')}")
    if cond["type"] in STYLE_TYPES:
        r = settings["retrieval"]
        args += [
            f"--style-topk {r['style_topk']}",
            f"--style-temp {r['style_temp']}",
            f"--blend {cond.get('blend', r['blend'])}",
            f"--alpha {cond.get('alpha', r['alpha'])}",
            f"--adapter {cond.get('adapter', 'none')}",
        ]
        if "strength_deg" in cond:
            args.append(f"--strength-deg {cond['strength_deg']}")
        if "init_noise_level" in cond:  # the init-audio route (a sweep point's value)
            args.append(f"--init-noise-level {cond['init_noise_level']}")
        if "style_guidance" in cond:
            args.append(f"--style-guidance {cond['style_guidance']}")
        args += [f"--match-angles {path}" for path in controlled_items(wildcards)]
        args.append(alignment_args(wildcards))
        if model_family(wildcards.model).residual_mix:
            args += [
                f"--cond-mix {cond.get('cond_mix', r['cond_mix'])}",
                f"--cond-mix-beta {cond.get('cond_mix_beta', r['cond_mix_beta'])}",
            ]
    return " ".join(args)


def generate_bank_flags(wildcards):
    """The bank of the model's style space and the records its fingerprint is checked with."""
    if not needs_bank(wildcards.condition):
        return ""
    space = model_space_name(wildcards.model)
    files = space_files(space)
    segments = ""
    if uses_bank_audio(wildcards.condition):  # the bank dataset's segment shards
        segments = f" --segments-root {os.path.dirname(shard_dirs(BANK_DS)[0])}"
    return (
        f"--bank {files['npy']} --bank-mapping {BANK['mapping']} --index {files['index']} "
        f"--style-space {shell_quote(space)} --space-record {' '.join(files['records'])}"
        + segments
    )


def generate_adapter_flag(wildcards):
    if not uses_external_adapter(wildcards.condition):
        return ""
    return (
        f"--adapter-checkpoint {external_adapter(wildcards.model, wildcards.condition)}"
    )


# ----------------- sharded generate (models.<m>.sampling.prompt_shards, config/README.md)
SHARD_RUN = f"{R}/shards/{{model}}/{{condition}}/seed{{seed}}/shard{{shard}}"


def prompt_shards(model):
    """How many generate_shard jobs one run of ``model`` is split into (1: one generate job)."""
    return MODELS[model]["sampling"].get("prompt_shards", 1)


def models_pattern(models):
    """A ``model`` wildcard constraint matching exactly ``models`` (none: matches nothing)."""
    return "|".join(map(re.escape, models)) or "(?!)"


UNSHARDED_MODELS = models_pattern([m for m in MODELS if prompt_shards(m) == 1])
SHARDED_MODELS = models_pattern([m for m in MODELS if prompt_shards(m) > 1])


def shard_flags(wildcards):
    return f"--prompt-shards {prompt_shards(wildcards.model)} --prompt-shard {wildcards.shard}"


def generate_shard_configs(wildcards):
    """run_config.json of every shard of a run (the gather step's input), shard 0 first."""
    return [
        f"{SHARD_RUN}/run_config.json".format(**wildcards, shard=i)
        for i in range(prompt_shards(wildcards.model))
    ]


def shard_folders(wildcards, input):
    return " ".join(shell_quote(os.path.dirname(path)) for path in input.shards)


def import_prompts_args():
    """benchmark_prompts as import_prompts.py flags (only the keys given; CLI defaults else)."""
    b = BENCHMARK_PROMPTS
    args = [f"--benchmark {b['benchmark']}"]
    if b.get("audio_dir"):
        args.append(f"--audio-dir {shell_quote(b['audio_dir'])}")
    for key in ("subset", "max_count", "seed", "seconds"):
        if b.get(key) is not None:
            args.append(f"--{key.replace('_', '-')} {shell_quote(b[key])}")
    return " ".join(args)


# ----------------- style targets (rcmg.generation.style_targets): one per model
STYLE_TARGETS = f"{R}/targets/{{model}}/style_targets.jsonl"


def style_targets_file(model):
    return STYLE_TARGETS.format(model=model)


def style_target_inputs(wildcards):
    """The model (its tokenizers and own CLAP), its style space's bank and the prompts."""
    model = MODELS[wildcards.model]
    files = space_files(model_space_name(wildcards.model))
    inputs = {
        "prompts": PROMPTS,
        "bank": files["npy"],
        "bank_mapping": BANK["mapping"],
        "index": files["index"],
        "space_records": files["records"],
    }
    for i, path in enumerate(model_input(model["id"])):
        inputs[f"model{i}"] = path
    for i, path in enumerate(model_input(model_space(wildcards.model).model)):
        inputs[f"clap{i}"] = path
    return inputs


def style_target_args(wildcards):
    """The model, its space and its configured retrieval (style_topk, style_temp): the
    target every condition of the model is scored against."""
    model = MODELS[wildcards.model]
    r = model["retrieval"]
    space = model_space_name(wildcards.model)
    files = space_files(space)
    return " ".join(
        [
            f"--model-key {wildcards.model}",
            f"--model-id {shell_quote(model_ref(wildcards.model))}",
            f"--family {shell_quote(model['family'])}",
            f"--dtype {model['sampling']['dtype']}",
            clap_flags(model_space(wildcards.model)),
            f"--style-space {shell_quote(space)}",
            f"--space-record {' '.join(files['records'])}",
            f"--style-topk {r['style_topk']} --style-temp {r['style_temp']}",
        ]
    )
