"""The benchmark scripts' logic and command lines (tiny models, no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_dryrun  # noqa: E402
import bench_models  # noqa: E402
import run_all  # noqa: E402


def test_extrapolate_adds_fixed_phases_to_steps_times_step_cost():
    out = bench_models.extrapolate(total_s=10.0, denoise_s=4.0, steps=2, batch=2)
    assert out["sec_per_step"] == pytest.approx(2.0)
    assert out["fixed_s"] == pytest.approx(6.0)
    assert out["ddim200_s_per_batch"] == pytest.approx(406.0)
    assert out["ddim200_s_per_clip"] == pytest.approx(203.0)
    assert out["dpmpp25_s_per_clip"] == pytest.approx(28.0)
    assert out["ddim200_denoise_fraction"] == pytest.approx(400 / 406)
    assert out["extrapolated"] is True


def test_cpu_plans_skip_fp16_and_compile_with_reasons():
    quick = bench_models.plan_variants("cpu", quick=True)
    runnable = [v for v in quick if not v.skip_reason]
    assert runnable == [bench_models.Variant("fp32")]
    reasons = {(v.dtype, v.compiled): v.skip_reason for v in quick}
    assert "GPU only" in reasons[("fp16", False)]
    assert reasons[("fp32", True)] == "not in --quick"
    full_gpu = bench_models.plan_variants("cuda", quick=False)
    assert bench_models.Variant("fp16", compiled=True) in full_gpu
    assert all(not v.skip_reason for v in full_gpu)
    assert bench_models.plan_runs([1, 2], quick=False) == [("ddim", 1), ("ddim", 2), ("dpmpp", 1)]
    assert bench_models.plan_runs([1], quick=True) == [("ddim", 1)]


def test_cpu_full_plan_compiles_the_unet_only_with_a_cxx_compiler(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    full = bench_models.plan_variants("cpu", quick=False)
    runnable = [v for v in full if not v.skip_reason]
    assert runnable == [
        bench_models.Variant("fp32"),
        bench_models.Variant("bf16"),
        bench_models.Variant("fp32", attention="classic"),
        bench_models.Variant("fp32", compiled=True),
    ]
    assert [v.dtype for v in full if v.skip_reason] == ["fp16"]

    monkeypatch.setattr(shutil, "which", lambda name: None)
    full = bench_models.plan_variants("cpu", quick=False)
    compiled = next(v for v in full if v.compiled)
    assert "needs a C++ compiler" in compiled.skip_reason


def test_twin_architecture_is_skipped_only_when_budget_is_short():
    spent = {"audioldm2": 100.0}
    short = bench_models.Budget(50.0)
    assert "same architecture as audioldm2" in bench_models.should_skip_same_architecture(
        "audioldm2-music", spent, short
    )
    assert (
        bench_models.should_skip_same_architecture("audioldm2-music", spent, bench_models.Budget(0))
        == ""
    )
    assert bench_models.should_skip_same_architecture("audioldm", spent, short) == ""


def test_scaled_matrix_multiplies_seeds_then_conditions():
    assert bench_dryrun.split_factor(1) == (1, 1)
    assert bench_dryrun.split_factor(10) == (10, 1)
    assert bench_dryrun.split_factor(100) == (10, 10)
    base = {
        "seeds": [42],
        "conditions": {f"c{i}": {"type": "prompt"} for i in range(4)},
        "prompts": "p",
    }
    scaled = bench_dryrun.scaled_config(base, 100, "config/prompts/x.txt")
    assert len(set(scaled["seeds"])) == 10 and 42 in scaled["seeds"]
    assert len(scaled["conditions"]) == 40
    alphas = [c["alpha"] for n, c in scaled["conditions"].items() if n.startswith("retrieval_a")]
    assert len(set(alphas)) == 36 and all(0 < a < 1 for a in alphas)
    assert scaled["prompts"] == "config/prompts/x.txt"
    assert base["seeds"] == [42] and len(base["conditions"]) == 4  # input untouched


def test_scaled_prompts_repeat_distinct_lines(tmp_path):
    source = tmp_path / "p.txt"
    source.write_text("# comment\na piano\n\nsoft strings\n", encoding="utf-8")
    lines = bench_dryrun.scaled_prompts(source, 3).splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6


def test_growth_is_least_squares_slope_per_1000_jobs():
    rows = [
        {"jobs": 1000, "seconds": 2.0},
        {"jobs": 2000, "seconds": 4.0},
        {"jobs": 3000, "seconds": 6.0},
    ]
    assert bench_dryrun.growth_per_1000_jobs(rows) == pytest.approx(2.0)
    assert bench_dryrun.growth_per_1000_jobs(rows[:1]) is None


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_bench_models_cli_on_tiny_models_writes_rows_and_table(tiny_model, tmp_path, repo_root):
    root = tiny_model("audioldm").parent
    tiny_model("clap")
    out_json = tmp_path / "models.json"
    proc = _run(
        str(HERE / "bench_models.py"), "--quick", "--tiny", "--models", "audioldm,clap",
        "--out", str(root), "--clip-seconds", "1", "--json", str(out_json), cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out_json.read_text())
    measured = [r for r in data["rows"] if r["model"] == "audioldm" and "skipped" not in r]
    assert len(measured) == 1
    row = measured[0]
    assert row["measured_steps"] == 1 and row["batch"] == 1 and row["sec_per_step"] > 0
    assert {"text_encode", "denoise", "vae_decode", "vocoder"} <= set(row["phases_s"])
    assert row["phase_calls"]["denoise"] == 1
    assert row["ddim200_s_per_clip"] > row["dpmpp25_s_per_clip"]
    clap = [r for r in data["rows"] if r["model"] == "clap"]
    assert clap[0]["clips_per_s"] > 0 and 0 < clap[0]["forward_fraction"] < 1
    assert any("GPU only" in r.get("skipped", "") for r in data["rows"])
    assert "audioldm" in proc.stdout and "clips/s" in proc.stdout
    table = run_all.format_table(run_all.rows_for("models", data))
    assert "DDIM-200*" in table and "fp16 on CPU has no fast kernels" in table


def test_bench_models_time_budget_skips_everything_and_still_writes_json(tmp_path, repo_root):
    out_json = tmp_path / "models.json"
    proc = _run(
        str(HERE / "bench_models.py"), "--quick", "--tiny", "--out", str(tmp_path / "never"),
        "--time-budget", "0.001", "--json", str(out_json), cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["model"] for r in rows] == ["audioldm", "audioldm2", "clap", "audioldm2-music"]
    assert all(r["skipped"].startswith("time budget exceeded") for r in rows)
    assert not (tmp_path / "never").exists()


def test_bench_evaluate_times_old_and_new_drawing_on_a_tiny_cell(tmp_path, repo_root):
    out_json = tmp_path / "evaluate.json"
    proc = _run(
        str(HERE / "bench_evaluate.py"), "--clips", "3", "--seconds", "1",
        "--reference-items", "4", "--n-boot", "10", "--device", "cpu",
        "--work-dir", str(tmp_path / "work"), "--json", str(out_json), cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out_json.read_text())
    old, new = data["results"]
    assert (old["drawing"], new["drawing"]) == ("old", "new")
    for r in (old, new):
        assert r["clips"] == 3 and r["mel_pngs"] == 3
        assert r["visualization_files"] == 3 + 2  # the mels, the mel grid, the histograms
        assert 0 < r["forward_s"] <= r["model_calls_s"] < r["total_s"]
        assert r["clap_forward_s"] > 0 and r["classifier_forward_s"] > 0
        assert 0 < r["forward_share"] < 1 and 0 < r["drawing_s"] < r["total_s"]
        assert r["stages_s"]["mel_png"] > 0 and r["stages_s"]["mel_spectrogram_db"] > 0
    assert "forward share" in proc.stdout and "old -> new" in proc.stdout
    table = run_all.format_table(run_all.rows_for("evaluate_tiny", data))
    assert "model-forward share" in table and "drawing new" in table


def test_run_all_runs_a_benchmark_subprocess_and_prints_the_combined_table(
    tmp_path, monkeypatch, capsys
):
    step = run_all.Step(
        "dryrun", "bench_dryrun.py", ["--scales", "1,2", "--demo-config", "", "--sweep-config", ""]
    )
    monkeypatch.setattr(run_all, "plan_steps", lambda quick: [step])
    code = run_all.main(["--quick", "--json-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith("machine: ") and "torch" in printed
    data = json.loads((tmp_path / "dryrun.json").read_text())
    x1, x2 = data["scales"]
    assert x2["counts"]["seeds"] == 2 and x2["jobs"] > x1["jobs"] > 0
    assert data["seconds_per_1000_jobs"] is not None
    assert "config.yaml x2" in printed and "s per 1000 jobs" in printed
    combined = json.loads((tmp_path / "all.json").read_text())
    assert combined["steps"]["dryrun"]["status"] == "ok"


# ---------------------------------------------------------------- gpu_bench (issue 28)

GPU_BENCH_GROUPS = ("env", "flops", "denoiser", "correctness", "generate", "clap", "compile")
ROW_FIELDS = {"device", "device_name", "torch", "cuda", "driver", "group", "variant", "dtype", "batch"}  # fmt: skip


def _numbers(value):
    """Every int / float inside a row (nested dicts and lists too)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _gpu_bench(tmp_path: Path, repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    """``bash gpu_bench.sh --cpu-smoke`` (the GPU run's entry point) into tmp_path/out."""
    import os

    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_BENCH_SITE": str(tmp_path / "site"),
        "GPU_BENCH_WHEELS": str(tmp_path / "no_wheels"),  # nothing to install here
    }
    command = ["bash", str(HERE / "gpu_bench.sh"), "--cpu-smoke", "--out", str(tmp_path / "out"),
               "--work-dir", str(tmp_path / "work"), *args]  # fmt: skip
    return subprocess.run(
        command, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_gpu_bench_cpu_smoke_writes_every_group_through_the_gpu_entry_point(tmp_path, repo_root):
    """The command the GPU machine runs (gpu_bench.sh), in --cpu-smoke mode: tiny models,
    every branch, one JSON file per group with finite numbers and the fields every row needs
    (one out-of-memory simulated: a row, and the variant's larger batches are not run)."""
    import math

    out = tmp_path / "out"
    proc = _gpu_bench(tmp_path, repo_root, "--simulate-oom", "audioldm:bf16-sdpa:2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    install = json.loads((tmp_path / "site" / "gpu_bench_install.json").read_text())
    assert install["installed"] == {} and "diffusers" in install["present"]
    rows = {}
    for group in GPU_BENCH_GROUPS:
        data = json.loads((out / f"{group}.json").read_text())
        assert data["group"] == group and data["mode"] == "cpu-smoke" and data["rows"], group
        for row in data["rows"]:
            assert ROW_FIELDS <= set(row), (group, sorted(ROW_FIELDS - set(row)))
            assert row["group"] == group and row["device"] == "cpu" and row["device_name"]
            assert all(math.isfinite(x) for x in _numbers(row)), (group, row)
        rows[group] = data["rows"]
    skipped = [(g, r["variant"], r.get("model"), r["batch"]) for g in rows for r in rows[g] if "skipped" in r]  # fmt: skip
    assert skipped == [
        ("denoiser", "bf16-sdpa", "audioldm", 2),  # the simulated out-of-memory
        ("compile", "fp16-sdpa-compile", "audioldm2", None),  # the smoke compiles one model
    ]
    (oom,) = [r for r in rows["denoiser"] if "skipped" in r]
    assert oom["skipped"].startswith("out of memory: simulated") and oom["dtype"] == "bf16"

    assert sorted(p.name for p in out.iterdir()) == sorted(f"{g}.json" for g in GPU_BENCH_GROUPS)
    (peak,) = [r for r in rows["flops"] if r["variant"] == "peak:bf16_matmul"]
    assert peak["tflops_per_s"] > 0 and peak["dtype"] == "bf16"
    builds = [r for r in rows["env"] if r["variant"].startswith("build:")]
    assert {r["variant"] for r in builds} == {"build:audioldm", "build:audioldm2", "build:clap"}
    assert all(r["built_on"] == "cpu" and r["folder_bytes"] > 0 for r in builds)
    assert rows["env"][0]["install"]["installed"] == {}

    timed = [r for r in rows["denoiser"] if r.get("extrapolated")]
    got = {(r["model"], r["variant"], r["batch"], r["scheduler"]) for r in timed}
    assert got == {
        (m, v, b, s)
        for m in ("audioldm", "audioldm2")
        for v in ("fp16-sdpa", "bf16-sdpa", "fp16-classic")
        for b in (1, 2)
        for s in ("ddim", "dpmpp")
        if (m, v, b) != ("audioldm", "bf16-sdpa", 2)
    }
    for r in timed:
        assert r["s_per_step"] > 0 and r["s_per_clip_extrapolated"] > 0 and r["audio_finite"]
        assert r["target_steps"] == {"ddim": 200, "dpmpp": 25}[r["scheduler"]]
        assert 0 < r["denoiser_share_extrapolated"] < 1 and r["flops_per_step"] > 0
        assert r["fraction_of_bf16_peak"] > 0 and r["phases_s"]["denoise"] > 0
    fp16 = {r["dtype"] for r in timed if r["variant"].startswith("fp16")}
    assert fp16 == {"fp32"} and {r["dtype"] for r in timed if r["variant"] == "bf16-sdpa"} == {"bf16"}  # fmt: skip
    (full,) = [r for r in rows["denoiser"] if r.get("extrapolated") is False]
    assert full["model"] == "audioldm2" and full["measured_over_extrapolated"] > 0

    counted = {(r["variant"], r["batch"]): r["flops_per_step"] for r in rows["flops"] if r["variant"] in ("audioldm", "audioldm2")}  # fmt: skip
    assert counted[("audioldm2", 2)] == pytest.approx(2 * counted[("audioldm2", 1)], rel=0.05)
    assert len([r for r in rows["flops"] if "scheduler" in r]) == len(timed)

    checks = {r["variant"]: r for r in rows["correctness"]}
    assert set(checks) == {"finite_fp16", "finite_bf16", "same_seed_twice", "alpha0_equals_prompt"}
    assert all(r["passed"] for r in checks.values())
    assert checks["alpha0_equals_prompt"]["bit_equal"] and checks["finite_bf16"]["dtype"] == "bf16"

    (gen,) = rows["generate"]
    assert gen["prompts_file"] == "config/prompts/reference_prompts.txt" and gen["n_prompts_file"] == 1000  # fmt: skip
    assert gen["clips"] == gen["prompt_subset"] == 2 and gen["model_loads"] == 1
    assert 0 < gen["denoiser_share_of_job"] < 1 and gen["timings_s"]["load"] > 0
    assert gen["is_pipeline_check"] is True

    (clap,) = rows["clap"]
    assert clap["clips_per_s"] > 0 and 0 < clap["forward_share"] < 1 and clap["rows_finite"]
    (compiled,) = [r for r in rows["compile"] if "skipped" not in r]
    assert compiled["backend"] == "eager" and compiled["compile_s"] >= 0 and compiled["s_per_step"] > 0  # fmt: skip
    assert "inductor" in compiled["note"]
    end = rows["env"][-1]
    assert end["variant"] == "end" and {"diffusers", "faiss-cpu", "soundfile"} <= set(end["imported"])  # fmt: skip


def _fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal valid pure-Python wheel (dist-info only) that pip installs offline."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def test_gpu_bench_installs_only_the_carried_wheels_whose_version_differs(tmp_path, monkeypatch):
    import gpu_bench

    specs = gpu_bench.carried_specs()
    assert "diffusers==0.42.1" in specs and not any(s.startswith(("torch==", "numpy==")) for s in specs)  # fmt: skip
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "carried.txt").write_text("tqdm==4.70.1\nrcmg-fake==1.0\nrcmg-absent==2.0\n")
    _fake_wheel(wheels, "rcmg_fake", "1.0")
    site = tmp_path / "site"
    record = gpu_bench.install_wheels(wheels, site)
    assert record["present"] == {"tqdm": "4.70.1"}  # the pinned version is already here
    assert set(record["installed"]) == {"rcmg-fake==1.0"}
    assert record["kept_device_version"] == {"rcmg-absent==2.0": None}  # no wheel carried
    assert (site / "rcmg_fake-1.0.dist-info" / "METADATA").is_file()
    assert record["from_device"]["torch"]


def test_gpu_bench_spent_budget_leaves_a_row_per_measurement_not_taken(tmp_path, repo_root):
    proc = _gpu_bench(tmp_path, repo_root, "--time-budget", "0.001", "--batches", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = tmp_path / "out"
    for group in ("correctness", "generate", "clap", "denoiser", "compile"):
        rows = json.loads((out / f"{group}.json").read_text())["rows"]
        assert rows and all("skipped" in r for r in rows), group
        reasons = {r["skipped"] for r in rows if not r["skipped"].startswith("runs missing")}
        assert reasons <= {
            "time budget spent",
            "cpu-smoke: torch.compile runs on the tiny audioldm only (time); the GPU run compiles both",
        }, group
    denoiser = json.loads((out / "denoiser.json").read_text())["rows"]
    assert {(r["model"], r["variant"]) for r in denoiser} >= {
        ("audioldm2", "fp16-sdpa-ddim200-full")
    }
    env_rows = json.loads((out / "env.json").read_text())["rows"]
    assert env_rows[-1]["variant"] == "end" and env_rows[-1]["failures"] == []


def test_bench_musicgen_times_the_family_path_on_the_tiny_stand_in(tiny_model, tmp_path, repo_root):
    """bench_musicgen.py: the family's own load and generate, decoder steps timed by hooks,
    a 10-s clip extrapolated as fixed phases + 503 steps x the measured s/step."""
    out_json = tmp_path / "musicgen.json"
    proc = _run(
        str(HERE / "bench_musicgen.py"), "--model-dir", str(tiny_model("musicgen")),
        "--seconds", "0.2", "--repeats", "2", "--json", str(out_json), cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out_json.read_text())
    assert data["decoder_steps"] == 10 + 3 and len(data["runs"]) == 2
    for run in data["runs"]:
        assert run["decoder_calls"] >= data["decoder_steps"] and run["s_per_decoder_step"] > 0
        assert run["audio_samples"] == int(0.2 * 32000)
    best = min(r["s_per_decoder_step"] for r in data["runs"])
    ten = data["extrapolated_10s"]
    assert ten["decoder_steps"] == 503
    assert ten["s_per_clip"] == pytest.approx(ten["fixed_s"] + 503 * best, abs=0.02)
    assert data["random_weights"] is True
    assert (data["kind"], data["prefix_positions"]) == ("musicgen", 0)


def test_bench_musicgen_times_the_melody_condition_on_the_tiny_melody_stand_in(
    tiny_model, tmp_path, repo_root
):
    """bench_musicgen.py --kind musicgen-melody: MusicGen-melody's own load and its melody
    condition (a 10-s chroma as input_features, 235 prepended positions), same accounting."""
    out_json = tmp_path / "melody.json"
    proc = _run(
        str(HERE / "bench_musicgen.py"), "--kind", "musicgen-melody", "--model-dir",
        str(tiny_model("musicgen-melody")), "--seconds", "0.2", "--json", str(out_json),
        cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out_json.read_text())
    assert (data["kind"], data["condition"]) == ("musicgen-melody", "melody (10-s chroma)")
    assert data["prefix_positions"] == 235 and data["decoder_steps"] == 13
    [run] = data["runs"]
    assert run["decoder_calls"] >= 13 and run["audio_samples"] == int(0.2 * 32000)
    ten = data["extrapolated_10s"]
    assert ten["s_per_clip"] == pytest.approx(
        ten["fixed_s"] + 503 * run["s_per_decoder_step"], abs=0.02
    )


def test_melody_wave_is_the_note_sequence_its_chroma_shows():
    """The benchmark's melody: D, F#, A, B for half a second each, as the chroma reads it."""
    import importlib.util

    from rcmg.models.chroma import melody_chroma, pitch_classes

    spec = importlib.util.spec_from_file_location("bench_musicgen", HERE / "bench_musicgen.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    wave = bench.melody_wave(2.0)
    assert wave.shape == (32000,)
    names = pitch_classes(melody_chroma(wave, 16000)[0])
    assert {"D", "F#", "A", "B"} <= set(names) and set(names) <= {"D", "F#", "A", "B", "C"}
