# Copy-audit threshold per model: planted copies of the style bank's own windows (positives)
# against bank-internal pairs and the model's prompt-only clips (negatives). Only that model's
# evaluate jobs wait for its prompt-only generate jobs.


rule copy_calibrate:
    input:
        bank_mapping=BANK["mapping"],
        segments=shard_dirs(BANK_DS),
        generated=copy_negative_items,
    output:
        calibration=COPY_CALIBRATION,
    log:
        f"{LOGS}/copy_calibrate/{{model}}.log",
    conda:
        "../envs/report.yaml"
    threads: res("copy_calibrate", "cpus")
    resources:
        mem_mb=res_attempt("copy_calibrate", "mem_mb"),
        runtime=res("copy_calibrate", "runtime"),
        cpus_per_task=res("copy_calibrate", "cpus"),
        slurm_partition=res("copy_calibrate", "partition"),
    params:
        cli=cli("copy_calibrate"),
        segments_root=parent_of_first("segments"),
        n_windows=config["evaluation"]["copy_audit"]["calibration_windows"],
        semitones=config["evaluation"]["copy_audit"]["max_semitones"],
        max_flatness=config["evaluation"]["copy_audit"]["max_flatness"],
        floor=config["evaluation"]["copy_audit"]["threshold"],
        generated=lambda wc: copy_negative_runs(wc.model),
        seed=config["evaluation"]["seed"],
        code=code("copy_calibrate"),
    shell:
        "python {params.cli} --bank-mapping {input.bank_mapping} "
        "--segments-root {params.segments_root} --n-windows {params.n_windows} "
        "--max-semitones {params.semitones} --max-flatness {params.max_flatness} "
        "--min-threshold {params.floor} "
        "--generated {params.generated} --seed {params.seed} "
        "--out {output.calibration} > {log} 2>&1"
