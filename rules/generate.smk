# One job per model x condition x seed: every prompt, batched, one model load.


rule generate:
    input:
        unpack(generate_inputs),
    output:
        run_config=RUN + "/run_config.json",
        items_jsonl=RUN + "/items.jsonl",
        hardware=RUN + "/hardware.json",
        wav=directory(RUN + "/wav"),
    params:
        args=generate_args,
        adapter=generate_adapter_flag,
        bank=generate_bank_flags,
        out_dir=RUN,
        code=code("generate"),
    conda:
        "../envs/torch-gpu.yaml"
    log:
        LOGS + "/generate/{model}/{condition}/seed{seed}.log",
    benchmark:
        BENCH + "/generate/{model}/{condition}/seed{seed}.tsv"
    resources:
        mem_mb=res_attempt("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        cpus_per_task=res("generate", "cpus"),
        gpu=res("generate", "gpu"),
        slurm_partition=res("generate", "partition"),
    shell:
        "{PY} {S[generate]} {params.args} --prompts {input.prompts:q} {params.bank} "
        "{params.adapter} --out-dir {params.out_dir} 2> {log}"
