# Style bank (filter, dedupe, normalise, audit), FAISS index, and the FAD reference stats.


include: "inputs/bank.smk"


rule build_bank:
    input:
        unpack(bank_inputs),
    output:
        npy=BANK["npy"],
        mapping=BANK["mapping"],
        audit=directory(BANK["audit"]),
    log:
        f"{LOGS}/build_bank.log",
    benchmark:
        f"{BENCH}/build_bank.tsv"
    conda:
        "../envs/audio.yaml"
    threads: res("build_bank", "cpus")
    resources:
        mem_mb=res_attempt("build_bank", "mem_mb"),
        runtime=res("build_bank", "runtime"),
        cpus_per_task=res("build_bank", "cpus"),
        slurm_partition=res("build_bank", "partition"),
    params:
        cli=cli("build_bank"),
        dedupe=config["bank"]["dedupe_cosine"],
        code=code("build_bank"),
    shell:
        "python {params.cli} --embeddings {input.npy} --mapping {input.mapping} "
        "--filter {input.filter} --dedupe-cosine {params.dedupe} --out-bank {output.npy} "
        "--out-mapping {output.mapping} --audit-dir {output.audit} > {log} 2>&1"


rule build_index:
    input:
        npy=BANK["npy"],
    output:
        index=BANK["index"],
        audit=BANK["index_audit"],
    log:
        f"{LOGS}/build_index.log",
    benchmark:
        f"{BENCH}/build_index.tsv"
    conda:
        "../envs/audio.yaml"
    threads: res("build_index", "cpus")
    resources:
        mem_mb=res_attempt("build_index", "mem_mb"),
        runtime=res("build_index", "runtime"),
        cpus_per_task=res("build_index", "cpus"),
        slurm_partition=res("build_index", "partition"),
    params:
        cli=cli("build_index"),
        kind=config["index"]["kind"],
        nlist=config["index"]["nlist"],
        nprobe=config["index"]["nprobe"],
        hnsw_m=config["index"]["hnsw_m"],
        ef_search=config["index"]["ef_search"],
        recall_sample=config["index"]["recall_sample"],
        k=config["index"]["recall_k"],
        code=code("build_index"),
    shell:
        "python {params.cli} --bank {input.npy} --kind {params.kind} --nlist {params.nlist} "
        "--nprobe {params.nprobe} --hnsw-m {params.hnsw_m} --ef-search {params.ef_search} "
        "--recall-sample {params.recall_sample} --k {params.k} --threads {threads} "
        "--out {output.index} --audit {output.audit} > {log} 2>&1"


rule reference_stats:
    input:
        unpack(reference_inputs),
        judge=judge_input,
        classifier=classifier_input,
    output:
        REFERENCE_STATS,
    log:
        f"{LOGS}/reference_stats.log",
    benchmark:
        f"{BENCH}/reference_stats.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("reference_stats", "cpus")
    resources:
        **gpu_request("reference_stats"),
        mem_mb=res_attempt("reference_stats", "mem_mb"),
        runtime=res("reference_stats", "runtime"),
        cpus_per_task=res("reference_stats", "cpus"),
        require_cuda=require_cuda("reference_stats"),
        slurm_partition=res("reference_stats", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("reference_stats"),
        model=JUDGE_REF,
        shards=reference_shard_args(),
        composition=reference_composition_args(),
        max_items=config["evaluation"]["reference_max_items"],
        seed=config["evaluation"]["seed"],
        batch=config["evaluation"]["batch"],
        device=config["evaluation"]["clap"]["device"],
        classifier=classifier_flag(),
        code=code("reference_stats"),
    shell:
        "python {params.check_cuda} --rule reference_stats --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --shards {params.shards} "
        "--composition {params.composition} --clap-model {params.model:q} "
        "--max-items {params.max_items} --seed {params.seed} --batch {params.batch} "
        "--device {params.device} {params.classifier} --out {output} > {log} 2>&1"


# AudioLDM1 has no audio tower: does its text tower share the bank CLAP's space?
rule align_check:
    input:
        unpack(align_check_inputs),
    output:
        f"{R}/alignment/{{model}}.json",
    log:
        f"{LOGS}/align_check/{{model}}.log",
    benchmark:
        f"{BENCH}/align_check/{{model}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("align_check", "cpus")
    resources:
        **gpu_request("align_check"),
        mem_mb=res_attempt("align_check", "mem_mb"),
        runtime=res("align_check", "runtime"),
        cpus_per_task=res("align_check", "cpus"),
        require_cuda=require_cuda("align_check"),
        slurm_partition=res("align_check", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("align_check"),
        model_id=model_ref_of,
        family=lambda wc: shell_quote(MODELS[wc.model]["family"]),
        clap=align_check_clap,
        device=config["clap"]["device"],
        code=code("align_check"),
    shell:
        "python {params.check_cuda} --rule align_check --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --model-id {params.model_id:q} "
        "--family {params.family} {params.clap} --bank-mapping {input.mapping} --prompts {input.prompts:q} --device {params.device} "
        "--out {output} > {log} 2>&1"


# A model's style space other than the bank CLAP's (models.<m>.style_space): the bank's
# items, same rows and order, embedded with that space's CLAP (config/README.md#style-spaces).
rule space_embed:
    input:
        unpack(space_embed_inputs),
    output:
        npy=f"{P}/bank/spaces/{{space}}/style_bank.npy",
        record=f"{P}/bank/spaces/{{space}}/space.json",
    log:
        f"{LOGS}/space_embed/{{space}}.log",
    benchmark:
        f"{BENCH}/space_embed/{{space}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("space_embed", "cpus")
    resources:
        **gpu_request("space_embed"),
        mem_mb=res_attempt("space_embed", "mem_mb"),
        runtime=res("space_embed", "runtime"),
        cpus_per_task=res("space_embed", "cpus"),
        require_cuda=require_cuda("space_embed"),
        slurm_partition=res("space_embed", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("space_embed"),
        model=lambda wc: space_model_flags(space_spec(wc)),
        segments_root=parent_of_first("shards"),
        batch=config["clap"]["batch"],
        device=config["clap"]["device"],
        dtype=config["clap"]["dtype"],
        code=code("space_embed"),
    shell:
        "python {params.check_cuda} --rule space_embed --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --space {wildcards.space} "
        "--bank-mapping {input.mapping} --segments-root {params.segments_root} "
        "{params.model} --batch {params.batch} --device {params.device} "
        "--dtype {params.dtype} --out {output.npy} --record {output.record} > {log} 2>&1"


# Each space gets its own index, built and audited by the same step as the bank's.
use rule build_index as build_space_index with:
    input:
        npy=f"{P}/bank/spaces/{{space}}/style_bank.npy",
    output:
        index=f"{P}/bank/spaces/{{space}}/bank.index",
        audit=f"{P}/bank/spaces/{{space}}/index_audit.json",
    log:
        f"{LOGS}/build_index/{{space}}.log",
    benchmark:
        f"{BENCH}/build_index/{{space}}.tsv"
