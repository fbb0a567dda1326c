# Per-run metrics + report.html, then the cross-run comparison page (local).


include: "inputs/evaluate.smk"


localrules:
    compare,


# Style similarity in the judge's space: every bank row's audio embedded by the judge.
rule judge_bank_embed:
    input:
        judge=judge_input,
        mapping=BANK["mapping"],
        segments=shard_dirs(BANK_DS),
    output:
        JUDGE_BANK,
    log:
        f"{LOGS}/judge_bank_embed.log",
    benchmark:
        f"{BENCH}/judge_bank_embed.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("judge_bank_embed", "cpus")
    resources:
        **gpu_request("judge_bank_embed"),
        mem_mb=res_attempt("judge_bank_embed", "mem_mb"),
        runtime=res("judge_bank_embed", "runtime"),
        cpus_per_task=res("judge_bank_embed", "cpus"),
        require_cuda=require_cuda("judge_bank_embed"),
        slurm_partition=res("judge_bank_embed", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("judge_bank_embed"),
        model=JUDGE_REF,
        segments_root=parent_of_first("segments"),
        batch=config["evaluation"]["batch"],
        device=config["evaluation"]["clap"]["device"],
        code=code("judge_bank_embed"),
    shell:
        "python {params.check_cuda} --rule judge_bank_embed --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --bank-mapping {input.mapping} "
        "--segments-root {params.segments_root} --clap-model {params.model:q} "
        "--batch {params.batch} --device {params.device} --out {output} > {log} 2>&1"


# The non-CLAP view of style similarity: every bank row's audio embedded by the AudioSet
# classifier (evaluation.classifier); evaluate's ast_style_sim is measured there.
rule classifier_bank_embed:
    input:
        classifier=classifier_input,
        mapping=BANK["mapping"],
        segments=shard_dirs(BANK_DS),
    output:
        CLASSIFIER_BANK,
    log:
        f"{LOGS}/classifier_bank_embed.log",
    benchmark:
        f"{BENCH}/classifier_bank_embed.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("judge_bank_embed", "cpus")
    resources:
        **gpu_request("judge_bank_embed"),
        mem_mb=res_attempt("judge_bank_embed", "mem_mb"),
        runtime=res("judge_bank_embed", "runtime"),
        cpus_per_task=res("judge_bank_embed", "cpus"),
        require_cuda=require_cuda("judge_bank_embed"),
        slurm_partition=res("judge_bank_embed", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("judge_bank_embed"),
        model=CLASSIFIER_REF,
        segments_root=parent_of_first("segments"),
        batch=config["evaluation"]["batch"],
        device=config["evaluation"]["clap"]["device"],
        code=code("judge_bank_embed"),
    shell:
        "python {params.check_cuda} --rule classifier_bank_embed --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --bank-mapping {input.mapping} "
        "--segments-root {params.segments_root} --clap-model {params.model:q} --classifier "
        "--batch {params.batch} --device {params.device} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_inputs),
        judge=judge_input,
        judge_bank=JUDGE_BANK,
        classifier=classifier_input,
        bank=BANK["npy"],
        bank_mapping=BANK["mapping"],
        index=BANK["index"],
        segments=shard_dirs(BANK_DS),
        copy_calibration=COPY_CALIBRATION,
        style_targets=lambda wc: style_targets_file(wc.model),
        classifier_bank=classifier_bank_input,
        coverage=coverage_files(),
    output:
        per_item=f"{RUN}/metrics/per_item.csv",
        summary=f"{RUN}/metrics/summary.json",
        attribution=f"{RUN}/ATTRIBUTION.md",
        bank_items=f"{RUN}/metrics/bank_items.jsonl",
        # the judge's (and classifier's) embeddings of the clips: compare pools them
        embeddings=f"{RUN}/metrics/embeddings.npz",
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
    group:
        evaluate_group
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("evaluate", "cpus")
    resources:
        **gpu_request("evaluate"),
        mem_mb=res_attempt("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        cpus_per_task=res("evaluate", "cpus"),
        require_cuda=require_cuda("evaluate"),
        group_slots=1,
        slurm_partition=res("evaluate", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("evaluate"),
        run_dir=parent_of("run_config", of="input"),
        model=JUDGE_REF,
        style_model=CLAP_REF,
        batch=config["evaluation"]["batch"],
        device=config["evaluation"]["clap"]["device"],
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        mel_max=config["evaluation"]["mel_max_items"],
        fad_blocks=config["evaluation"]["fad_blocks"],
        fad_inf_min_n=config["evaluation"]["fad_inf_min_n"],
        fad_inf_steps=config["evaluation"]["fad_inf_steps"],
        fad_inf_repeats=config["evaluation"]["fad_inf_repeats"],
        style_topk=lookup(dpath="models/{model}/retrieval/style_topk", within=config),
        style_temp=lookup(dpath="models/{model}/retrieval/style_temp", within=config),
        segments_root=parent_of_first("segments"),
        copy_threshold=config["evaluation"]["copy_audit"]["threshold"],
        copy_nearest=config["evaluation"]["copy_audit"]["nearest"],
        copy_semitones=config["evaluation"]["copy_audit"]["max_semitones"],
        copy_flatness=config["evaluation"]["copy_audit"]["max_flatness"],
        classifier=classifier_flag(),
        classifier_bank=classifier_bank_flag,
        code=code("evaluate"),
    shell:
        "python {params.check_cuda} --rule evaluate --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --run-dir {params.run_dir} --clap-model {params.model:q} "
        "--reference-stats {input.reference} --batch {params.batch} --device {params.device} "
        "--n-boot {params.n_boot} --seed {params.seed} --mel-max-items {params.mel_max} "
        "--fad-blocks {params.fad_blocks} --fad-inf-min-n {params.fad_inf_min_n} "
        "--fad-inf-steps {params.fad_inf_steps} --fad-inf-repeats {params.fad_inf_repeats} "
        "--bank {input.bank} --bank-mapping {input.bank_mapping} --index {input.index} "
        "--style-topk {params.style_topk} --style-temp {params.style_temp} "
        "--style-clap-model {params.style_model:q} --coverage {input.coverage} "
        "--segments-root {params.segments_root} --copy-threshold {params.copy_threshold} "
        "--copy-nearest {params.copy_nearest} --copy-max-semitones {params.copy_semitones} "
        "--copy-max-flatness {params.copy_flatness} "
        "--copy-calibration {input.copy_calibration} --judge-bank {input.judge_bank} "
        "--style-targets {input.style_targets} "
        "{params.classifier} {params.classifier_bank} "
        "> {log} 2>&1"


rule compare:
    input:
        compare_inputs,
        unpack(lambda wc: listening_input()),
        # every run's metrics/embeddings.npz: pooled FAD / KAD across seeds
        embeddings=[f"{run}/metrics/embeddings.npz" for run in all_runs()],
        run_files=compare_run_files,
        reference=REFERENCE_STATS,
        coverage=coverage_files(),
        adapters=trained_adapter_configs(),
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
        n_flips=config["evaluation"]["n_flips"],
        seed=config["evaluation"]["seed"],
        min_n=config["evaluation"]["min_n"],
        primary=primary_hypotheses(),
        power=power_args(),
        fad_blocks=config["evaluation"]["fad_blocks"],
        fad_inf_min_n=config["evaluation"]["fad_inf_min_n"],
        fad_inf_steps=config["evaluation"]["fad_inf_steps"],
        fad_inf_repeats=config["evaluation"]["fad_inf_repeats"],
        listening=listening_flag(),
        sweep_points=sweep_points(),
        selection=sweep_selection_args(),
        code=code("compare"),
    shell:
        "python {params.cli} --runs {params.runs} --out-dir {params.out_dir} "
        "--baseline-condition {params.baseline} --bench-root {params.bench_root} "
        "--n-boot {params.n_boot} --n-flips {params.n_flips} --seed {params.seed} "
        "--reference-stats {input.reference} "
        "--min-n {params.min_n} --primary {params.primary} {params.power} "
        "--fad-blocks {params.fad_blocks} --fad-inf-min-n {params.fad_inf_min_n} "
        "--fad-inf-steps {params.fad_inf_steps} --fad-inf-repeats {params.fad_inf_repeats} "
        "--coverage {input.coverage} {params.listening} --sweep-points {params.sweep_points} "
        "--adapters {input.adapters} "
        "{params.selection} > {log} 2>&1"
