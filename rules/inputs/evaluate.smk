# Input functions and params builders of rules/evaluate.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.

# evaluate's cluster grouping (config cluster.evaluate_group_size)
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


# ----------------- evaluation and comparison
def all_runs():
    """Every planned run folder (configured runs and sweep points), from the config."""
    return [run_dir(p.model, p.condition, s) for p in PLAN for s in SEEDS]


def copy_negative_runs(model):
    """The copy audit's generated negatives: the model's runs of prompt-type conditions
    (every sweep point, the first configured seed), which never saw the bank. One seed:
    adding a seed must not recalibrate, and so rerun, the finished evaluations."""
    return [
        run_dir(p.model, p.condition, s)
        for p in PLAN
        if p.model == model
        and CONDITIONS[base_condition(p.condition)]["type"] == "prompt"
        for s in SEEDS[:1]
    ]


def copy_negative_items(wildcards):
    """items.jsonl of :func:`copy_negative_runs` (generate writes it with the wavs)."""
    return [f"{run}/items.jsonl" for run in copy_negative_runs(wildcards.model)]


def coverage_files():
    """coverage.json of every dataset: reports that use the bank or the reference state them."""
    return [f"{P}/{name}/coverage.json" for name in DATASETS]


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
    """evaluation.primary_hypotheses as CONDITION:BASELINE:METRIC[:MODELS][:ni=MARGIN]
    words; a non-inferiority entry without a margin takes evaluation.noninferiority_margin.
    """
    evaluation = config["evaluation"]
    words = []
    for h in evaluation["primary_hypotheses"]:
        word = f"{h['condition']}:{h['baseline']}:{h['metric']}"
        models = ",".join(h.get("models", []))
        if models:
            word += f":{models}"
        if h.get("test", "two-sided") == "noninferiority":
            word += f":ni={h.get('margin', evaluation['noninferiority_margin'])}"
        elif "margin" in h:
            raise ValueError(
                f"evaluation.primary_hypotheses entry {h}: a margin needs "
                "test: noninferiority (or remove the margin)"
            )
        words.append(word)
    return " ".join(words)


def power_args():
    """evaluation.power as compare flags: the power of power.csv's MDE and the effect
    sizes whose prompts needed it states (defaults: plan_cost.power_settings)."""
    settings = plan_cost.power_settings(config)
    effects = " ".join(f"{m}={v}" for m, v in settings["effect_sizes"].items())
    return f"--power-target {settings['target_power']} --power-effects {effects}"


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
