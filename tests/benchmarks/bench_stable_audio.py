"""Stable Audio Open's denoising step against AudioLDM2's, published architectures, one process.

    .venv/bin/python tests/benchmarks/bench_stable_audio.py --json results/bench/sao_step.json

Builds in memory (random weights, never saved) the DiT of ``stabilityai/stable-audio-open-1.0``
from config/bench/stable-audio-open/transformer.json and the UNet of ``cvssp/audioldm2`` from
config/bench/audioldm2/unet.json, and times one classifier-free-guidance step of each (batch 2):

* the DiT as ``StableAudioPipeline.__call__`` calls it: its fixed ``sample_size`` latent frames
  (1024 = 47.55 s; the pipeline always denoises the full length and crops), 128 T5 states plus
  the two timing tokens of width 768, the timing global states (1536);
* the UNet as ``AudioLDM2Pipeline`` calls it at 10.24 s: latents [2, 8, 256, 16], the 8 GPT-2
  tokens (768) and T5 states (1024) of one prompt.

The ratio (DiT / UNet seconds per step) scales a GPU-measured AudioLDM2 step to Stable Audio
(the cost planner's generate_s_per_step). The step cost of Stable Audio does not depend on the
requested duration. Never asserts on time; ``--size tiny`` runs the same code on the tiny
stand-in widths (its test).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

T5_TOKENS = 128  # the published tokenizer's model_max_length
AUDIOLDM2_FRAMES = 256  # 10.24 s of 16 kHz mel frames / VAE downsampling 4
AUDIOLDM2_T5_TOKENS = 16  # a short prompt's T5 states (AudioLDM2 pads to the prompt)
LM_TOKENS = 8  # GPT-2's max_new_tokens


def _time(fn, repeats: int) -> float:
    import torch

    with torch.no_grad():
        fn()  # warm-up (allocations, kernel choice)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
    return (time.perf_counter() - start) / repeats


def dit_step(size: str):
    """A callable running one CFG step of the Stable Audio DiT, and its parameter count."""
    import torch
    from diffusers import StableAudioDiTModel
    from diffusers.models.embeddings import get_1d_rotary_pos_embed
    from rcmg.standins.stable_audio import component_configs

    config = component_configs("published" if size == "published" else "tiny")["transformer"]
    torch.manual_seed(0)
    dit = StableAudioDiTModel(**config).eval()
    frames, width = int(config["sample_size"]), int(config["cross_attention_input_dim"])
    latents = torch.randn(2, int(config["in_channels"]), frames)
    states = torch.randn(2, T5_TOKENS + 2, width)
    global_states = torch.randn(2, 1, int(config["global_states_input_dim"]))
    rotary = get_1d_rotary_pos_embed(
        int(config["attention_head_dim"]) // 2,
        frames + 1,
        use_real=True,
        repeat_interleave_real=False,
    )
    t = torch.tensor([0.5])

    def step():
        dit(latents, t, states, global_states, rotary, return_dict=False)

    return step, sum(p.numel() for p in dit.parameters())


def unet_step(size: str):
    """A callable running one CFG step of the AudioLDM2 UNet at 10.24 s, and its size."""
    import torch
    from diffusers import AudioLDM2UNet2DConditionModel

    if size == "published":
        raw = json.loads((REPO / "config" / "bench" / "audioldm2" / "unet.json").read_text())
        config = {k: v for k, v in raw.items() if not k.startswith("_")}
    else:
        from rcmg.standins.tiny_models import _audioldm2_unet

        config = dict(_audioldm2_unet().config)
        config = {k: v for k, v in config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(**config).eval()
    lm_dim, t5_dim = config["cross_attention_dim"][0][1:]
    latents = torch.randn(2, int(config["in_channels"]), AUDIOLDM2_FRAMES, 16)
    lm = torch.randn(2, LM_TOKENS, int(lm_dim))
    t5 = torch.randn(2, AUDIOLDM2_T5_TOKENS, int(t5_dim))
    mask = torch.ones(2, AUDIOLDM2_T5_TOKENS, dtype=torch.long)

    def step():
        unet(
            latents,
            torch.tensor(500),
            encoder_hidden_states=lm,
            encoder_hidden_states_1=t5,
            encoder_attention_mask_1=mask,
            return_dict=False,
        )

    return step, sum(p.numel() for p in unet.parameters())


def measure(size: str = "published", repeats: int = 1) -> dict:
    import torch
    from rcmg.workflow.runinfo import cpu_name

    rows = {}
    for name, build in (("stable-audio-open", dit_step), ("audioldm2", unet_step)):
        step, params = build(size)
        rows[name] = {"params_m": round(params / 1e6, 1), "s_per_step": _time(step, repeats)}
        del step
    ratio = rows["stable-audio-open"]["s_per_step"] / rows["audioldm2"]["s_per_step"]
    return {
        "size": size,
        "device": "cpu",
        "cpu": cpu_name() or platform.processor(),
        "threads": torch.get_num_threads(),
        "dtype": "fp32",
        "cfg_batch": 2,
        "repeats": repeats,
        "models": rows,
        "ratio_stable_audio_to_audioldm2": ratio,
        "note": "random weights in the published architectures: timing only, not music",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("published", "tiny"), default="published")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = measure(args.size, args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
