"""The config is validated before any job runs; dry-runs plan the full matrix without data."""

from __future__ import annotations

import copy
import re
import shutil

import pytest
import yaml
from rcmg.bank import spaces

from .helpers import copy_workflow, job, planned_jobs, rule_counts, run_points, snakemake


@pytest.fixture()
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def _edit(workdir, edit, name="edited.yaml", base="config/config.yaml"):
    cfg = yaml.safe_load((workdir / base).read_text())
    edit(cfg)
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return f"config/{name}"


def test_real_config_plans_full_matrix_without_data(workdir):
    out = snakemake(workdir, "-n").stdout
    counts = rule_counts(planned_jobs(out))
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    configured = sum(len(c.get("models") or cfg["models"]) for c in cfg["conditions"].values())
    # 4 conditions + 2 controls on 3 models, style_only, guided on 3 models, and the
    # controls of retrieval_external and retrieval_guided (2 each, 3 models)
    assert configured == 3 * 4 + 3 + 3 + 1 + 3 + 4 * 3
    points = run_points(cfg)  # the real config has no sweeps: its overlay sweeps.yaml does
    assert "sweeps" not in cfg and len(points) == configured
    n_runs = len(points) * len(cfg["seeds"])
    n_shards = sum(d["shards"] for d in cfg["datasets"].values())
    # sampling.prompt_shards: a sharded run is K generate_shard jobs + one gather_generate
    shards = {m: spec["sampling"].get("prompt_shards", 1) for m, spec in cfg["models"].items()}
    runs = [m for c in cfg["conditions"].values() for m in c.get("models") or cfg["models"]]
    runs *= len(cfg["seeds"])
    assert counts.get("generate", 0) == sum(shards[m] == 1 for m in runs)
    assert counts.get("gather_generate", 0) == sum(shards[m] > 1 for m in runs)
    assert counts.get("generate_shard", 0) == sum(shards[m] for m in runs if shards[m] > 1)
    assert counts.get("generate_shard", 0) >= n_runs  # the real config shards its 1000 prompts
    assert counts["evaluate"] == n_runs
    assert counts["segment"] == n_shards
    assert counts["clap_embed"] == n_shards
    assert counts["index_sources"] == len(cfg["datasets"])
    assert counts["train_adapter"] == len(cfg["models"])
    for single in (
        "build_bank",
        "build_index",
        "reference_stats",
        "judge_bank_embed",
        "classifier_bank_embed",
        "compare",
    ):
        assert counts[single] == 1
    assert counts["style_target"] == len(cfg["models"])  # one style target per model
    # one embedding + one index per style space other than the bank's (rcmg.bank.spaces)
    n_spaces = len(spaces.embedded_spaces(cfg))
    assert n_spaces == sum(m["style_space"] != "bank" for m in cfg["models"].values())
    assert counts["space_embed"] == counts["build_space_index"] == n_spaces
    # the real config never writes demo assets
    assert "demo_model" not in counts and "demo_dataset" not in counts


def test_dry_run_states_each_primarys_mde_from_the_pilots_power_csv(workdir):
    """evaluation.power.variance_from (the real config: the pilot's power.csv): the planner
    prints each planned primary's MDE at the real config's 1000 prompts; the compare rule
    gets the power settings as flags."""
    from rcmg.evaluation import comparison
    from rcmg.workflow import power

    row = power.power_row(
        condition="retrieval_native",
        baseline="prompt",
        model="audioldm2",
        metric="clap_style_sim",
        test="two-sided",
        margin=None,
        n=100,
        sd=0.03,
        m=36,
        alpha=0.05,
        target=0.8,
        effect=0.01,
        n_flips=10000,
        variance_source="pilot",
    )
    source = workdir / "results/pilot/report/power.csv"
    source.parent.mkdir(parents=True)
    source.write_text(comparison.power_csv([row]))
    out = snakemake(workdir, "-n", "-p").stdout
    mde = power.mde(0.03, 1000, 0.05 / 36, 0.8, "two-sided", None, 10000)
    assert "power of the 36 planned primaries (evaluation.power): MDE at 1000 prompts" in out
    assert "SD of the per-prompt differences from results/pilot/report/power.csv" in out
    line = next(
        ln for ln in out.splitlines() if ln.startswith("  audioldm2: retrieval_native vs prompt")
    )
    assert f"clap_style_sim (two-sided): sd 0.03, MDE {mde:.3g}; N for 0.01: " in line
    assert (
        "audioldm: retrieval_native vs prompt clap_text_sim (noninferiority, margin 0.02): " in out
    )
    compare = next(ln for ln in out.splitlines() if "compare.py" in ln)
    assert "--power-target 0.8 --power-effects clap_style_sim=0.01 clap_text_sim=0.0 " in compare


# rules that run with another rule's resources table
RESOURCES_OF = {
    "generate_shard": "generate",
    "build_space_index": "build_index",
    "classifier_bank_embed": "judge_bank_embed",
}


def test_every_job_gets_its_configured_cpus_as_threads(workdir):
    """Snakemake sets OMP_NUM_THREADS = threads in each job: without ``threads:`` torch, faiss
    and BLAS would run single-threaded whatever resources.<rule>.cpus says."""
    out = snakemake(workdir, "-n", "--cores", "64").stdout
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())["resources"]
    threads: dict[str, set[int]] = {}
    rule = None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            threads.setdefault(rule, set()).add(1)  # Snakemake prints threads only when > 1
        elif line.strip().startswith("threads:") and rule:
            threads[rule] = {int(line.split(":")[1])}
    assert threads, out[-2000:]
    # rules declared with `use rule X as Y` run with X's resources
    for rule, seen in threads.items():
        table = RESOURCES_OF.get(rule, rule)
        expected = cfg.get(table, {}).get("cpus", cfg["default"]["cpus"]) if table in cfg else 1
        assert seen == {expected}, (rule, seen, expected)
    assert threads["generate_shard"] == {cfg["generate"]["cpus"]} == {4}
    assert threads["segment"] == {cfg["segment"]["cpus"]} == {2}


def test_demo_config_plans_demo_assets(workdir):
    out = snakemake(workdir, "-n", "-p", "--configfile", "config/demo.yaml").stdout
    jobs = planned_jobs(out)
    for kind in ("clap", "audioldm", "audioldm2", "audioldm2-music", "ast"):
        assert job("demo_model", tiny_kind=kind) in jobs
    # one job re-embeds the bank with the judge for every evaluate job
    assert job("judge_bank_embed") in jobs
    for kind in ("maestro", "urmp", "fsd50k"):
        assert job("demo_dataset", demo_kind=kind) in jobs
    # text similarity preserved: the configured non-inferiority primaries reach compare
    primary = re.search(r"--primary (.*?) --fad-blocks", out).group(1).split()
    assert "retrieval_native:prompt:clap_text_sim:ni=0.02" in primary
    assert "retrieval_native:prompt:clap_style_sim" in primary
    assert re.search(r"--n-flips 2000 ", out)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["models"]["audioldm2"]["sampling"].update(stpes=5), "stpes"),
        (lambda c: c["models"]["audioldm2"]["sampling"].update(steps=-5), "steps"),
        (lambda c: c["models"]["audioldm2"].update(family="audioldm3"), "audioldm3"),
        (lambda c: c["models"]["audioldm"]["retrieval"].update(alpha=1.5), "alpha"),
        (lambda c: c.update(prompts="config/prompts/nope.txt"), "nope.txt"),
        (lambda c: c["conditions"].update(bad={"type": "retrieval"}), "adapter"),
        (lambda c: c["bank"].update(dataset="maestro"), "role"),
        (lambda c: c["conditions"]["retrieval_random"].update(control_of="prompt"), "control_of"),
        (lambda c: c["conditions"]["style_only"].update(models=["audioldm2"]), "style_only"),
        (lambda c: c["evaluation"].update(baseline_condition="nothing"), "nothing"),
        (
            lambda c: c["evaluation"]["primary_hypotheses"][0].update(margin=0.02),
            "noninferiority",
        ),
        (lambda c: c["resources"]["generate"].update(gpus=1), "gpus"),
        (lambda c: c["models"]["audioldm"]["sampling"].update(prompt_shards=0), "prompt_shards"),
        (
            lambda c: c.update(benchmark_prompts={"benchmark": "musiccaps", "csv": "no.csv"}),
            "benchmark_prompts.csv",
        ),
        (
            lambda c: c.update(benchmark_prompts={"benchmark": "musicbench", "csv": "x.csv"}),
            "musicbench",
        ),
    ],
    ids=[
        "typo-key",
        "negative-steps",
        "unknown-pipeline",
        "alpha-out-of-range",
        "missing-prompt-file",
        "retrieval-without-adapter",
        "bank-from-reference-dataset",
        "control-of-a-non-retrieval-condition",
        "style-only-on-audioldm2",
        "unknown-baseline",
        "margin-without-noninferiority",
        "unknown-resource-key",
        "zero-prompt-shards",
        "missing-benchmark-csv",
        "unknown-benchmark",
    ],
)
def test_bad_config_fails_before_any_job_naming_the_problem(workdir, edit, expected):
    config = _edit(workdir, edit)
    proc = snakemake(workdir, "-n", "--configfile", config, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout
    assert not (workdir / "results").exists()
    assert not (workdir / "logs").exists()


def test_missing_raw_dataset_is_reported_by_index_sources(workdir, tmp_path):
    """Raw roots are not DAG inputs (dry-runs plan without data); the job names the folder."""
    shutil.rmtree(workdir / "data", ignore_errors=True)
    proc = snakemake(
        workdir,
        "--cores",
        "1",
        "data/processed/urmp/sources.parquet",
        check=False,
    )
    assert proc.returncode != 0
    log = (workdir / "logs/index_sources/urmp.log").read_text()
    assert "data/raw/urmp" in log


def test_original_projector_is_converted_before_generation(workdir):
    """models.<key>.projector: the .pt is converted (weights only) and used as the adapter."""
    (workdir / "projectors").mkdir()
    (workdir / "projectors" / "aldm2.pt").write_bytes(b"placeholder: dry-run only")
    config = _edit(
        workdir, lambda c: c["models"]["audioldm2"].update(projector="projectors/aldm2.pt")
    )
    out = snakemake(workdir, "-n", "-p", "--configfile", config).stdout
    counts = rule_counts(planned_jobs(out))
    assert counts["convert_projector"] == 1
    assert "--adapter-checkpoint projectors/aldm2.projector.safetensors" in out
    # the comparison page shows the trained adapters' held-out losses: not the projector's
    assert set(compare_adapters(out)) == {
        f"results/adapters/{m}/adapter_config.json" for m in ("audioldm", "audioldm2-music")
    }


def compare_adapters(out: str) -> list[str]:
    """The adapter_config.json files of the planned compare command (--adapters)."""
    line = next(ln for ln in out.splitlines() if "compare.py" in ln)
    return re.search(r"--adapters (.*?) --select-objective", line).group(1).split()


def test_sweep_overlay_plans_its_grid_with_matched_baselines(workdir):
    """config/sweeps.yaml: 5 alphas x 3 guidances on every style condition and model, the
    guidances on prompt_aug, AudioLDM1's residual beta; guidance sweeps the prompt baseline at the same values. Planned
    with the SLURM profile: every point is its own submitted GPU job."""
    out = snakemake(
        workdir, "-n", "-p", "--profile", "slurm", "--configfile", "config/sweeps.yaml"
    ).stdout
    jobs = planned_jobs(out)
    counts = rule_counts(jobs)
    base = yaml.safe_load((workdir / "config/config.yaml").read_text())
    cfg = {**base, **yaml.safe_load((workdir / "config/sweeps.yaml").read_text())}
    points = run_points(cfg)
    # one run per point and seed: generate, or generate_shard x K + gather_generate for a
    # model with sampling.prompt_shards = K (config.yaml: 8)
    runs = counts.get("generate", 0) + counts.get("gather_generate", 0)
    assert runs == counts["evaluate"] == len(points) * len(cfg["seeds"])
    # shared inputs are not swept: built once (one bank and index, the configured adapter
    # of each model once, plus one per adapter variant of the `adapter` sweep)
    adapter_grid = cfg["sweeps"]["adapter"]["product"]
    trained = cfg["adapter_training"]
    variants = {
        (lr, hidden)
        for lr in adapter_grid["adapter_lr"]
        for hidden in adapter_grid["adapter_hidden"]
        if (float(lr), hidden) != (float(trained["lr"]), trained["hidden"])
    }
    assert counts["train_adapter"] == len(cfg["models"]) * (1 + len(variants))
    assert "--out-dir results/adapters/audioldm@lr=0.0001,hidden=512 " in out
    # compare reads every trained adapter's held-out record and every run's run_config.json
    # as rule inputs (an edit reruns the page)
    adapters = compare_adapters(out)
    assert len(adapters) == len(set(adapters)) == counts["train_adapter"]
    assert "results/adapters/audioldm@lr=0.0001,hidden=512/adapter_config.json" in adapters
    inputs = re.search(r"^rule compare:\n    input: (.*)$", out, re.M).group(1).split(", ")
    assert set(adapters) <= set(inputs)
    evaluated = [dict(w) for r, w in jobs if r == "evaluate"]
    for w in evaluated:
        run = f"results/runs/{w['model']}/{w['condition']}/seed{w['seed']}"
        assert f"{run}/run_config.json" in inputs and f"{run}/metrics/per_item.csv" in inputs
        assert f"{run}/metrics/embeddings.npz" in inputs  # evaluate declares it; compare pools
    assert counts["build_bank"] == counts["build_index"] == counts["compare"] == 1
    grid = cfg["sweeps"]["alpha_x_guidance"]["product"]
    n_grid = len(grid["alpha"]) * len(grid["guidance"])
    expected_new = 0  # a point equal to a configured run is that run (not new)
    for name in cfg["sweeps"]["alpha_x_guidance"]["conditions"]:
        cond = cfg["conditions"][name]
        for m in cond.get("models") or cfg["models"]:
            alpha = cond.get("alpha", cfg["models"][m]["retrieval"]["alpha"])
            guidance = cfg["models"][m]["sampling"]["guidance"]
            expected_new += n_grid - (alpha in grid["alpha"] and guidance in grid["guidance"])
    for m in cfg["models"]:  # prompt_aug, and prompt matched, at each guidance
        configured_guidance = cfg["models"][m]["sampling"]["guidance"] in grid["guidance"]
        expected_new += 2 * (len(grid["guidance"]) - configured_guidance)
    for name in cfg["sweeps"]["adapter"]["conditions"]:  # one point per adapter variant
        expected_new += len(variants) * len(cfg["conditions"][name].get("models") or cfg["models"])
    beta = cfg["sweeps"]["residual_beta"]  # AudioLDM1's residual on its own
    for name in beta["conditions"]:
        for m in beta["models"]:
            values = beta["product"]["cond_mix_beta"]
            own = cfg["models"][m]["retrieval"]["cond_mix_beta"]
            expected_new += len(values) - (
                cfg["conditions"][name].get("cond_mix_beta", own) in values
            )
    configured = sum(len(c.get("models") or cfg["models"]) for c in cfg["conditions"].values())
    assert len(points) == configured + expected_new
    planned = {dict(w)["condition"] for r, w in jobs if r in ("generate", "gather_generate")}
    assert {"prompt@guidance=2.6", "retrieval_random@guidance=3.4,alpha=0.12"} <= planned
    seed = cfg["seeds"][0]
    # a swept control matches the angles of the retrieval point at the same values
    point = "guidance=2.6,alpha=0.02"
    control = next(
        ln
        for ln in out.splitlines()
        if "--model-key audioldm " in ln and f"--condition retrieval_random@{point} " in ln
    )
    target = f"results/runs/audioldm/retrieval_native@{point}/seed{seed}/items.jsonl"
    assert f"--match-angles {target}" in control
    for rule, shard in (("generate_shard", ", shard=0"), ("evaluate", "")):
        block = re.search(
            rf"^rule {rule}:\n(?:    .*\n)*?    wildcards: model=audioldm, "
            rf"condition=prompt@guidance=2\.6, seed={seed}{shard}\n    resources: (.*)$",
            out,
            re.M,
        )
        assert block and "slurm_partition=gpu" in block.group(1), rule
        assert re.search(r"\bgpu=1\b", block.group(1)), block.group(1)
    # the cost before running: planned clips and estimated hours per rule
    assert f"planned runs: {len(points)} points x {len(cfg['seeds'])} seed(s)" in out
    line = rf"^\s+generate\s+{len(points)} runs\s+\d+ clips\s+[\d.]+ h$"
    assert re.search(line, out, re.M), out[:2000]


def test_pilot_config_plans_all_models_with_controls_and_angle_sweep(workdir):
    """config/pilot.yaml (issue 13 item 8) plans without data or weights."""
    out = snakemake(workdir, "-n", "--configfile", "config/pilot.yaml").stdout
    jobs = planned_jobs(out)
    counts = rule_counts(jobs)
    pilot = yaml.safe_load((workdir / "config/pilot.yaml").read_text())
    base = yaml.safe_load((workdir / "config/config.yaml").read_text())
    conditions = {**base["conditions"], **pilot["conditions"]}
    n = sum(len(c.get("models") or base["models"]) for c in conditions.values())
    # guided on 3 models; the external and guided controls (2 each) on 3 models
    assert counts["generate"] == n == 34 + 12 and counts["train_adapter"] == 3
    from snakemake.utils import update_config

    merged = copy.deepcopy(base)
    update_config(merged, pilot)  # as Snakemake merges --configfile (deep, key by key)
    assert counts["space_embed"] == len(spaces.embedded_spaces(merged)) == 2
    planned = {dict(w).get("condition") for r, w in jobs if r == "generate"}
    assert {"retrieval_deg15", "retrieval_deg15_random", "retrieval_mismatched"} <= planned
    assert "results/pilot/runs/audioldm2-music/retrieval_deg15_random/seed42" in out
    prompts = [
        ln
        for ln in (workdir / pilot["prompts"]).read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert len(prompts) == 100
    # power: no pilot comparison yet; the file the planner would read
    assert "power of the 36 planned primaries (evaluation.power): MDE at 100 prompts" in out
    assert (
        "no finished run's variance available yet: would read results/pilot/report/power.csv" in out
    )


def test_musicgen_overlay_plans_its_models_beside_audioldm(workdir):
    """config/musicgen.yaml (issue 27): the MusicGen checkpoints' runs (sharded), their
    adapters and the continuation-length sweep plan without data or weights; each
    continuation job gets its prompt length and the bank's segment shards; MusicGen-melody
    plans melody and its two controls (audio_prompt_source) and no adapter."""
    out = snakemake(workdir, "-n", "-p", "--configfile", "config/musicgen.yaml").stdout
    jobs = planned_jobs(out)
    counts = rule_counts(jobs)
    # 3 AudioLDM + 3 MusicGen (adapter: external) + musicgen-small at K = 2 and 8
    assert counts["train_adapter"] == 8
    trains = [ln for ln in out.splitlines() if "train_adapter.py" in ln]
    k8 = next(ln for ln in trains if "adapters/musicgen-small@style_tokens=8 " in ln)
    assert "--style-tokens 8" in k8
    assert not [ln for ln in trains if "--model-key audioldm" in ln and "--style-tokens" in ln]
    runs = {(dict(w)["model"], dict(w)["condition"]) for r, w in jobs if r == "gather_generate"}
    assert ("musicgen-small", "continuation@prompt_seconds=1") in runs
    assert ("musicgen-large", "retrieval_external_random") in runs
    assert not {c for m, c in runs if m.startswith("musicgen") and "native" in c}
    line = next(ln for ln in out.splitlines() if "--condition continuation@prompt_seconds=5 " in ln)
    assert "--family musicgen" in line and "--prompt-seconds 5.0" in line
    assert "--segments-root data/processed/fsd50k/segments" in line
    assert "--scheduler default" in line
    melody = {c for m, c in runs if m == "musicgen-melody"}
    assert melody == {"prompt", "prompt_aug", "melody", "melody_random", "melody_mismatched"}
    assert not [ln for ln in trains if "--model-key musicgen-melody" in ln]
    for condition, source in (("melody", "top"), ("melody_random", "random")):
        line = next(ln for ln in out.splitlines() if f"--condition {condition} " in ln)
        assert "--family musicgen_melody" in line and "--condition-type melody" in line
        assert f"--audio-prompt-source {source}" in line and "--prompt-seconds 10.0" in line
        assert "--segments-root data/processed/fsd50k/segments" in line


def test_stable_audio_overlay_plans_its_model_and_the_k_sweep_beside_audioldm(workdir):
    """config/stable_audio.yaml (issue 26): stable-audio-open's runs (sharded) with the
    published scheduler, its adapters at K = 8 (configured), 2 and 4, and no native-path or
    style-guidance condition on it, planned without data or weights; the init-audio runs
    and their controls get --init-noise-level (the configured 10 and each swept level),
    --adapter none and the bank's segment shards, and no --match-angles."""
    out = snakemake(workdir, "-n", "-p", "--configfile", "config/stable_audio.yaml").stdout
    jobs = planned_jobs(out)
    counts = rule_counts(jobs)
    assert counts["train_adapter"] == 6  # 3 AudioLDM + stable-audio-open at K = 8, 2, 4
    trains = [ln for ln in out.splitlines() if "train_adapter.py" in ln]
    for k, variant in ((8, "stable-audio-open "), (2, "stable-audio-open@style_tokens=2 ")):
        line = next(ln for ln in trains if f"adapters/{variant}" in ln)
        assert f"--style-tokens {k}" in line and "--family stable_audio" in line
    assert not [ln for ln in trains if "--model-key audioldm" in ln and "--style-tokens" in ln]
    runs = {(dict(w)["model"], dict(w)["condition"]) for r, w in jobs if r == "gather_generate"}
    sao = {c for m, c in runs if m == "stable-audio-open"}
    assert {"prompt", "prompt_aug", "retrieval_external_mismatched"} <= sao
    assert "retrieval_external_random@adapter_style_tokens=2" in sao
    assert not {c for c in sao if "native" in c or "guided" in c or c == "style_only"}
    line = next(
        ln
        for ln in out.splitlines()
        if "--model-key stable-audio-open" in ln and "generate.py" in ln
    )
    assert "--scheduler default" in line and "--steps 100" in line and "--guidance 7.0" in line
    generate = [ln for ln in out.splitlines() if "generate.py" in ln]

    def command(condition: str) -> str:
        return next(ln for ln in generate if f"--condition {condition} " in ln)

    for condition, level in (
        ("init_audio", "10.0"),
        ("init_audio_random", "10.0"),
        ("init_audio_mismatched@init_noise_level=3", "3.0"),
        ("init_audio_random@init_noise_level=30", "30.0"),
    ):
        line = command(condition)
        assert f"--init-noise-level {level} " in line and "--adapter none " in line
        assert "--segments-root data/processed/fsd50k/segments " in line
        assert "--match-angles" not in line and "--adapter-checkpoint" not in line
    assert ("stable-audio-open", "init_audio@init_noise_level=1") in runs
    # the style-token control still matches its run's angles; no other run reads init audio
    assert "--match-angles" in command("retrieval_external_random")
    assert not [ln for ln in generate if "--init-noise-level" in ln and "init_audio" not in ln]


def test_musicgen_pilot_layers_on_the_pilot_and_the_musicgen_overlay(workdir):
    """config/musicgen_pilot.yaml: the pilot's native-path angle conditions stay on the
    AudioLDM models; MusicGen gets style tokens at fixed pooled angles with controls."""
    files = ("config/pilot.yaml", "config/musicgen.yaml", "config/musicgen_pilot.yaml")
    out = snakemake(workdir, "-n", "--configfile", *files).stdout
    runs = {
        (dict(w)["model"], dict(w)["condition"]) for r, w in planned_jobs(out) if r == "generate"
    }
    for model in ("musicgen-small", "musicgen-medium", "musicgen-large"):
        assert {(model, c) for c in ("tokens_deg2", "tokens_deg5", "tokens_deg5_random")} <= runs
        assert (model, "retrieval_deg15") not in runs
    assert ("audioldm2", "retrieval_deg15_random") in runs
    assert "results/pilot/runs/musicgen-large/tokens_deg5_mismatched/seed42" in out
    assert "100 prompts" in out


def test_stable_audio_pilot_layers_on_the_pilot_and_the_stable_audio_overlay(workdir):
    """config/stable_audio_pilot.yaml: the pilot's native-path angle conditions stay on the
    AudioLDM models; Stable Audio gets style tokens at fixed sequence angles with controls
    matching their run's angles, and the overlay's init-audio levels, all on the pilot's 100
    prompts in one job per run."""
    files = ("config/pilot.yaml", "config/stable_audio.yaml", "config/stable_audio_pilot.yaml")
    out = snakemake(workdir, "-n", "-p", "--configfile", *files).stdout
    runs = {
        (dict(w)["model"], dict(w)["condition"]) for r, w in planned_jobs(out) if r == "generate"
    }
    sao = {c for m, c in runs if m == "stable-audio-open"}
    assert {"sao_tokens_deg15", "sao_tokens_deg30", "sao_tokens_deg30_random"} <= sao
    assert {"init_audio", "init_audio_mismatched@init_noise_level=1"} <= sao
    assert "retrieval_external_random@adapter_style_tokens=2" in sao
    assert not {c for c in sao if c.startswith("retrieval_deg") or "native" in c}
    assert ("audioldm2", "retrieval_deg15_random") in runs
    assert not {c for m, c in runs if m != "stable-audio-open" and c.startswith("sao_")}
    assert "gather_generate" not in rule_counts(planned_jobs(out))  # prompt_shards: 1
    generate = [ln for ln in out.splitlines() if "generate.py" in ln]
    control = next(ln for ln in generate if "--condition sao_tokens_deg30_random " in ln)
    assert "--match-angles results/pilot/runs/stable-audio-open/sao_tokens_deg30/seed42/" in control
    deg15 = next(ln for ln in generate if "--condition sao_tokens_deg15 " in ln)
    assert "--strength-deg 15" in deg15 and "--prompts config/prompts/pilot_prompts.txt" in deg15
    assert "100 prompts" in out


def test_a_space_shared_by_two_models_is_embedded_once_and_used_by_both(workdir):
    """Two models naming one space (or spelling the same model/subfolder/revision): one
    space_embed job, one index, and both models' generate jobs read that bank."""

    def share(cfg):
        aldm2 = cfg["models"]["audioldm2"]["id"]
        cfg["style_spaces"] = {"aldm2_clap": {"model": aldm2, "subfolder": "text_encoder"}}
        cfg["models"]["audioldm2-music"]["style_space"] = "aldm2_clap"

    config = _edit(workdir, share)
    out = snakemake(workdir, "-n", "-p", "--configfile", config).stdout
    counts = rule_counts(planned_jobs(out))
    assert counts["space_embed"] == counts["build_space_index"] == 1
    embed = [line for line in out.splitlines() if "space_embed.py" in line]
    assert len(embed) == 1 and "--space aldm2_clap " in embed[0]
    assert "--model cvssp/audioldm2 --subfolder text_encoder --batch" in embed[0]  # no empty flags
    bank = "data/processed/bank/spaces/aldm2_clap/style_bank.npy"
    for model in ("audioldm2", "audioldm2-music"):
        commands = [
            line
            for line in out.splitlines()
            if "generate.py" in line and f"--model-key {model} " in line and "--bank " in line
        ]
        assert commands and all(f"--bank {bank}" in c for c in commands)
        assert all("--style-space aldm2_clap" in c for c in commands)


def test_candidates_are_ranked_by_the_bank_clap_on_audioldm1_in_every_condition(workdir):
    """num_waveforms_per_prompt > 1: AudioLDM1's generate jobs get the bank CLAP (and its
    weights as inputs) in the prompt condition too; every family is told the judge."""

    def candidates(cfg):
        for model in ("audioldm", "audioldm2"):
            cfg["models"][model]["sampling"]["num_waveforms_per_prompt"] = 2

    config = _edit(workdir, candidates)
    out = snakemake(workdir, "-n", "-p", "--configfile", config).stdout
    generate = [line for line in out.splitlines() if "generate.py" in line]
    aldm1 = [c for c in generate if "--model-key audioldm " in c]
    assert any("--condition prompt " in c for c in aldm1)
    assert all("--clap-model laion/clap-htsat-unfused" in c for c in aldm1)
    for model in ("audioldm", "audioldm2"):
        commands = [c for c in generate if f"--model-key {model} " in c]
        assert commands and all("--judge-clap laion/larger_clap_music" in c for c in commands)
    music = [c for c in generate if "--model-key audioldm2-music " in c]
    assert music and not any("--judge-clap" in c for c in music)  # one waveform: no ranking
