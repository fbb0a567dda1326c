# Raw datasets -> source tables -> 10-s segments (sharded) -> CLAP embeddings -> gathered.


include: "inputs/data.smk"


rule index_sources:
    input:
        dataset_root_input,
    output:
        table=f"{P}/{{dataset}}/sources.parquet",
        audit=f"{P}/{{dataset}}/sources_audit.csv",
        coverage=report(
            f"{P}/{{dataset}}/coverage.json",
            category="Datasets",
            labels={"dataset": "{dataset}", "file": "coverage"},
        ),
    log:
        f"{LOGS}/index_sources/{{dataset}}.log",
    benchmark:
        f"{BENCH}/index_sources/{{dataset}}.tsv"
    conda:
        "../envs/audio.yaml"
    threads: res("index_sources", "cpus")
    resources:
        mem_mb=res_attempt("index_sources", "mem_mb"),
        runtime=res("index_sources", "runtime"),
        cpus_per_task=res("index_sources", "cpus"),
        slurm_partition=res("index_sources", "partition"),
    params:
        cli=cli("index_sources"),
        kind=lookup(dpath="datasets/{dataset}/kind", within=config),
        root=lookup(dpath="datasets/{dataset}/root", within=config),
        code=code("index_sources"),
    shell:
        "python {params.cli} --kind {params.kind} --root {params.root:q} "
        "--out {output.table} --audit-out {output.audit} --coverage-out {output.coverage} "
        "> {log} 2>&1"


rule segment:
    input:
        sources=f"{P}/{{dataset}}/sources.parquet",
        root=dataset_root_input,
    output:
        directory(f"{P}/{{dataset}}/segments/shard{{shard}}"),
    log:
        f"{LOGS}/segment/{{dataset}}/shard{{shard}}.log",
    benchmark:
        f"{BENCH}/segment/{{dataset}}/shard{{shard}}.tsv"
    conda:
        "../envs/audio.yaml"
    threads: res("segment", "cpus")
    resources:
        mem_mb=res_attempt("segment", "mem_mb"),
        runtime=res("segment", "runtime"),
        cpus_per_task=res("segment", "cpus"),
        slurm_partition=res("segment", "partition"),
    params:
        cli=cli("segment"),
        root=lookup(dpath="datasets/{dataset}/root", within=config),
        num_shards=lookup(dpath="datasets/{dataset}/shards", within=config),
        seconds=config["segment"]["seconds"],
        hop=config["segment"]["hop_seconds"],
        tail=config["segment"]["tail"],
        min_tail=config["segment"]["min_tail_seconds"],
        sr_clap=config["segment"]["sr_clap"],
        sr_gen=config["segment"]["sr_gen"],
        min_rms=config["segment"]["min_rms_dbfs"],
        dtype=config["segment"]["dtype"],
        stems=config["segment"]["urmp_stems"],
        code=code("segment"),
    shell:
        "python {params.cli} --sources {input.sources} --root {params.root:q} "
        "--shard {wildcards.shard} --num-shards {params.num_shards} "
        "--seconds {params.seconds} --hop {params.hop} --tail {params.tail} "
        "--min-tail-seconds {params.min_tail} --sr-clap {params.sr_clap} "
        "--sr-gen {params.sr_gen} --min-rms-dbfs {params.min_rms} --dtype {params.dtype} "
        "--stems {params.stems} --out-dir {output} > {log} 2>&1"


rule clap_embed:
    input:
        unpack(clap_embed_inputs),
    output:
        emb=f"{P}/{{dataset}}/clap/shard{{shard}}.npy",
        stats=f"{P}/{{dataset}}/clap/shard{{shard}}.stats.json",
    log:
        f"{LOGS}/clap_embed/{{dataset}}/shard{{shard}}.log",
    benchmark:
        f"{BENCH}/clap_embed/{{dataset}}/shard{{shard}}.tsv"
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("clap_embed", "cpus")
    resources:
        **gpu_request("clap_embed"),
        mem_mb=res_attempt("clap_embed", "mem_mb"),
        runtime=res("clap_embed", "runtime"),
        cpus_per_task=res("clap_embed", "cpus"),
        require_cuda=require_cuda("clap_embed"),
        slurm_partition=res("clap_embed", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("clap_embed"),
        model=CLAP_REF,
        batch=config["clap"]["batch"],
        device=config["clap"]["device"],
        dtype=config["clap"]["dtype"],
        code=code("clap_embed"),
    shell:
        "python {params.check_cuda} --rule clap_embed --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --segments-dir {input.shard} --model {params.model:q} "
        "--batch {params.batch} --device {params.device} --dtype {params.dtype} "
        "--out {output.emb} --stats {output.stats} > {log} 2>&1"


rule gather_embeddings:
    input:
        shards=shard_dirs_of,
        embeddings=shard_embeddings_of,
    output:
        npy=f"{P}/{{dataset}}/embeddings.npy",
        mapping=f"{P}/{{dataset}}/mapping.jsonl",
    log:
        f"{LOGS}/gather_embeddings/{{dataset}}.log",
    conda:
        "../envs/audio.yaml"
    threads: res("gather_embeddings", "cpus")
    resources:
        mem_mb=res_attempt("gather_embeddings", "mem_mb"),
        runtime=res("gather_embeddings", "runtime"),
        cpus_per_task=res("gather_embeddings", "cpus"),
        slurm_partition=res("gather_embeddings", "partition"),
    params:
        cli=cli("gather_embeddings"),
        code=code("gather_embeddings"),
    shell:
        "python {params.cli} --shards {input.shards} --embeddings {input.embeddings} "
        "--out-npy {output.npy} --out-mapping {output.mapping} > {log} 2>&1"
