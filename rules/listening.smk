# Blind A/B listening test: static page + key from the runs; ingest of the raters' CSVs.


include: "inputs/listening.smk"


localrules:
    listening_test,
    listening_ingest,


rule listening_test:
    input:
        run_items=[f"{run}/items.jsonl" for run in listening_runs()],
        bank_mapping=BANK["mapping"],
        segments=shard_dirs(BANK_DS),
    output:
        page=directory(LISTEN["page"]),
        key=LISTEN["key"],
    log:
        f"{LOGS}/listening_test.log",
    conda:
        "../envs/report.yaml"
    params:
        cli=cli("listening_test"),
        runs=lambda wc, input: [os.path.dirname(p) for p in input.run_items],
        segments_root=parent_of_first("segments"),
        conditions=" ".join(LISTENING["conditions"]),
        baseline=LISTENING["baseline"],
        all_pairs="--all-pairs" if LISTENING["all_pairs"] else "",
        max_items=LISTENING["max_items"],
        identical=LISTENING["identical_catch"],
        degraded=LISTENING["degraded_catch"],
        lufs=LISTENING["target_lufs"],
        peak=LISTENING["max_peak_dbfs"],
        ratings="" if LISTENING["ratings"] else "--no-ratings",
        seed=LISTENING["seed"],
        code=code("listening_test"),
    shell:
        "python {params.cli} --runs {params.runs} --out-dir {output.page} --key {output.key} "
        "--conditions {params.conditions} --baseline {params.baseline} {params.all_pairs} "
        "--max-items {params.max_items} --identical-catch {params.identical} "
        "--degraded-catch {params.degraded} --target-lufs {params.lufs} "
        "--max-peak-dbfs {params.peak} {params.ratings} --seed {params.seed} "
        "--bank-mapping {input.bank_mapping} --segments-root {params.segments_root} "
        "> {log} 2>&1"


rule listening_ingest:
    input:
        key=LISTEN["key"],
        answers=listening_answers,
    output:
        prefs=LISTEN["prefs"],
        table=f"{R}/listening/preferences.csv",
        raters=f"{R}/listening/raters.csv",
    log:
        f"{LOGS}/listening_ingest.log",
    conda:
        "../envs/report.yaml"
    params:
        cli=cli("listening_ingest"),
        answers_dir=LISTENING["answers_dir"],
        identical=LISTENING["screen"]["max_identical_failures"],
        degraded=LISTENING["screen"]["max_degraded_failures"],
        answered=LISTENING["screen"]["min_answered_fraction"],
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        code=code("listening_ingest"),
    shell:
        "python {params.cli} --answers-dir {params.answers_dir} --key {input.key} "
        "--out {output.prefs} --max-identical-failures {params.identical} "
        "--max-degraded-failures {params.degraded} --min-answered-fraction {params.answered} "
        "--n-boot {params.n_boot} --seed {params.seed} > {log} 2>&1"
