# Input functions and params builders of rules/bank.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.


# Style spaces (config/README.md#style-spaces; rcmg.bank.spaces), alignment, reference statistics.
# The bank is filtered and deduplicated once, in the bank CLAP's space ("bank"); every
# other space a model declares embeds exactly those items (space_embed) and gets its own
# FAISS index. A space several models share is embedded once.
def model_space_name(model):
    return style_spaces.model_space_name(config, model)


def model_space(model):
    return style_spaces.model_space(config, model)


def space_root(space):
    return f"{P}/bank/spaces/{space}"


def space_files(space):
    """A space's bank rows, index, audit and the records of the jobs that embedded it."""
    if space == style_spaces.BANK_SPACE:
        n = DATASETS[BANK_DS]["shards"]
        return {
            "npy": BANK["npy"],
            "index": BANK["index"],
            "index_audit": BANK["index_audit"],
            "records": [f"{P}/{BANK_DS}/clap/shard{i}.stats.json" for i in range(n)],
        }
    root = space_root(space)
    return {
        "npy": f"{root}/style_bank.npy",
        "index": f"{root}/bank.index",
        "index_audit": f"{root}/index_audit.json",
        "records": [f"{root}/space.json"],
    }


def space_embed_inputs(wildcards):
    inputs = {"mapping": BANK["mapping"], "shards": shard_dirs(BANK_DS)}
    space = style_spaces.declared_spaces(config)[wildcards.space]
    for i, path in enumerate(model_input(space.model)):
        inputs[f"model{i}"] = path
    return inputs


def space_spec(wildcards):
    return style_spaces.declared_spaces(config)[wildcards.space]


def space_model_flags(space):
    """space_embed's --model/--subfolder/--revision of a space."""
    return clap_flags(space, prefix="--")


def clap_flags(space, prefix="--clap-"):
    """--clap-model/--clap-subfolder/--clap-revision of a space (its CLAP); empty ones left out."""
    words = [f"{prefix}model {shell_quote(space.model)}"]
    if space.subfolder:
        words.append(f"{prefix}subfolder {shell_quote(space.subfolder)}")
    if space.revision:
        words.append(f"{prefix}revision {shell_quote(space.revision)}")
    return " ".join(words)


def bank_inputs(wildcards):
    return {
        "npy": f"{P}/{BANK_DS}/embeddings.npy",
        "mapping": f"{P}/{BANK_DS}/mapping.jsonl",
        "filter": config["bank"]["filter"],
    }


def alignment_file(model):
    """align_check's output for an AudioLDM1 model (bank CLAP vs its own text tower)."""
    return f"{R}/alignment/{model}.json"


def needs_alignment(wildcards):
    return (
        model_family(wildcards.model).checks_alignment
        and CONDITIONS[base_condition(wildcards.condition)]["type"] in STYLE_TYPES
    )


def alignment_args(wildcards):
    if not needs_alignment(wildcards):
        return ""
    args = f"--alignment {alignment_file(wildcards.model)}"
    threshold = config["alignment"]["min_cosine"]
    return args if threshold is None else f"{args} --min-alignment-cosine {threshold}"


def align_check_inputs(wildcards):
    inputs = {"mapping": BANK["mapping"], "prompts": PROMPTS}
    for i, path in enumerate(adapter_model_input(wildcards)):
        inputs[f"model{i}"] = path
    return inputs


def align_check_clap(wildcards):
    """The CLAP of the model's declared space (the bank CLAP for AudioLDM1 by default)."""
    return clap_flags(model_space(wildcards.model))


REFERENCE_STATS = f"{P}/reference/ref_stats.npz"
# the style bank's audio embedded by the judge (evaluation.clap), once per workflow
JUDGE_BANK = f"{P}/bank/judge_bank.npz"
CLASSIFIER_BANK = (
    f"{P}/bank/classifier_bank.npz"  # evaluation.classifier's bank embeddings
)
# per model: planted copies of bank windows against bank-internal and generated negatives
COPY_CALIBRATION = f"{R}/copy_audit/{{model}}/copy_calibration.json"


def reference_shard_args():
    """Reference shards as DATASET=SHARD_DIR words (reference_stats tags each clip)."""
    return " ".join(
        f"{name}={d}"
        for name in config["evaluation"]["reference_datasets"]
        for d in shard_dirs(name)
    )


def reference_composition_args():
    """evaluation.reference_composition as DATASET=weight:W / DATASET=count:N words."""
    return " ".join(
        f"{name}={kind}:{value}"
        for name, part in config["evaluation"]["reference_composition"].items()
        for kind, value in part.items()
    )


def classifier_bank_input(wildcards):
    """The classifier's bank embeddings (ast_style_sim) when evaluation.classifier is on."""
    return [CLASSIFIER_BANK] if CLASSIFIER else []


def classifier_bank_flag(wildcards, input):
    return f"--classifier-bank {input.classifier_bank}" if CLASSIFIER else ""


def judge_input(wildcards):
    """The evaluation judge's CLAP folder when the workflow writes it (demo, bench)."""
    return model_input(config["evaluation"]["clap"]["model"])


def reference_shards(wildcards):
    return [
        d
        for name in config["evaluation"]["reference_datasets"]
        for d in shard_dirs(name)
    ]


def reference_inputs(wildcards):
    inputs = {"shards": reference_shards(wildcards)}
    for i, path in enumerate(model_input(config["clap"]["model"])):
        inputs[f"clap{i}"] = path
    return inputs
