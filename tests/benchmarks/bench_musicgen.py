#!/usr/bin/env python
"""Benchmark MusicGen with the published architecture (random weights): seconds per
decoder step and per generated second, through the family's own load and generate.

    .venv/bin/python tests/benchmarks/bench_musicgen.py --seconds 1 \\
        --json results/bench/musicgen.json

Builds (or reuses) ``real_arch_model.py --kind musicgen`` (config/bench/musicgen-small:
T5-base encoder, EnCodec 32 kHz, the 24-layer 1024-wide decoder) under --out, loads it
with ``rcmg.generation.families.musicgen.Musicgen.load`` and generates one prompt of
``--seconds`` with ``generate`` (the plain ``model.generate`` call, guidance 3 with its
two-branch CFG batch), timing the text encoder, the decoder and the EnCodec decoder by
forward hooks (:class:`rcmg.workflow.runinfo.ModuleHookTimer`). A 10-s clip is
extrapolated as the text encoder + the EnCodec decode scaled to 10 s +
``decoder_steps(10 s)`` x the measured seconds per step (exact with ``--seconds 10``). Random weights: a timing, never music. Never asserts on
time. ``--model-dir`` times another MusicGen folder (the tests use the tiny stand-in).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.workflow.atomic import write_json  # noqa: E402
from rcmg.workflow.runinfo import cpu_name  # noqa: E402

PROMPT = "a calm piano melody with soft strings"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="resources/bench/models/musicgen", help="model folder")
    p.add_argument("--model-dir", default=None, help="time this MusicGen folder instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=1.0, help="audio generated per run")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--json", default=None, help="write the result here")
    return p.parse_args(argv)


def measure(model_dir: Path, device: str, seconds: float, guidance: float, repeats: int) -> dict:
    import torch
    from rcmg.generation.families import get_family
    from rcmg.generation.families.base import ConditioningRequest, SamplingSettings
    from rcmg.generation.families.musicgen import decoder_steps
    from rcmg.workflow.runinfo import ModuleHookTimer

    family = get_family("musicgen")
    t0 = time.perf_counter()
    loaded = family.load(str(model_dir), device, "fp32", "default")
    load_s = time.perf_counter() - t0
    pipe = loaded.pipe
    request = ConditioningRequest([PROMPT], [""], guidance > 1, options=None)
    steps = decoder_steps(pipe, seconds)
    rows = []
    for r in range(repeats):
        with ModuleHookTimer(family.timing_groups(pipe), cuda=device.startswith("cuda")) as hooks:
            t0 = time.perf_counter()
            kwargs = family.conditioning(loaded, request)
            settings = SamplingSettings(seconds, 1, guidance, 1, [torch.Generator().manual_seed(r)])
            audio = family.generate(loaded, kwargs, settings)
            total = time.perf_counter() - t0
        per_step = hooks.seconds["unet"] / max(hooks.calls["unet"], 1)
        fixed = hooks.seconds["encode"] + hooks.seconds["decode"]
        rows.append(
            {
                "total_s": round(total, 4),
                "text_encoder_s": round(hooks.seconds["encode"], 4),
                "decoder_s": round(hooks.seconds["unet"], 4),
                "decoder_calls": hooks.calls["unet"],
                "encodec_decode_s": round(hooks.seconds["decode"], 4),
                "s_per_decoder_step": round(per_step, 5),
                "fixed_s": round(fixed, 4),
                "audio_samples": int(audio.shape[-1]),
            }
        )
    best = min(rows, key=lambda row: row["s_per_decoder_step"])
    steps_10s = decoder_steps(pipe, 10.0)
    fixed_10s = best["text_encoder_s"] + best["encodec_decode_s"] * 10.0 / seconds
    extrapolated = fixed_10s + steps_10s * best["s_per_decoder_step"]
    params = sum(p.numel() for p in pipe.model.parameters())
    return {
        "model_dir": str(model_dir),
        "parameters": int(params),
        "device": loaded.device,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "dtype": loaded.dtype,
        "guidance": guidance,
        "seconds_generated": seconds,
        "decoder_steps": steps,
        "load_s": round(load_s, 3),
        "runs": rows,
        "extrapolated_10s": {
            "decoder_steps": steps_10s,
            "fixed_s": round(fixed_10s, 3),
            "s_per_clip": round(extrapolated, 2),
            "s_per_generated_second": round(extrapolated / 10.0, 3),
            "note": "extrapolated (exact when --seconds 10): the text encoder + the EnCodec "
            "decode scaled to 10 s + steps x the best run's mean s/step (a step attends to a "
            "longer cache late in a clip: from a shorter clip, a lower bound)",
        },
        "random_weights": True,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from rcmg.standins.real_arch import build_real_arch_model

        model_dir = build_real_arch_model("musicgen", Path(args.out), seed=0)
    result = measure(model_dir, args.device, args.seconds, args.guidance, args.repeats)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
