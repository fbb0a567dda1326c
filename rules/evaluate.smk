# Per-run metrics + report.html, then the cross-run comparison page (local).


localrules:
    compare,


rule evaluate:
    input:
        unpack(evaluate_inputs),
        judge=lambda wc: model_input(config["evaluation"]["clap"]["model"]),
        bank=BANK["npy"],
        bank_mapping=BANK["mapping"],
        index=BANK["index"],
        segments=shard_dirs(BANK_DS),
        copy_calibration=COPY_CALIBRATION,
        coverage=coverage_files(),
    output:
        per_item=f"{RUN}/metrics/per_item.csv",
        summary=f"{RUN}/metrics/summary.json",
        attribution=f"{RUN}/ATTRIBUTION.md",
        bank_items=f"{RUN}/metrics/bank_items.jsonl",
        report=report(
            f"{RUN}/report.html",
            category="Runs",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}", "seed": "{seed}"},
            caption="../report/run_report.rst",
        ),
    log:
        f"{LOGS}/evaluate/{{model}}/{{condition}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{condition}}/seed{{seed}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("evaluate", "cpus")
    resources:
        mem_mb=res_attempt("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        cpus_per_task=res("evaluate", "cpus"),
        gpu=res("evaluate", "gpu"),
        slurm_partition=res("evaluate", "partition"),
    params:
        cli=cli("evaluate"),
        run_dir=parent_of("run_config", of="input"),
        model=config["evaluation"]["clap"]["model"],
        style_model=config["clap"]["model"],
        batch=config["evaluation"]["batch"],
        device=config["evaluation"]["clap"]["device"],
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        mel_max=config["evaluation"]["mel_max_items"],
        fad_blocks=config["evaluation"]["fad_blocks"],
        fad_inf_min_n=config["evaluation"]["fad_inf_min_n"],
        fad_inf_steps=config["evaluation"]["fad_inf_steps"],
        fad_inf_repeats=config["evaluation"]["fad_inf_repeats"],
        style_topk=lambda wc: config["models"][wc.model]["retrieval"]["style_topk"],
        style_temp=lambda wc: config["models"][wc.model]["retrieval"]["style_temp"],
        segments_root=lambda wc, input: os.path.dirname(input.segments[0]),
        copy_threshold=config["evaluation"].get("copy_audit", {}).get("threshold", 0.69),
        copy_nearest=config["evaluation"].get("copy_audit", {}).get("nearest", 3),
        copy_semitones=config["evaluation"]
        .get("copy_audit", {})
        .get("max_semitones", 3),
        code=code("evaluate"),
    shell:
        "python {params.cli} --run-dir {params.run_dir} --clap-model {params.model:q} "
        "--reference-stats {input.reference} --batch {params.batch} --device {params.device} "
        "--n-boot {params.n_boot} --seed {params.seed} --mel-max-items {params.mel_max} "
        "--fad-blocks {params.fad_blocks} --fad-inf-min-n {params.fad_inf_min_n} "
        "--fad-inf-steps {params.fad_inf_steps} --fad-inf-repeats {params.fad_inf_repeats} "
        "--bank {input.bank} --bank-mapping {input.bank_mapping} --index {input.index} "
        "--style-topk {params.style_topk} --style-temp {params.style_temp} "
        "--style-clap-model {params.style_model:q} --coverage {input.coverage} "
        "--segments-root {params.segments_root} --copy-threshold {params.copy_threshold} "
        "--copy-nearest {params.copy_nearest} --copy-max-semitones {params.copy_semitones} "
        "--copy-calibration {input.copy_calibration} "
        "> {log} 2>&1"


rule compare:
    input:
        compare_inputs,
        unpack(lambda wc: listening_input()),
        reference=REFERENCE_STATS,
        coverage=coverage_files(),
    output:
        index=report(
            COMPARE["index"], category="Comparison", caption="../report/comparison.rst"
        ),
        summary=report(
            COMPARE["summary"],
            category="Comparison",
            caption="../report/summary_table.rst",
        ),
    log:
        f"{LOGS}/compare.log",
    conda:
        "../envs/report.yaml"
    params:
        cli=cli("compare"),
        runs=all_runs(),
        out_dir=parent_of("index"),
        baseline=config["evaluation"]["baseline_condition"],
        bench_root=BENCH,
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        min_n=config["evaluation"]["min_n"],
        primary=primary_hypotheses(),
        fad_blocks=config["evaluation"]["fad_blocks"],
        fad_inf_min_n=config["evaluation"]["fad_inf_min_n"],
        fad_inf_steps=config["evaluation"]["fad_inf_steps"],
        fad_inf_repeats=config["evaluation"]["fad_inf_repeats"],
        listening=listening_flag(),
        code=code("compare"),
    shell:
        "python {params.cli} --runs {params.runs} --out-dir {params.out_dir} "
        "--baseline-condition {params.baseline} --bench-root {params.bench_root} "
        "--n-boot {params.n_boot} --seed {params.seed} --reference-stats {input.reference} "
        "--min-n {params.min_n} --primary {params.primary} "
        "--fad-blocks {params.fad_blocks} --fad-inf-min-n {params.fad_inf_min_n} "
        "--fad-inf-steps {params.fad_inf_steps} --fad-inf-repeats {params.fad_inf_repeats} "
        "--coverage {input.coverage} {params.listening} > {log} 2>&1"
