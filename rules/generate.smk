# One job per model x condition x seed: every prompt, batched, one model load. A model
# with sampling.prompt_shards = K > 1 runs K generate_shard jobs instead (each plans every
# prompt and generates its own whole batches) and gather_generate merges them into the
# same run directory: evaluate and everything downstream see one run either way.


include: "inputs/generate.smk"


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
    wildcard_constraints:
        model=UNSHARDED_MODELS,
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


rule generate_shard:
    input:
        unpack(generate_inputs),
    output:
        run_config=f"{SHARD_RUN}/run_config.json",
        items_jsonl=f"{SHARD_RUN}/items.jsonl",
        hardware=f"{SHARD_RUN}/hardware.json",
        wav=directory(f"{SHARD_RUN}/wav"),
    log:
        f"{LOGS}/generate/{{model}}/{{condition}}/seed{{seed}}.shard{{shard}}.log",
    benchmark:
        f"{BENCH}/generate/{{model}}/{{condition}}/seed{{seed}}.shard{{shard}}.tsv"
    wildcard_constraints:
        model=SHARDED_MODELS,
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
        shard=shard_flags,
        adapter=generate_adapter_flag,
        bank=generate_bank_flags,
        out_dir=parent_of("run_config"),
        code=code("generate"),
    shell:
        "python {params.check_cuda} --rule generate --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} {params.args} {params.shard} --prompts {input.prompts:q} "
        "{params.bank} {params.adapter} --out-dir {params.out_dir} > {log} 2>&1"


# The bank items each prompt's own retrieval returns for this model: every condition of
# the model is scored against them (rcmg.generation.style_targets).
rule style_target:
    input:
        unpack(style_target_inputs),
    output:
        STYLE_TARGETS,
    log:
        f"{LOGS}/style_target/{{model}}.log",
    benchmark:
        f"{BENCH}/style_target/{{model}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("style_target", "cpus")
    resources:
        **gpu_request("style_target"),
        mem_mb=res_attempt("style_target", "mem_mb"),
        runtime=res("style_target", "runtime"),
        cpus_per_task=res("style_target", "cpus"),
        require_cuda=require_cuda("style_target"),
        slurm_partition=res("style_target", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("style_targets"),
        args=style_target_args,
        code=code("style_targets"),
    shell:
        "python {params.check_cuda} --rule style_target --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} {params.args} --prompts {input.prompts:q} "
        "--bank {input.bank} --bank-mapping {input.bank_mapping} --index {input.index} "
        "--out {output} > {log} 2>&1"


rule gather_generate:
    input:
        shards=generate_shard_configs,
    output:
        run_config=f"{RUN}/run_config.json",
        items_jsonl=f"{RUN}/items.jsonl",
        hardware=f"{RUN}/hardware.json",
        wav=directory(f"{RUN}/wav"),
    log:
        f"{LOGS}/generate/{{model}}/{{condition}}/seed{{seed}}.gather.log",
    wildcard_constraints:
        model=SHARDED_MODELS,
    localrule: True
    conda:
        "../envs/audio.yaml"
    params:
        cli=cli("gather_generate"),
        shards=shard_folders,
        out_dir=parent_of("run_config"),
        code=code("gather_generate"),
    shell:
        "python {params.cli} --shards {params.shards} --out-dir {params.out_dir} > {log} 2>&1"


if BENCHMARK_PROMPTS:

    rule import_prompts:
        input:
            csv=BENCHMARK_PROMPTS["csv"],
            # the audio folder itself: a file added at its top level reruns the import
            audio=BENCHMARK_PROMPTS.get("audio_dir") or [],
        output:
            tsv=PROMPTS,
            summary=str(Path(PROMPTS).with_suffix(".json")),
            clips=directory(f"{Path(PROMPTS).parent / Path(PROMPTS).stem}_reference"),
        log:
            f"{LOGS}/import_prompts.log",
        conda:
            "../envs/audio.yaml"
        params:
            cli=cli("import_prompts"),
            args=import_prompts_args(),
            code=code("import_prompts"),
        shell:
            "python {params.cli} {params.args} --csv {input.csv:q} --out {output.tsv:q} > {log} 2>&1"
