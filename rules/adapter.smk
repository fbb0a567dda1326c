# Style adapter per model: a bank item's CLAP audio embedding (512) -> the model's
# conditioning, trained through the frozen VAE + UNet (denoising loss on the item's latent).
# One job per model x adapter variant ({variant}: "" for the configured adapter_training,
# "@lr=...,hidden=..." for a sweep's adapter knobs; rcmg.workflow.sweeps.adapter_variant).


include: "inputs/adapter.smk"


rule train_adapter:
    input:
        unpack(adapter_inputs),
    output:
        checkpoint=f"{ADAPTER_DIR}/style_adapter.safetensors",
        config=f"{ADAPTER_DIR}/adapter_config.json",
        metrics=f"{ADAPTER_DIR}/metrics.jsonl",
        plot=report(
            f"{ADAPTER_DIR}/loss.png",
            category="Adapters",
            subcategory="{model}{variant}",
            caption="../report/adapter_loss.rst",
        ),
    log:
        f"{LOGS}/train_adapter/{{model}}{{variant}}.log",
    benchmark:
        f"{BENCH}/train_adapter/{{model}}{{variant}}.tsv"
    wildcard_constraints:
        variant=r"(@[^/]+)?",
    conda:
        "../envs/torch-gpu.yaml"
    threads: res("train_adapter", "cpus")
    resources:
        **gpu_request("train_adapter"),
        mem_mb=res_attempt("train_adapter", "mem_mb"),
        runtime=res("train_adapter", "runtime"),
        cpus_per_task=res("train_adapter", "cpus"),
        require_cuda=require_cuda("train_adapter"),
        slurm_partition=res("train_adapter", "partition"),
    params:
        check_cuda=cli("check_cuda"),
        cli=cli("train_adapter"),
        model_id=model_ref_of,
        family=lambda wc: shell_quote(MODELS[wc.model]["family"]),
        topk=lookup(dpath="models/{model}/retrieval/style_topk", within=config),
        temp=lookup(dpath="models/{model}/retrieval/style_temp", within=config),
        clap=lambda wc: clap_flags(model_space(wc.model)),
        epochs=adapter_setting("epochs"),
        batch=config["adapter_training"]["batch"],
        lr=adapter_setting("lr"),
        wd=config["adapter_training"]["weight_decay"],
        hidden=adapter_setting("hidden"),
        val=config["adapter_training"]["val_fraction"],
        max_items=config["adapter_training"]["max_items"],
        max_eval=config["adapter_training"]["max_eval_items"],
        seconds=config["adapter_training"]["seconds"],
        draws=config["adapter_training"]["eval_draws"],
        segments_root=parent_of_first("segments"),
        exclude=config["adapter_training"]["exclude_cosine"],
        seed=config["adapter_training"]["seed"],
        family_options=adapter_family_flags,
        out_dir=parent_of("checkpoint"),
        code=code("train_adapter"),
    shell:
        "python {params.check_cuda} --rule train_adapter --policy {resources.require_cuda} "
        "--log {log} && python {params.cli} --model-key {wildcards.model} --model-id {params.model_id:q} "
        "--family {params.family} --prompts {input.prompts:q} {params.clap} "
        "--bank {input.bank} --bank-mapping {input.bank_mapping} --index {input.index} "
        "--style-topk {params.topk} --style-temp {params.temp} --epochs {params.epochs} "
        "--batch {params.batch} --lr {params.lr} --weight-decay {params.wd} "
        "--hidden {params.hidden} --val-fraction {params.val} --seed {params.seed} "
        "--exclude-cosine {params.exclude} --max-items {params.max_items} "
        "--max-eval-items {params.max_eval} "
        "--seconds {params.seconds} --eval-draws {params.draws} "
        "--segments-root {params.segments_root} {params.family_options} "
        "--out-dir {params.out_dir} > {log} 2>&1"


# An original .pt projector (models.<key>.projector) -> safetensors adapter, weights only.
rule convert_projector:
    input:
        "{path}.pt",
    output:
        "{path}.projector.safetensors",
    log:
        f"{LOGS}/convert_projector/{{path}}.log",
    localrule: True
    conda:
        "../envs/torch-gpu.yaml"
    params:
        cli=cli("convert_projector"),
        code=code("convert_projector"),
    shell:
        "python {params.cli} --pt {input:q} --out {output:q} > {log:q} 2>&1"
