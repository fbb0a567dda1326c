# Input functions and params builders of rules/listening.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.

# The Snakefile includes listening.smk before evaluate.smk: compare's params call
# listening_flag() while Snakemake parses.

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
