# Config and the helpers several stages share: paths, the run plan, step/resource helpers,
# the cluster's GPU request, which model folders the workflow writes, bank paths and run
# folders. Each stage's own input functions and params builders sit at the top of its
# rules file (rules/<stage>.smk); no logic inside rules, rules call these.

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
    AUDIO_PROMPT_TYPES,
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
RUN_CONDITIONS = list(dict.fromkeys(p.condition for p in PLAN))

# Cost before running (config `cost`): the planning process prints clips and estimated
# hours per rule for the prompt set the runs read (PROMPTS); jobs (remote, or spawned by a
# group) and non-planning commands (--lint, --list-rules, ...) do not.
if plan_cost.announces(workflow.is_main_process, sys.argv):
    _PROMPT_COUNT = count_prompts(config, PROMPTS)
    print(
        plan_cost.table(
            config,
            PLAN,
            _PROMPT_COUNT.n,
            _PROMPT_COUNT.source,
            steps_for=lambda m, sampling: model_family(m).planned_steps(sampling),
        ),
        plan_cost.power_table(config, PLAN, _PROMPT_COUNT.n),
        sep="\n",
        file=sys.stderr,
    )


def base_condition(condition):
    """The config condition a run condition derives from (itself when not swept)."""
    return sweeps.parse_point(condition)[0]


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


# ----------------- cluster: GPU request style and CUDA policy (config `cluster:`,
# config/README.md); evaluate's grouping is in rules/evaluate.smk.
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


def produced_by_bench(path):
    """True when ``path`` is a real-architecture model folder the bench rule writes."""
    return is_one_of(path, [real_arch_model_dir(k) for k in MODEL_KINDS])


def model_input(name_or_path):
    """A model folder the workflow writes is an input; a hub id (or the user's folder) is not."""
    written = produced_by_demo(name_or_path) or produced_by_bench(name_or_path)
    return [name_or_path] if written else []


# ----------------- segment shards (data writes them; bank, adapter, reference read them)
def shard_dir(dataset, shard):
    return f"{P}/{dataset}/segments/shard{shard}"


def shard_dirs(dataset):
    return [shard_dir(dataset, i) for i in range(DATASETS[dataset]["shards"])]


# ----------------- the style bank's paths, the conditions that read it, run folders
BANK = {
    "npy": f"{P}/bank/style_bank.npy",
    "mapping": f"{P}/bank/style_bank.jsonl",
    "audit": f"{P}/bank/audit",
    "index": f"{P}/bank/bank.index",
    "index_audit": f"{P}/bank/index_audit.json",
}


def models_using_bank():
    return [
        m for m in MODELS if any(m in condition_models(c) for c in bank_conditions())
    ]


def bank_conditions():
    return [c for c in CONDITIONS if needs_bank(c)]


def needs_bank(condition):
    return CONDITIONS[base_condition(condition)]["type"] in (
        "prompt_aug",
        *STYLE_TYPES,
        *AUDIO_PROMPT_TYPES,
    )


def uses_audio_prompt(condition):
    """continuation / melody: the top retrieved item's audio (its segment shards) is an input."""
    return CONDITIONS[base_condition(condition)]["type"] in AUDIO_PROMPT_TYPES


def uses_init_audio(condition):
    """The init-audio route (conditions.<c>.init_noise_level): the top retrieved item's
    audio (its segment shards) starts the denoising; no angle to match."""
    return CONDITIONS[base_condition(condition)].get("init_noise_level") is not None


def uses_bank_audio(condition):
    """The generate job reads bank items' audio: continuation / melody or init audio."""
    return uses_audio_prompt(condition) or uses_init_audio(condition)


def uses_external_adapter(condition):
    cond = CONDITIONS[base_condition(condition)]
    return cond["type"] in STYLE_TYPES and cond.get("adapter") == "external"


def condition_models(condition):
    """The models a condition runs on (``conditions.<name>.models``, default all)."""
    return CONDITIONS[condition].get("models") or list(MODELS)


def run_dir(model, condition, seed):
    return RUN.format(model=model, condition=condition, seed=seed)


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
