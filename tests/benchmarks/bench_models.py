"""Benchmark the real-architecture (random-weight) models: seconds per step and per 10-s clip.

One command (CPU-sized; the default full mode is meant for a GPU):
    .venv/bin/python tests/benchmarks/bench_models.py --quick --json results/bench/models.json

Builds (or reuses) the models under --out, then for each generation model measures real
pipeline calls (10-s clip) with a per-phase breakdown: text encode, LM generate
(AudioLDM2), denoise (UNet), VAE decode, vocoder. Only a few denoising steps are run;
DDIM-200 and DPM-Solver++-25 costs are extrapolated as fixed phases + steps x measured
seconds per step (printed as extrapolated). Every row is printed as soon as it is
measured and the JSON is rewritten (atomically) after each row, so a killed run keeps
what it measured. Never asserts on time.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.models.device import resolve_device  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402
from rcmg.workflow.runinfo import cpu_name  # noqa: E402

LOG = logging.getLogger("bench_models")
GENERATION_MODELS = ("audioldm", "audioldm2", "audioldm2-music")
SAME_ARCHITECTURE = {"audioldm2-music": "audioldm2"}
PROMPT = "a calm piano melody with soft strings"
TARGET_STEPS = {"ddim": 200, "dpmpp": 25}
CLAP_SAMPLING_RATE = 48_000


@dataclass(frozen=True)
class Variant:
    """One way of running a model: precision, attention kernel, compiled UNet or not."""

    dtype: str
    attention: str = "sdpa"
    compiled: bool = False
    skip_reason: str = ""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        default="audioldm,audioldm2,clap,audioldm2-music",
        help="comma list of audioldm, audioldm2, audioldm2-music, clap (measured in this order)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CPU-sized: batch 1, 1 measured step after 1 warm-up step, fp32 + SDPA only",
    )
    p.add_argument("--out", type=Path, default=REPO / "resources/bench/models", help="model cache")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="use the tiny demo models instead (checks this script in seconds; not a benchmark)",
    )
    p.add_argument("--json", type=Path, default=None, help="rewrite all rows as JSON here")
    p.add_argument("--steps", type=int, default=None, help="measured steps (1 quick, 10 full)")
    p.add_argument("--batches", default=None, help="comma list (default 1 quick, 1,2,4,8 full)")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="generated clip length")
    p.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        help="seconds; no new measurement starts once exceeded (0: no limit)",
    )
    p.add_argument(
        "--slow-step-s",
        type=float,
        default=20.0,
        help="in --quick, reuse the warm-up as the measurement when one step costs more",
    )
    return p.parse_args(argv)


class Budget:
    """Wall-clock budget: once spent, no new measurement starts."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return float("inf") if self.seconds <= 0 else self.seconds - self.elapsed()

    def exhausted(self) -> bool:
        return self.remaining() <= 0

    def minus(self, reserve: float) -> Budget:
        """The same clock, ending ``reserve`` seconds earlier (what the last group keeps)."""
        early = Budget(max(self.seconds - reserve, 1e-9) if self.seconds > 0 else 0)
        early.start = self.start
        return early


class Report:
    """Rows printed as soon as they are measured; the JSON rewritten after each row."""

    def __init__(self, json_path: Path | None, machine: dict, note: str):
        self.json_path = json_path
        self.data = {"benchmark": "models", "machine": machine, "note": note, "rows": []}
        print(f"machine: {machine}", flush=True)
        print(note, flush=True)
        print(TABLE_HEADER, flush=True)
        self._write()

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        print(format_row(row), flush=True)
        self._write()

    def skip(self, model: str, reason: str, **fields) -> None:
        self.add({"model": model, "skipped": reason, **fields})

    def _write(self) -> None:
        if self.json_path is not None:
            write_json(self.json_path, self.data)


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


class PhaseTimer:
    """Accumulate wall time of wrapped callables by phase name."""

    def __init__(self, device: str, clip_seconds: float):
        self.device = device
        self.clip_seconds = clip_seconds
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner, attribute: str, phase: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            synchronize(self.device)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
            self.calls[phase] = self.calls.get(phase, 0) + 1
            return result

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def instrument(pipe, kind: str, timer: PhaseTimer) -> None:
    if kind == "audioldm":
        timer.wrap(pipe.text_encoder, "forward", "text_encode")
    else:
        timer.wrap(pipe.text_encoder, "get_text_features", "text_encode")
        timer.wrap(pipe.text_encoder_2, "forward", "text_encode")
        timer.wrap(pipe.projection_model, "forward", "text_encode")
        timer.wrap(pipe.language_model, "forward", "lm_generate")
    timer.wrap(pipe.unet, "forward", "denoise")
    timer.wrap(pipe.vae, "decode", "vae_decode")
    timer.wrap(pipe.vocoder, "forward", "vocoder")


def model_path(kind: str, args) -> Path:
    if args.tiny:
        from rcmg.standins.tiny_models import build_tiny_model

        return build_tiny_model(kind, args.out / kind, seed=0)
    from rcmg.standins.real_arch import build_real_arch_model

    return build_real_arch_model(kind, args.out / kind, seed=0)


def load_pipeline(kind: str, path: Path, device: str, variant: Variant):
    import diffusers
    import torch

    quiet_hf_logging()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[variant.dtype]
    cls = diffusers.AudioLDMPipeline if kind == "audioldm" else diffusers.AudioLDM2Pipeline
    pipe = cls.from_pretrained(path, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if variant.attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
    if variant.compiled:
        pipe.unet.forward = torch.compile(pipe.unet.forward)
    return pipe


def quiet_hf_logging() -> None:
    """No per-weight progress bars or advisory warnings between the table rows."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def set_scheduler(pipe, name: str) -> None:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    else:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type="dpmsolver++"
        )


def run_once(pipe, kind: str, timer: PhaseTimer, batch: int, steps: int, seconds: float) -> float:
    """One pipeline call (decoded to a waveform); returns its wall seconds."""
    import torch

    timer.reset()
    kwargs = {
        "num_inference_steps": steps,
        "audio_length_in_s": seconds,
        "num_waveforms_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(0),
        "output_type": "np",
    }
    if kind != "audioldm":
        kwargs["max_new_tokens"] = 8
    synchronize(timer.device)
    start = time.perf_counter()
    with torch.inference_mode():
        pipe([PROMPT] * batch, **kwargs)
    synchronize(timer.device)
    return time.perf_counter() - start


def extrapolate(total_s: float, denoise_s: float, steps: int, batch: int) -> dict:
    """Per-step cost and extrapolated cost of DDIM-200 / DPM-Solver++-25 (pure arithmetic).

    fixed = everything but the UNet (text encode, LM, VAE, vocoder, scheduler maths);
    a run of N steps costs fixed + N x s/step.
    """
    per_step = denoise_s / steps
    fixed = total_s - denoise_s
    out = {"sec_per_step": per_step, "fixed_s": fixed}
    for name, target in TARGET_STEPS.items():
        total = fixed + per_step * target
        out[f"{name}{target}_s_per_batch"] = total
        out[f"{name}{target}_s_per_clip"] = total / batch
        out[f"{name}{target}_denoise_fraction"] = per_step * target / total if total else 0.0
    out["extrapolated"] = True
    return out


def measured_row(kind, device, variant, scheduler, batch, steps, total, timer, load_s) -> dict:
    row = {
        "model": kind,
        "device": device,
        "dtype": variant.dtype,
        "attention": variant.attention,
        "compiled_unet": variant.compiled,
        "scheduler": scheduler,
        "batch": batch,
        "measured_steps": steps,
        "clip_seconds": timer.clip_seconds,
        "load_s": load_s,
        "total_s": total,
        "phases_s": dict(timer.seconds),
        "phase_calls": dict(timer.calls),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    row.update(extrapolate(total, timer.seconds.get("denoise", 0.0), steps, batch))
    return row


def bench_variant(kind, path, device, variant, plan, args, report, budget) -> None:
    """Load once, warm up with one step, then measure each (scheduler, batch) of ``plan``."""
    import torch

    start = time.perf_counter()
    pipe = load_pipeline(kind, path, device, variant)
    load_s = time.perf_counter() - start
    timer = PhaseTimer(device, args.clip_seconds)
    instrument(pipe, kind, timer)
    set_scheduler(pipe, "ddim")
    first_batch = plan[0][1]
    warm_total = run_once(pipe, kind, timer, first_batch, 1, args.clip_seconds)
    warm_step = timer.seconds.get("denoise", 0.0)
    LOG.info("%s %s warm-up: %.1fs (one step %.1fs)", kind, variant.dtype, warm_total, warm_step)
    reuse_warmup = args.quick and warm_step > args.slow_step_s
    if reuse_warmup:
        row = measured_row(kind, device, variant, "ddim", first_batch, 1, warm_total, timer, load_s)
        row["note"] = (
            f"warm-up step reused as the measurement (one step {warm_step:.1f}s > "
            f"{args.slow_step_s:.0f}s); includes first-call overhead"
        )
        report.add(row)
        plan = plan[1:]
    warmed = {first_batch}
    for scheduler, batch in plan:
        if budget.exhausted():
            report.skip(kind, "time budget exceeded", **variant_fields(variant), batch=batch)
            continue
        set_scheduler(pipe, scheduler)
        try:
            if batch not in warmed:  # new shapes: allocator, cuDNN autotune, compile
                run_once(pipe, kind, timer, batch, 1, args.clip_seconds)
                warmed.add(batch)
            total = run_once(pipe, kind, timer, batch, args.steps, args.clip_seconds)
        except torch.OutOfMemoryError as exc:
            oom = f"out of memory: {exc}".splitlines()[0]
            report.skip(kind, oom, **variant_fields(variant), batch=batch)
            break
        row = measured_row(
            kind, device, variant, scheduler, batch, args.steps, total, timer, load_s
        )
        report.add(row)
    del pipe
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def bench_clap(path: Path, device: str, batches: list[int], args, report, budget) -> None:
    """CLAP audio embeddings: feature extraction vs model forward, per batch size."""
    import numpy as np
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    quiet_hf_logging()
    model = ClapModel.from_pretrained(path).to(device).eval()
    extractor = ClapFeatureExtractor.from_pretrained(path)
    rng = np.random.default_rng(0)
    n_samples = int(CLAP_SAMPLING_RATE * args.clip_seconds)
    for batch in batches:
        if budget.exhausted():
            report.skip("clap", "time budget exceeded", batch=batch)
            continue
        clips = [rng.standard_normal(n_samples).astype("float32") * 0.1 for _ in range(batch)]
        start = time.perf_counter()
        features = extractor(clips, sampling_rate=CLAP_SAMPLING_RATE, return_tensors="pt")
        feature_s = time.perf_counter() - start
        inputs = features["input_features"].to(device)
        with torch.inference_mode():
            model.get_audio_features(input_features=inputs)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            model.get_audio_features(input_features=inputs)
            synchronize(device)
        embed_s = time.perf_counter() - start
        report.add(clap_row(device, batch, args.clip_seconds, feature_s, embed_s))


def clap_row(device: str, batch: int, clip_s: float, feature_s: float, embed_s: float) -> dict:
    total = feature_s + embed_s
    return {
        "model": "clap",
        "device": device,
        "dtype": "fp32",
        "batch": batch,
        "clip_seconds": clip_s,
        "feature_s": feature_s,
        "embed_s": embed_s,
        "clips_per_s": batch / total,
        "forward_fraction": embed_s / total,
    }


def plan_variants(device: str, quick: bool) -> list[Variant]:
    """The variants to run on this device; those that cannot run carry a skip reason."""
    if device == "cuda":
        if quick:
            return [Variant("fp32"), Variant("fp16")]
        return [
            Variant("fp32"),
            Variant("fp16"),
            Variant("bf16"),
            Variant("fp16", attention="classic"),
            Variant("fp16", compiled=True),
        ]
    fp16 = Variant("fp16", skip_reason=CPU_FP16_REASON)
    if quick:
        not_quick = "not in --quick"
        return [
            Variant("fp32"),
            Variant("bf16", skip_reason=not_quick),
            Variant("fp32", attention="classic", skip_reason=not_quick),
            Variant("fp32", compiled=True, skip_reason=not_quick),
            fp16,
        ]
    compiled = Variant("fp32", compiled=True, skip_reason=compile_skip_reason())
    return [Variant("fp32"), Variant("bf16"), Variant("fp32", attention="classic"), compiled, fp16]


# Measured, not assumed: one AudioLDM-S UNet forward (batch 2, 256x16 latent) on the 2-core
# AMD EPYC build machine (avx512_bf16) took 1.26 s fp32, 0.82 s bf16, 98.9 s fp16.
CPU_FP16_REASON = "fp16 on CPU has no fast kernels (one UNet step ~80x fp32 here): GPU only"


def compile_skip_reason() -> str:
    """torch.compile (inductor) on CPU needs a C++ compiler; empty when it can run."""
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++"):
        return ""
    return "torch.compile on CPU needs a C++ compiler (g++), none on PATH"


def plan_runs(batches: list[int], quick: bool) -> list[tuple[str, int]]:
    """(scheduler, batch) runs per variant; full mode also measures DPM-Solver++ at batch 1."""
    runs = [("ddim", b) for b in batches]
    if not quick:
        runs.append(("dpmpp", batches[0]))
    return runs


TABLE_HEADER = (
    f"{'model':<16}{'dtype':<6}{'attn':<8}{'cmp':<4}{'sched':<6}{'b':>3}{'s/step':>9}"
    f"{'text':>7}{'lm':>7}{'vae':>7}{'voc':>7}{'DDIM200/clip*':>14}{'DPM25/clip*':>12}"
    f"{'den%DDIM':>9}{'den%DPM':>8}"
)


def format_row(r: dict) -> str:
    if "skipped" in r:
        keys = ("dtype", "attention", "compiled_unet", "batch")
        what = " ".join(f"{k}={r[k]}" for k in keys if k in r)
        return f"{r['model']:<16}skipped ({what}): {r['skipped']}"
    if r["model"] == "clap":
        return (
            f"{'clap':<16}{r['dtype']:<6}{'':<18}{r['batch']:>3}  audio embed "
            f"{r['clips_per_s']:.2f} clips/s (features {r['feature_s']:.2f}s, model "
            f"{r['embed_s']:.2f}s = {100 * r['forward_fraction']:.0f}% forward)"
        )
    ph = r["phases_s"]
    line = (
        f"{r['model']:<16}{r['dtype']:<6}{r['attention']:<8}{'y' if r['compiled_unet'] else 'n':<4}"
        f"{r['scheduler']:<6}{r['batch']:>3}{r['sec_per_step']:>9.3f}"
        f"{ph.get('text_encode', 0):>7.2f}{ph.get('lm_generate', 0):>7.2f}"
        f"{ph.get('vae_decode', 0):>7.2f}{ph.get('vocoder', 0):>7.2f}"
        f"{r['ddim200_s_per_clip']:>14.1f}{r['dpmpp25_s_per_clip']:>12.1f}"
        f"{100 * r['ddim200_denoise_fraction']:>9.0f}{100 * r['dpmpp25_denoise_fraction']:>8.0f}"
    )
    return line + (f"  [{r['note']}]" if r.get("note") else "")


def machine_info(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def ordered_models(names: str) -> list[str]:
    models = [m.strip() for m in names.split(",") if m.strip()]
    unknown = sorted(set(models) - {*GENERATION_MODELS, "clap"})
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from audioldm, audioldm2, "
                         "audioldm2-music, clap")  # fmt: skip
    return models


def should_skip_same_architecture(kind: str, spent: dict[str, float], budget: Budget) -> str:
    """In --quick, a model sharing an architecture already measured runs only if time allows."""
    twin = SAME_ARCHITECTURE.get(kind)
    if twin is None or twin not in spent:
        return ""
    if budget.seconds > 0 and budget.remaining() < spent[twin]:
        return (
            f"same architecture as {twin}, not re-measured ({budget.remaining():.0f}s of budget "
            f"left, {twin} took {spent[twin]:.0f}s)"
        )
    return ""


def variant_fields(variant: Variant) -> dict:
    return {
        "dtype": variant.dtype,
        "attention": variant.attention,
        "compiled_unet": variant.compiled,
    }


def bench_model(kind, device, variants, batches, args, report, budget) -> None:
    path = model_path(kind, args)
    if kind == "clap":
        bench_clap(path, device, batches, args, report, budget)
        return
    for variant in variants:
        if variant.skip_reason:
            report.skip(kind, variant.skip_reason, **variant_fields(variant))
            continue
        if budget.exhausted():
            report.skip(kind, "time budget exceeded", **variant_fields(variant))
            continue
        plan = plan_runs(batches, args.quick)
        bench_variant(kind, path, device, variant, plan, args, report, budget)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    budget = Budget(args.time_budget)
    device = resolve_device(args.device)
    args.steps = args.steps or (1 if args.quick else 10)
    batches = [int(b) for b in (args.batches or ("1" if args.quick else "1,2,4,8")).split(",")]
    note = (
        f"{args.steps} denoising step(s) measured per run after a 1-step warm-up; columns "
        "marked * are extrapolated (fixed phases + steps x measured s/step). Random weights: "
        "timing only." + (" TINY demo models: a check of this script, not a benchmark." if args.tiny else "")
    )  # fmt: skip
    report = Report(args.json, machine_info(device), note)
    spent: dict[str, float] = {}
    for kind in ordered_models(args.models):
        if budget.exhausted():
            report.skip(kind, f"time budget exceeded ({args.time_budget:.0f}s)")
            continue
        reason = should_skip_same_architecture(kind, spent, budget) if args.quick else ""
        if reason:
            report.skip(kind, reason)
            continue
        started = budget.elapsed()
        bench_model(kind, device, plan_variants(device, args.quick), batches, args, report, budget)
        spent[kind] = budget.elapsed() - started
    print(f"total {budget.elapsed():.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
