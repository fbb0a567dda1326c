# Embedded demo assets, written only when config.demo.enabled: a synthetic corpus in
# the real dataset layouts and tiny random-weight models in Hugging Face folder format.


rule demo_dataset:
    output:
        directory(DEMO + "/raw/{demo_kind}"),
    params:
        seed=config["demo"]["seed"],
        seconds_scale=config["demo"].get("seconds_scale", 1.0),
        code=code("make_demo_corpus"),
    conda:
        "../envs/audio.yaml"
    log:
        LOGS + "/demo/dataset_{demo_kind}.log",
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=res("default", "runtime"),
    shell:
        "{PY} {S[make_demo_corpus]} --only {wildcards.demo_kind} --out {output} "
        "--seed {params.seed} --seconds-scale {params.seconds_scale} 2> {log}"


rule demo_model:
    output:
        directory(DEMO + "/models/{tiny_kind}"),
    params:
        seed=config["demo"]["seed"],
        code=code("build_tiny_models"),
    conda:
        "../envs/torch-gpu.yaml"
    log:
        LOGS + "/demo/model_{tiny_kind}.log",
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=res("default", "runtime"),
    shell:
        "{PY} {S[build_tiny_models]} --kind {wildcards.tiny_kind} --out {output} "
        "--seed {params.seed} 2> {log}"
