# Per-run metrics + report.html, then the cross-run comparison page (local).


localrules:
    compare,


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        per_item=RUN + "/metrics/per_item.csv",
        summary=RUN + "/metrics/summary.json",
        report=report(
            RUN + "/report.html",
            category="Runs",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}", "seed": "{seed}"},
        ),
    params:
        run_dir=RUN,
        model=config["clap"]["model"],
        batch=config["evaluation"]["batch"],
        device=config["clap"]["device"],
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        mel_max=config["evaluation"]["mel_max_items"],
        code=code("evaluate"),
    conda:
        "../envs/torch-gpu.yaml"
    log:
        LOGS + "/evaluate/{model}/{condition}/seed{seed}.log",
    benchmark:
        BENCH + "/evaluate/{model}/{condition}/seed{seed}.tsv"
    resources:
        mem_mb=res_attempt("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        cpus_per_task=res("evaluate", "cpus"),
        gpu=res("evaluate", "gpu"),
        slurm_partition=res("evaluate", "partition"),
    shell:
        "{PY} {S[evaluate]} --run-dir {params.run_dir} --clap-model {params.model:q} "
        "--reference-stats {input.reference} --batch {params.batch} --device {params.device} "
        "--n-boot {params.n_boot} --seed {params.seed} --mel-max-items {params.mel_max} "
        "2> {log}"


rule compare:
    input:
        compare_inputs,
    output:
        index=report(COMPARE["index"], category="Comparison"),
        summary=report(COMPARE["summary"], category="Comparison"),
    params:
        runs=all_runs(),
        out_dir=R + "/report",
        baseline=config["evaluation"]["baseline_condition"],
        bench_root=BENCH,
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        code=code("compare"),
    conda:
        "../envs/report.yaml"
    log:
        LOGS + "/compare.log",
    shell:
        "{PY} {S[compare]} --runs {params.runs} --out-dir {params.out_dir} "
        "--baseline-condition {params.baseline} --bench-root {params.bench_root} "
        "--n-boot {params.n_boot} --seed {params.seed} 2> {log}"
