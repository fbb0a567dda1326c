# Raw datasets -> source tables -> 10-s segments (sharded) -> CLAP embeddings -> gathered.


rule index_sources:
    input:
        dataset_root_input,
    output:
        table=P + "/{dataset}/sources.parquet",
        audit=P + "/{dataset}/sources_audit.csv",
    params:
        kind=dataset_value("kind"),
        root=dataset_value("root"),
        code=code("index_sources"),
    conda:
        "../envs/audio.yaml"
    log:
        LOGS + "/index_sources/{dataset}.log",
    benchmark:
        BENCH + "/index_sources/{dataset}.tsv"
    resources:
        mem_mb=res_attempt("index_sources", "mem_mb"),
        runtime=res("index_sources", "runtime"),
        cpus_per_task=res("index_sources", "cpus"),
        slurm_partition=res("index_sources", "partition"),
    shell:
        "{PY} {S[index_sources]} --kind {params.kind} --root {params.root:q} "
        "--out {output.table} --audit-out {output.audit} 2> {log}"


rule segment:
    input:
        sources=P + "/{dataset}/sources.parquet",
        root=dataset_root_input,
    output:
        directory(P + "/{dataset}/segments/shard{shard}"),
    params:
        root=dataset_value("root"),
        num_shards=dataset_value("shards"),
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
    conda:
        "../envs/audio.yaml"
    log:
        LOGS + "/segment/{dataset}/shard{shard}.log",
    benchmark:
        BENCH + "/segment/{dataset}/shard{shard}.tsv"
    resources:
        mem_mb=res_attempt("segment", "mem_mb"),
        runtime=res("segment", "runtime"),
        cpus_per_task=res("segment", "cpus"),
        slurm_partition=res("segment", "partition"),
    shell:
        "{PY} {S[segment]} --sources {input.sources} --root {params.root:q} "
        "--shard {wildcards.shard} --num-shards {params.num_shards} "
        "--seconds {params.seconds} --hop {params.hop} --tail {params.tail} "
        "--min-tail-seconds {params.min_tail} --sr-clap {params.sr_clap} "
        "--sr-gen {params.sr_gen} --min-rms-dbfs {params.min_rms} --dtype {params.dtype} "
        "--stems {params.stems} --out-dir {output} 2> {log}"


rule clap_embed:
    input:
        unpack(clap_embed_inputs),
    output:
        emb=P + "/{dataset}/clap/shard{shard}.npy",
        stats=P + "/{dataset}/clap/shard{shard}.stats.json",
    params:
        model=config["clap"]["model"],
        batch=config["clap"]["batch"],
        device=config["clap"]["device"],
        dtype=config["clap"]["dtype"],
        code=code("clap_embed"),
    conda:
        "../envs/torch-gpu.yaml"
    log:
        LOGS + "/clap_embed/{dataset}/shard{shard}.log",
    benchmark:
        BENCH + "/clap_embed/{dataset}/shard{shard}.tsv"
    resources:
        mem_mb=res_attempt("clap_embed", "mem_mb"),
        runtime=res("clap_embed", "runtime"),
        cpus_per_task=res("clap_embed", "cpus"),
        gpu=res("clap_embed", "gpu"),
        slurm_partition=res("clap_embed", "partition"),
    shell:
        "{PY} {S[clap_embed]} --segments-dir {input.shard} --model {params.model:q} "
        "--batch {params.batch} --device {params.device} --dtype {params.dtype} "
        "--out {output.emb} --stats {output.stats} 2> {log}"


rule gather:
    input:
        shards=shard_dirs_of,
        embeddings=shard_embeddings_of,
    output:
        npy=P + "/{dataset}/embeddings.npy",
        mapping=P + "/{dataset}/mapping.jsonl",
    params:
        code=code("gather_embeddings"),
    conda:
        "../envs/audio.yaml"
    log:
        LOGS + "/gather/{dataset}.log",
    resources:
        mem_mb=res_attempt("gather", "mem_mb"),
        runtime=res("gather", "runtime"),
        cpus_per_task=res("gather", "cpus"),
        slurm_partition=res("gather", "partition"),
    shell:
        "{PY} {S[gather_embeddings]} --shards {input.shards} --embeddings {input.embeddings} "
        "--out-npy {output.npy} --out-mapping {output.mapping} 2> {log}"
