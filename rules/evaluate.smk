# Per-run metrics + report.html, then the cross-run comparison page (local).


localrules:
    compare,


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        per_item=f"{RUN}/metrics/per_item.csv",
        summary=f"{RUN}/metrics/summary.json",
        report=report(
            f"{RUN}/report.html",
            category="Runs",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}", "seed": "{seed}"},
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
        model=config["clap"]["model"],
        batch=config["evaluation"]["batch"],
        device=config["clap"]["device"],
        n_boot=config["evaluation"]["n_boot"],
        seed=config["evaluation"]["seed"],
        mel_max=config["evaluation"]["mel_max_items"],
        code=code("evaluate"),
    shell:
        "python {params.check_cuda} --rule evaluate --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --run-dir {params.run_dir} --clap-model {params.model:q} "
        "--reference-stats {input.reference} --batch {params.batch} --device {params.device} "
        "--n-boot {params.n_boot} --seed {params.seed} --mel-max-items {params.mel_max} "
        "> {log} 2>&1"


rule compare:
    input:
        compare_inputs,
    output:
        index=report(COMPARE["index"], category="Comparison"),
        summary=report(COMPARE["summary"], category="Comparison"),
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
        code=code("compare"),
    shell:
        "python {params.cli} --runs {params.runs} --out-dir {params.out_dir} "
        "--baseline-condition {params.baseline} --bench-root {params.bench_root} "
        "--n-boot {params.n_boot} --seed {params.seed} > {log} 2>&1"
