# One job per model x condition x seed: every prompt, batched, one model load.


rule generate:
    input:
        unpack(generate_inputs),
    output:
        run_config=f"{RUN}/run_config.json",
        items_jsonl=f"{RUN}/items.jsonl",
        hardware=f"{RUN}/hardware.json",
        wav=directory(f"{RUN}/wav"),
    log:
        f"{LOGS}/generate/{{model}}/{{condition}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/generate/{{model}}/{{condition}}/seed{{seed}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("generate", "cpus")
    resources:
        **gpu_request("generate"),
        mem_mb=res_attempt("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        cpus_per_task=res("generate", "cpus"),
        require_cuda=require_cuda("generate"),
        slurm_partition=res("generate", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("generate"),
        args=generate_args,
        adapter=generate_adapter_flag,
        bank=generate_bank_flags,
        out_dir=parent_of("run_config"),
        code=code("generate"),
    shell:
        "python {params.check_cuda} --rule generate --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} {params.args} --prompts {input.prompts:q} {params.bank} "
        "{params.adapter} --out-dir {params.out_dir} > {log} 2>&1"
