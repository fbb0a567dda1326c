# Embedded demo assets, written only when config.demo.enabled: a synthetic corpus in
# the real dataset layouts and tiny random-weight models in Hugging Face folder format.


rule demo_dataset:
    output:
        directory(f"{DEMO}/raw/{{demo_kind}}"),
    log:
        f"{LOGS}/demo/dataset_{{demo_kind}}.log",
    conda:
        "../envs/audio.yaml"
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=res("default", "runtime"),
    params:
        cli=cli("demo_dataset"),
        seed=config["demo"]["seed"],
        seconds_scale=config["demo"]["seconds_scale"],
        code=code("demo_dataset"),
    shell:
        "python {params.cli} --only {wildcards.demo_kind} --out {output} "
        "--seed {params.seed} --seconds-scale {params.seconds_scale} > {log} 2>&1"


rule demo_model:
    output:
        directory(f"{DEMO}/models/{{tiny_kind}}"),
    log:
        f"{LOGS}/demo/model_{{tiny_kind}}.log",
    conda:
        "../envs/torch-gpu.yaml"
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=res("default", "runtime"),
    params:
        cli=cli("demo_model"),
        seed=config["demo"]["seed"],
        code=code("demo_model"),
    shell:
        "python {params.cli} --kind {wildcards.tiny_kind} --out {output} "
        "--seed {params.seed} > {log} 2>&1"
