# Published-architecture random-weight models (config.bench), for benchmarks: built from
# the configs in config/bench, never part of the demo. `snakemake bench_models` builds all
# four; a config whose model id is one of these folders (config/bench.yaml) builds it first.


include: "inputs/bench.smk"


rule real_arch_model:
    input:
        real_arch_configs,
    output:
        directory(f"{BENCH_MODELS}/{{arch_kind}}"),
    log:
        f"{LOGS}/bench/real_arch_{{arch_kind}}.log",
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("real_arch_model", "cpus")
    resources:
        mem_mb=res_attempt("real_arch_model", "mem_mb"),
        runtime=res("real_arch_model", "runtime"),
        cpus_per_task=res("real_arch_model", "cpus"),
        slurm_partition=res("real_arch_model", "partition"),
    params:
        cli=cli("real_arch_model"),
        seed=config["bench"]["seed"],
        code=code("real_arch_model"),
    shell:
        "python {params.cli} --kind {wildcards.arch_kind} --out {output} "
        "--seed {params.seed} > {log} 2>&1"


rule bench_models:
    input:
        [real_arch_model_dir(kind) for kind in MODEL_KINDS],
    localrule: True
