# Helpers shared by the rules files: paths, input functions, params builders.
# No logic inside rules; rules call these.

import glob
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

# stdlib-only imports: keep `snakemake -n` fast
from rcmg.workflow.codehash import step_code_hash  # noqa: E402
from rcmg.generation.config_checks import problems  # noqa: E402
from rcmg.workflow.kinds import (  # noqa: E402
    DATASET_KINDS,
    MODEL_KINDS,
    STYLE_TYPES,
    TINY_KINDS,
)
from rcmg.models.hf_loading import model_reference  # noqa: E402
from rcmg.generation.families import family_class  # noqa: E402
from rcmg.bank import spaces as style_spaces  # noqa: E402
from rcmg.workflow import plan_cost, sweeps  # noqa: E402
from rcmg.generation.prompt_count import prompt_count as count_prompts  # noqa: E402
from rcmg.standins.real_arch import config_files as bench_config_files  # noqa: E402

_problems = problems(config, Path.cwd())
if _problems:
    raise ValueError(
        "config problems (fix these in your config file):\n  - "
        + "\n  - ".join(_problems)
    )

SCRIPTS = Path(workflow.basedir) / "workflow_scripts"

# Jobs run `python workflow_scripts/STEP.py`. Without conda (local runs, the test cluster),
# that is the interpreter running Snakemake, so `.venv/bin/snakemake` needs no activation;
# with --sdm conda it is the rule's env.
if not workflow.deployment_settings.deployment_method:
    _bin = shlex.quote(str(Path(sys.executable).parent))
    shell.prefix(f"set -euo pipefail; export PATH={_bin}:$PATH; ")
P = config["paths"]["processed"]
R = config["paths"]["results"]
LOGS = config["paths"]["logs"]
BENCH = config["paths"]["benchmarks"]
DEMO = config["demo"]["root"]
BENCH_MODELS = config["bench"]["root"]
DATASETS = config["datasets"]
MODELS = config["models"]
CONDITIONS = config["conditions"]
SEEDS = config["seeds"]
BANK_DS = config["bank"]["dataset"]
RUN = f"{R}/runs/{{model}}/{{condition}}/seed{{seed}}"
# Models as the CLIs take them: ID, or ID@REVISION where the config pins a hub commit
# (clap.revision, evaluation.clap.revision, models.<m>.revision; config/README.md).
CLAP_REF = model_reference(config["clap"]["model"], config["clap"].get("revision"))
JUDGE_REF = model_reference(
    config["evaluation"]["clap"]["model"], config["evaluation"]["clap"].get("revision")
)


CLASSIFIER = config["evaluation"].get("classifier") or None
CLASSIFIER_REF = (
    model_reference(CLASSIFIER["model"], CLASSIFIER.get("revision"))
    if CLASSIFIER
    else None
)


def classifier_flag():
    """``--classifier ID[@REV]`` for reference_stats and evaluate (empty when off)."""
    return f"--classifier {shell_quote(CLASSIFIER_REF)}" if CLASSIFIER_REF else ""


def classifier_input(wildcards):
    """The classifier's folder when the workflow writes it (the demo's tiny AST)."""
    return model_input(CLASSIFIER["model"]) if CLASSIFIER else []


def model_ref(model):
    """``models.<model>`` as ID or ID@REVISION."""
    return model_reference(MODELS[model]["id"], MODELS[model].get("revision"))


def model_ref_of(wildcards):
    return model_ref(wildcards.model)


def model_family(model):
    """The family class of ``models.<model>.family`` (rcmg.generation.families): its
    plan-time traits decide which checks and flags a model's jobs get."""
    return family_class(MODELS[model]["family"])


# The prompt set: `prompts`, or the TSV import_prompts writes from `benchmark_prompts`.
BENCHMARK_PROMPTS = config.get("benchmark_prompts")
PROMPTS = (
    f"{P}/prompts/{BENCHMARK_PROMPTS['benchmark']}.tsv"
    if BENCHMARK_PROMPTS
    else config["prompts"]
)

# Run points (rcmg.workflow.sweeps): every configured model x condition, plus the points
# of config `sweeps` (condition part `base@knob=value,...`) and their matched baselines.
# The {condition} wildcard of RUN is a run condition; base_condition() is its config key.
PLAN = sweeps.plan(config)
POINTS = {(p.model, p.condition): p for p in PLAN}
RUN_CONDITIONS = list(dict.fromkeys(p.condition for p in PLAN))

# Cost before running (config `cost`): the planning process prints clips and estimated
# hours per rule for the prompt set the runs read (PROMPTS); jobs (remote, or spawned by a
# group) and non-planning commands (--lint, --list-rules, ...) do not.
if plan_cost.announces(workflow.is_main_process, sys.argv):
    _PROMPT_COUNT = count_prompts(config, PROMPTS)
    print(
        plan_cost.table(config, PLAN, _PROMPT_COUNT.n, _PROMPT_COUNT.source),
        file=sys.stderr,
    )


def base_condition(condition):
    """The config condition a run condition derives from (itself when not swept)."""
    return sweeps.parse_point(condition)[0]


def run_settings(wildcards):
    """The effective sampling / retrieval / condition settings of a run point."""
    return sweeps.effective(config, wildcards.model, wildcards.condition)


# ----------------- step helpers
def cli(step):
    """A step's CLI, relative to the working directory (``python {params.cli}`` in ``shell:``)."""
    path = SCRIPTS / f"{step}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no step script {path}")
    return os.path.relpath(path)


def code(step):
    """Content hash of a step's CLI and its local imports: a param, so code edits rerun it.

    Every CLI a rule runs passes it (tests/unit/workflow/test_rule_code_hashes.py) but the
    CUDA guard (check_cuda.py before a GPU rule's step): it decides whether a job starts,
    never what the job writes, so editing it must not rerun every GPU job."""
    return step_code_hash(SCRIPTS / f"{step}.py")


def res(rule_name, key):
    """A resource of a rule from config.resources (falling back to resources.default)."""
    table = config["resources"]
    value = table.get(rule_name, {}).get(key, table["default"].get(key))
    return value


def res_attempt(rule_name, key):
    """Scaled with Snakemake's attempt counter, so a job killed over its limit retries bigger."""

    def scaled(wildcards, attempt):
        return int(res(rule_name, key) * attempt)

    return scaled


def parent_of_first(name):
    """The folder holding the first file of a list input (e.g. the segment shards' root)."""

    def value(wildcards, input):
        return os.path.dirname(input[name][0])

    return value


def parent_of(name, of="output"):
    """The folder holding a named input/output file, as a params function."""

    def value(wildcards, input, output):
        return os.path.dirname((input if of == "input" else output)[name])

    return value


def shell_quote(value):
    import shlex

    return shlex.quote(str(value))


# ----------------- cluster: GPU request style, CUDA policy, grouping (config `cluster:`)
# GPU request style, CUDA policy and grouping: config `cluster:` (config/README.md).
CLUSTER = config["cluster"]


def gpu_request(rule_name):
    """The executor resources asking SLURM for this rule's GPUs, in the site's style.

    ``gpus`` -> ``sbatch --gpus=[MODEL:]N``; ``gres`` -> ``--gres=gpu:[MODEL:]N``;
    ``gpu_constraint`` adds ``-C``. Rules with zero GPUs request nothing.
    """
    count = res(rule_name, "gpu")
    if not count:
        return {}
    model = CLUSTER["gpu_model"]
    if CLUSTER["gpu_request"] == "gres":
        request = {"gres": f"gpu:{model}:{count}" if model else f"gpu:{count}"}
    else:
        request = {"gpu": count, **({"gpu_model": model} if model else {})}
    if CLUSTER["gpu_constraint"]:
        request["constraint"] = CLUSTER["gpu_constraint"]
    return request


def require_cuda(rule_name):
    """CUDA policy of a GPU rule's job (a resource: changing it reruns nothing)."""
    return (
        config["resources"]
        .get(rule_name, {})
        .get("require_cuda", CLUSTER["require_cuda"])
    )


GROUP_SIZE = CLUSTER["evaluate_group_size"]


def evaluate_group(wildcards):
    """Group id of an evaluate job: up to GROUP_SIZE of one model's runs share an allocation.

    Snakemake asks for this only when it plans or submits cluster jobs (local runs have no
    groups), after it has read its execution settings: so the group size and the
    one-allocation GPU limit are registered here.
    """
    if GROUP_SIZE <= 1:
        return None
    group_evaluate_jobs()
    limit_group_gpus()
    return f"evaluate_{wildcards.model}"


def limit_group_gpus():
    """A group job runs its members one after another and asks for one member's resources.

    Snakemake sums the resources of a group's parallel members (GPUs, memory, cpus: with
    `--gres` strings not even the GPU count is summed, the rest still is) unless a limit
    makes them sequential. Each evaluate job takes one `group_slots`, scoped "local"
    (Snakefile): the limit of 1 binds inside each submitted group, never across the
    cluster, so the group asks for max(members) and the sum of their runtimes.
    """
    if "group_slots" not in workflow.global_resources:
        workflow.register_resource("group_slots", 1)


def group_evaluate_jobs():
    """GROUP_SIZE evaluate jobs (unconnected in the DAG) make one group job per model."""
    settings = workflow.group_settings
    components = dict(settings.group_components)  # --group-components on the CLI wins
    for model in MODELS:
        components.setdefault(f"evaluate_{model}", GROUP_SIZE)
    settings.group_components = type(settings.group_components)(components)


# ----------------- models and raw data the workflow writes itself (demo, bench)
def demo_model_dir(kind):
    return f"{DEMO}/models/{kind}"


def demo_raw_dir(kind):
    return f"{DEMO}/raw/{kind}"


def produced_by_demo(path):
    """True when ``path`` is an asset the demo rules write (so it becomes a DAG input)."""
    if not config["demo"]["enabled"]:
        return False
    demo_paths = {demo_model_dir(k) for k in TINY_KINDS} | {
        demo_raw_dir(k) for k in DATASET_KINDS
    }
    return is_one_of(path, demo_paths)


def is_one_of(path, paths):
    """``path`` names one of ``paths`` (``a/./b`` and ``a/b/`` count as ``a/b``)."""
    return str(Path(path)) in {str(Path(p)) for p in paths}


def real_arch_model_dir(kind):
    return f"{BENCH_MODELS}/{kind}"


def real_arch_configs(wildcards):
    """The published configs a real-architecture build reads: editing one rebuilds it."""
    return [os.path.relpath(p) for p in bench_config_files(wildcards.arch_kind)]


def produced_by_bench(path):
    """True when ``path`` is a real-architecture model folder the bench rule writes."""
    return is_one_of(path, [real_arch_model_dir(k) for k in MODEL_KINDS])


def model_input(name_or_path):
    """A model folder the workflow writes is an input; a hub id (or the user's folder) is not."""
    written = produced_by_demo(name_or_path) or produced_by_bench(name_or_path)
    return [name_or_path] if written else []


def dataset_root_input(wildcards):
    """Raw roots are inputs only when the demo writes them.

    The user's raw datasets are not declared, so a dry-run plans the full matrix
    without the data; index_sources fails with a clear message if a root is missing.
    """
    root = DATASETS[wildcards.dataset]["root"]
    return [root] if produced_by_demo(root) else []


# ----------------- data: sources, segments, embeddings
def coverage_files():
    """coverage.json of every dataset: reports that use the bank or the reference state them."""
    return [f"{P}/{name}/coverage.json" for name in DATASETS]


def shard_dir(dataset, shard):
    return f"{P}/{dataset}/segments/shard{shard}"


def shard_dirs(dataset):
    return [shard_dir(dataset, i) for i in range(DATASETS[dataset]["shards"])]


def shard_embeddings(dataset):
    return [
        f"{P}/{dataset}/clap/shard{i}.npy" for i in range(DATASETS[dataset]["shards"])
    ]


def shard_dirs_of(wildcards):
    return shard_dirs(wildcards.dataset)


def shard_embeddings_of(wildcards):
    return shard_embeddings(wildcards.dataset)


def clap_embed_inputs(wildcards):
    inputs = {"shard": shard_dir(wildcards.dataset, wildcards.shard)}
    for i, path in enumerate(model_input(config["clap"]["model"])):
        inputs[f"clap{i}"] = path
    return inputs


# ----------------- bank, index, alignment, reference statistics
BANK = {
    "npy": f"{P}/bank/style_bank.npy",
    "mapping": f"{P}/bank/style_bank.jsonl",
    "audit": f"{P}/bank/audit",
    "index": f"{P}/bank/bank.index",
    "index_audit": f"{P}/bank/index_audit.json",
}


# ----------------- style spaces (config/README.md#style-spaces; rcmg.bank.spaces)
# The bank is filtered and deduplicated once, in the bank CLAP's space ("bank"); every
# other space a model declares embeds exactly those items (space_embed) and gets its own
# FAISS index. A space several models share is embedded once.
def model_space_name(model):
    return style_spaces.model_space_name(config, model)


def model_space(model):
    return style_spaces.model_space(config, model)


def models_using_bank():
    return [
        m for m in MODELS if any(m in condition_models(c) for c in bank_conditions())
    ]


def bank_conditions():
    return [c for c in CONDITIONS if needs_bank(c)]


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
COPY_CALIBRATION = f"{P}/bank/copy_calibration.json"


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


# ----------------- adapters
# One folder per model and adapter variant: adapters/<model>/ (the configured
# adapter_training) or adapters/<model>@lr=...,hidden=.../ (a sweep's adapter knobs,
# rcmg.workflow.sweeps.adapter_variant); train_adapter is keyed by {model}{variant}.
ADAPTER_DIR = f"{R}/adapters/{{model}}{{variant}}"


def adapter_checkpoint(model, variant=""):
    """The trained style adapter of ``model`` at ``variant`` (output of train_adapter)."""
    return f"{ADAPTER_DIR}/style_adapter.safetensors".format(
        model=model, variant=variant
    )


def adapter_setting(key):
    """A train_adapter param: ``adapter_training.<key>`` at the job's adapter variant."""

    def value(wildcards):
        return sweeps.adapter_training(config, wildcards.variant)[key]

    return value


def converted_projector(pt_path):
    """Where convert_projector writes the safetensors adapter of an original ``.pt``."""
    return str(Path(pt_path).with_suffix("")) + ".projector.safetensors"


def external_adapter(model, condition):
    """A run's external adapter: the model's converted original projector, else the one
    trained at the run condition's adapter variant (the configured one when unswept)."""
    projector = MODELS[model].get("projector")
    if projector:
        return converted_projector(projector)
    return adapter_checkpoint(model, sweeps.adapter_variant(condition))


def adapter_model_input(wildcards):
    return model_input(MODELS[wildcards.model]["id"]) + model_input(
        model_space(wildcards.model).model
    )


def adapter_inputs(wildcards):
    files = space_files(model_space_name(wildcards.model))
    inputs = {
        "prompts": PROMPTS,
        "bank": files["npy"],
        "bank_mapping": BANK["mapping"],
        "index": files["index"],
        "segments": shard_dirs(BANK_DS),
    }
    for i, path in enumerate(adapter_model_input(wildcards)):
        inputs[f"model{i}"] = path
    return inputs


def needs_bank(condition):
    return CONDITIONS[base_condition(condition)]["type"] in ("prompt_aug", *STYLE_TYPES)


def uses_external_adapter(condition):
    cond = CONDITIONS[base_condition(condition)]
    return cond["type"] in STYLE_TYPES and cond.get("adapter") == "external"


def condition_models(condition):
    """The models a condition runs on (``conditions.<name>.models``, default all)."""
    return CONDITIONS[condition].get("models") or list(MODELS)


def controlled_items(wildcards):
    """A control's input: the items.jsonl of the retrieval run whose angles it matches
    (a swept control matches the target's point at the same values when it is planned).
    """
    base, settings = sweeps.parse_point(wildcards.condition)
    target = CONDITIONS[base].get("control_of")
    if not target:
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
    if cond["type"] in ("prompt_aug", *STYLE_TYPES) or ranks_with_bank_clap(wildcards):
        args.append(clap_flags(model_space(wildcards.model)))
    if s["num_waveforms_per_prompt"] > 1:  # flagged when the ranking CLAP is the judge
        args.append(f"--judge-clap {shell_quote(JUDGE_REF)}")
    if cond["type"] == "prompt_aug":
        args += [
            f"--aug-topk {cond.get('topk', 4)}",
            f"--aug-max-tags {cond.get('max_tags', 6)}",
        ]
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
        if "style_guidance" in cond:
            args.append(f"--style-guidance {cond['style_guidance']}")
        args += [f"--match-angles {path}" for path in controlled_items(wildcards)]
        args.append(alignment_args(wildcards))
        if model_family(wildcards.model).residual_mix:
            args += [
                f"--cond-mix {r['cond_mix']}",
                f"--cond-mix-beta {r['cond_mix_beta']}",
            ]
    return " ".join(args)


def generate_bank_flags(wildcards):
    """The bank of the model's style space and the records its fingerprint is checked with."""
    if not needs_bank(wildcards.condition):
        return ""
    space = model_space_name(wildcards.model)
    files = space_files(space)
    return (
        f"--bank {files['npy']} --bank-mapping {BANK['mapping']} --index {files['index']} "
        f"--style-space {shell_quote(space)} --space-record {' '.join(files['records'])}"
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


def run_dir(model, condition, seed):
    return RUN.format(model=model, condition=condition, seed=seed)


def all_runs():
    """Every planned run folder (configured runs and sweep points), from the config."""
    return [run_dir(p.model, p.condition, s) for p in PLAN for s in SEEDS]


# ----------------- evaluation and comparison
def evaluate_inputs(wildcards):
    inputs = {
        "run_config": f"{RUN}/run_config.json".format(**wildcards),
        "items_jsonl": f"{RUN}/items.jsonl".format(**wildcards),
        "reference": REFERENCE_STATS,
    }
    for i, path in enumerate(model_input(config["clap"]["model"])):
        inputs[f"clap{i}"] = path
    return inputs


def compare_inputs(wildcards):
    return [f"{run}/metrics/summary.json" for run in all_runs()] + [
        f"{run}/report.html" for run in all_runs()
    ]


def compare_run_files(wildcards):
    """The other per-run files compare reads: run_config.json (ranking CLAP, paired
    reference audio) and metrics/per_item.csv."""
    return [f"{run}/run_config.json" for run in all_runs()] + [
        f"{run}/metrics/per_item.csv" for run in all_runs()
    ]


def trained_adapter_configs():
    """adapter_config.json of every style adapter the planned runs train (train_adapter):
    the comparison page's held-out table (a model's converted projector is not trained).
    """
    return list(
        dict.fromkeys(
            f"{ADAPTER_DIR}/adapter_config.json".format(
                model=p.model, variant=sweeps.adapter_variant(p.condition)
            )
            for p in PLAN
            if uses_external_adapter(p.condition)
            and not MODELS[p.model].get("projector")
        )
    )


def primary_hypotheses():
    """evaluation.primary_hypotheses as CONDITION:BASELINE:METRIC[:MODELS] words."""
    words = []
    for h in config["evaluation"]["primary_hypotheses"]:
        models = ",".join(h.get("models", []))
        words.append(
            f"{h['condition']}:{h['baseline']}:{h['metric']}"
            + (f":{models}" if models else "")
        )
    return " ".join(words)


COMPARE = {"index": f"{R}/report/index.html", "summary": f"{R}/report/summary.csv"}


def sweep_points():
    """The sweep points compare draws curves from: from the plan, never from disk."""
    return " ".join(sweeps.sweep_words(PLAN))


def sweep_selection_args():
    """evaluation.sweep_selection as compare flags (the sweeps' `best` table)."""
    s = config["evaluation"]["sweep_selection"]
    return (
        f"--select-objective {s['objective']} --select-constraint {s['constraint']} "
        f"--select-margin {s['margin']} --tuning-fraction {s['tuning_fraction']} "
        f"--split-seed {s['seed']}"
    )


# ----------------------------------------------------------------- listening test
# every key has its value in config/config.yaml (the schema requires them all)
LISTENING = config["listening_test"]
LISTEN = {
    "page": f"{R}/listening/test",
    "key": f"{R}/listening/key.json",
    "prefs": f"{R}/listening/preferences.json",
}


def listening_runs():
    """Run folders the blind test draws from (listening_test.models / conditions: empty =
    all; seeds: empty = the first configured seed)."""
    models = LISTENING["models"] or list(MODELS)
    seeds = LISTENING["seeds"] or list(SEEDS)[:1]
    conditions = LISTENING["conditions"] or list(CONDITIONS)
    for key, chosen, known in (
        ("models", models, MODELS),
        ("seeds", seeds, SEEDS),
        ("conditions", conditions, CONDITIONS),
    ):
        unknown = [v for v in chosen if v not in known]
        if unknown:
            raise ValueError(
                f"listening_test.{key}: {unknown} not in the configured {key} {list(known)}"
            )
    # only the runs the matrix has: a condition runs on the models it names
    return [
        run_dir(m, c, s)
        for m in models
        for c in conditions
        if m in condition_models(c)
        for s in seeds
    ]


def listening_answers(wildcards):
    """The raters' CSVs now in listening_test.answers_dir (a new file reruns the ingest)."""
    return sorted(glob.glob(os.path.join(LISTENING["answers_dir"], "*.csv")))


def listening_input():
    return {"listening": LISTEN["prefs"]} if LISTENING["enabled"] else {}


def listening_flag():
    return f"--listening {LISTEN['prefs']}" if LISTENING["enabled"] else ""


# the spaces other than the bank's that some model's bank condition uses (embedded once each)
SPACES = style_spaces.embedded_spaces(config, models_using_bank())


# ----------------- targets
def all_targets():
    embeddings = [f"{P}/{name}/embeddings.npy" for name in DATASETS]
    return [
        COMPARE["index"],
        COMPARE["summary"],
        BANK["index_audit"],
        BANK["audit"],
        *[space_files(space)["index_audit"] for space in SPACES],
        *embeddings,
    ]
