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

``--kind musicgen-melody`` times MusicGen-melody's melody condition instead: the published
facebook/musicgen-melody architecture (48-layer 1536-wide decoder; musicgen-small's T5 and
EnCodec, rcmg.standins.musicgen_models.build_published_musicgen_melody) loaded by
``rcmg.generation.families.musicgen_melody.MusicgenMelody.load``, one prompt with the
chroma of a 10-s 16 kHz note sequence as ``input_features`` (235 chroma positions + the
prompt's T5 states prepended to the decoder; the first decoder call is their prefill).
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
FAMILIES = {"musicgen": "musicgen", "musicgen-melody": "musicgen_melody"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=sorted(FAMILIES), default="musicgen")
    p.add_argument(
        "--out", default=None, help="model folder (default resources/bench/models/<kind>)"
    )
    p.add_argument("--model-dir", default=None, help="time this MusicGen folder instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=1.0, help="audio generated per run")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--json", default=None, help="write the result here")
    return p.parse_args(argv)


def melody_wave(seconds: float = 10.0, sr: int = 16_000):
    """A 16 kHz note sequence (D, F#, A, B: half a second each), the melody's audio."""
    import numpy as np

    notes = (293.66, 369.99, 440.0, 493.88)
    t = np.arange(int(0.5 * sr)) / sr
    bars = [0.4 * np.sin(2 * np.pi * notes[i % 4] * t) for i in range(int(seconds * 2))]
    return np.concatenate(bars).astype(np.float32)


def measure(
    model_dir: Path,
    device: str,
    seconds: float,
    guidance: float,
    repeats: int,
    kind: str = "musicgen",
) -> dict:
    import torch
    from rcmg.generation.families import get_family
    from rcmg.generation.families.base import ConditioningRequest, SamplingSettings
    from rcmg.generation.families.musicgen import decoder_steps
    from rcmg.workflow.runinfo import ModuleHookTimer

    family = get_family(FAMILIES[kind])
    t0 = time.perf_counter()
    loaded = family.load(str(model_dir), device, "fp32", "default")
    load_s = time.perf_counter() - t0
    pipe = loaded.pipe
    melody = kind == "musicgen-melody"
    request = ConditioningRequest(
        [PROMPT],
        [""],
        guidance > 1,
        options=None,
        audio_prompts=[melody_wave()] if melody else None,
    )
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
        "kind": kind,
        "condition": "melody (10-s chroma)" if melody else "prompt",
        "prefix_positions": int(pipe.prefix_positions),
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
    out = Path(args.out or f"resources/bench/models/{args.kind}")
    if args.model_dir:
        model_dir = Path(args.model_dir)
    elif args.kind == "musicgen-melody":
        from rcmg.standins.musicgen_models import build_published_musicgen_melody

        build_published_musicgen_melody(out, seed=0)
        model_dir = out
    else:
        from rcmg.standins.real_arch import build_real_arch_model

        model_dir = build_real_arch_model("musicgen", out, seed=0)
    result = measure(model_dir, args.device, args.seconds, args.guidance, args.repeats, args.kind)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
