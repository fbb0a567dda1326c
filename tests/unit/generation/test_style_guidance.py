"""Style guidance (AudioLDM1, AudioLDM2): eps_u + g (eps_c - eps_u) + beta (eps_s - eps_c).

beta 0 equals AudioLDMPipeline / AudioLDM2Pipeline bit for bit; beta > 0 costs a third UNet batch slot and
changes the audio; through the generate job it is recorded and reaches the loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

STEPS, SECONDS, G = 2, 0.5, 2.5


def test_guided_noise_combines_the_stacked_slots():
    import torch
    from rcmg.generation.style_guidance import guided_noise, unet_slots_per_step

    eps_u, eps_c, eps_s = torch.randn(3, 2, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    cfg = eps_u + G * (eps_c - eps_u)  # the pipelines' own CFG step, operation for operation
    assert torch.equal(guided_noise(torch.cat([eps_u, eps_c]), G, 0.0), cfg)
    styled = guided_noise(torch.cat([eps_u, eps_c, eps_s]), G, 0.7)
    assert torch.equal(styled, eps_u + G * (eps_c - eps_u) + 0.7 * (eps_s - eps_c))
    towards_style = guided_noise(torch.cat([eps_u, eps_c, eps_s]), G, G)
    torch.testing.assert_close(towards_style, eps_u + G * (eps_s - eps_u))  # beta = g
    assert [unet_slots_per_step(g, b) for g, b in [(1.0, 0.7), (G, 0.0), (G, 0.7)]] == [1, 2, 3]


def _loaded(pipeline_class: str, model_dir):
    import diffusers

    p = getattr(diffusers, pipeline_class).from_pretrained(str(model_dir))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return _loaded("AudioLDMPipeline", tiny_model("audioldm"))


def _embeds(pipe):
    import torch
    from rcmg.generation.conditioning import blend_tensor
    from rcmg.generation.families.audioldm1 import text_embeds as aldm1_text_embeds

    with torch.no_grad():
        cond, uncond = aldm1_text_embeds(pipe, ["a calm piano", "rain"], ["", ""], "cpu", True)
    style = torch.nn.functional.normalize(
        torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    return cond, uncond, blend_tensor(cond, style, 0.5, "slerp")


def _gens():
    import torch

    return [torch.Generator().manual_seed(7 + i) for i in range(2)]


def _guided(pipe, cond, uncond, styled, beta):
    from rcmg.generation.families.audioldm1 import style_guided as aldm1_style_guided

    return aldm1_style_guided(
        pipe, prompt_embeds=cond, negative_prompt_embeds=uncond, style_embeds=styled, beta=beta,
        guidance_scale=G, num_inference_steps=STEPS, audio_length_in_s=SECONDS, generator=_gens(),
    )  # fmt: skip


def test_beta_zero_equals_the_pipeline_and_beta_changes_audio(pipe):
    cond, uncond, styled = _embeds(pipe)
    plain = pipe(
        prompt_embeds=cond, negative_prompt_embeds=uncond, guidance_scale=G,
        num_inference_steps=STEPS, audio_length_in_s=SECONDS, generator=_gens(), output_type="np",
    ).audios  # fmt: skip
    assert np.array_equal(_guided(pipe, cond, uncond, styled, 0.0), plain)
    calls = []
    hook = pipe.unet.register_forward_hook(
        lambda m, a, k, out: calls.append(a[0].shape[0]), with_kwargs=True
    )
    try:
        guided = _guided(pipe, cond, uncond, styled, 1.0)
    finally:
        hook.remove()
    assert calls == [3 * 2] * STEPS  # one extra batch slot per prompt and step
    assert np.abs(guided - plain).max() > 1e-3 * np.abs(plain).max()
    # beta = g is plain CFG towards the styled conditioning (up to batching round-off)
    towards_style = pipe(
        prompt_embeds=styled, negative_prompt_embeds=uncond, guidance_scale=G,
        num_inference_steps=STEPS, audio_length_in_s=SECONDS, generator=_gens(), output_type="np",
    ).audios  # fmt: skip
    np.testing.assert_allclose(
        _guided(pipe, cond, uncond, styled, G),
        towards_style,
        atol=1e-4 * np.abs(towards_style).max(),
    )


def _write_bank(folder):
    """An 8-row unit style bank ``b.npy`` and its FAISS index ``b.index`` in ``folder``."""
    from rcmg.bank.retrieval import build_index, save_index

    rng = np.random.default_rng(0)
    bank = rng.standard_normal((8, 512)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    np.save(folder / "b.npy", bank)
    save_index(build_index(bank), folder / "b.index")


def test_generate_job_runs_style_guidance(tiny_model, tmp_path):
    from rcmg.generation.job import GenerateConfig, run_generation

    _write_bank(tmp_path)
    (tmp_path / "p.txt").write_text("a calm piano\nrain\n")
    common = dict(
        model_key="audioldm", model_id=str(tiny_model("audioldm")), family="audioldm1",
        condition="retrieval", condition_type="retrieval", prompts=str(tmp_path / "p.txt"),
        seed=0, steps=STEPS, guidance=G, seconds=SECONDS, batch=2, clap_model=str(tiny_model("clap")),
        bank=str(tmp_path / "b.npy"), index=str(tmp_path / "b.index"), alpha=0.3,
    )  # fmt: skip
    off = run_generation(GenerateConfig(**common, out_dir=str(tmp_path / "off")))
    on = run_generation(GenerateConfig(**common, out_dir=str(tmp_path / "on"), style_guidance=1.0))
    config = json.loads((on / "run_config.json").read_text())
    assert config["params"]["style_guidance"] == 1.0
    import soundfile as sf

    a, _ = sf.read(off / "wav" / "0000.wav")
    b, _ = sf.read(on / "wav" / "0000.wav")
    assert np.abs(a - b).max() > 1e-4 * np.abs(a).max()
    from rcmg.generation.conditioning import OptionError

    with pytest.raises(OptionError, match="applies to style conditions"):
        run_generation(
            GenerateConfig(
                **{**common, "condition_type": "prompt"},
                out_dir=str(tmp_path / "x"),
                style_guidance=1.0,
            )
        )


# ------------------------------------------------------------------ AudioLDM2


@pytest.fixture(scope="module")
def pipe2(tiny_model):
    return _loaded("AudioLDM2Pipeline", tiny_model("audioldm2"))


def _aldm2_kwargs(pipe):
    import torch
    from rcmg.generation.conditioning import ConditionOptions
    from rcmg.generation.families.audioldm2 import condition_kwargs as aldm2_condition_kwargs

    prompts, negatives = ["a calm piano", "rain on a tin roof"], ["", ""]
    own = aldm2_condition_kwargs(pipe, prompts, negatives, "cpu", True)
    style = torch.nn.functional.normalize(
        torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    opts = ConditionOptions("retrieval", "audioldm2", blend="slerp", alpha=0.5, adapter="native")
    styled = aldm2_condition_kwargs(pipe, prompts, negatives, "cpu", True, style, opts)
    return own, styled


def _guided2(pipe, own, styled, beta):
    from rcmg.generation.families.audioldm2 import style_guided as aldm2_style_guided

    return aldm2_style_guided(
        pipe, prompt_kwargs=own, style_kwargs=styled, beta=beta, guidance_scale=G,
        num_inference_steps=STEPS, audio_length_in_s=SECONDS, generator=_gens(),
    )  # fmt: skip


def test_aldm2_beta_zero_equals_the_pipeline_and_beta_costs_one_slot(pipe2):
    own, styled = _aldm2_kwargs(pipe2)

    def plain(kwargs):
        return pipe2(
            **kwargs, guidance_scale=G, num_inference_steps=STEPS, audio_length_in_s=SECONDS,
            generator=_gens(), output_type="np",
        ).audios  # fmt: skip

    prompt_only = plain(own)
    assert np.array_equal(_guided2(pipe2, own, styled, 0.0), prompt_only)
    calls = []
    hook = pipe2.unet.register_forward_hook(
        lambda m, a, k, out: calls.append(a[0].shape[0]), with_kwargs=True
    )
    try:
        guided = _guided2(pipe2, own, styled, 1.0)
    finally:
        hook.remove()
    assert calls == [3 * 2] * STEPS  # one extra batch slot per prompt and step
    assert np.abs(guided - prompt_only).max() > 1e-4 * np.abs(prompt_only).max()
    towards_style = plain(styled)  # beta = g: plain CFG towards the styled conditioning
    np.testing.assert_allclose(
        _guided2(pipe2, own, styled, G), towards_style, atol=1e-4 * np.abs(towards_style).max()
    )


def test_generate_job_runs_aldm2_style_guidance_and_records_its_cost(tiny_model, tmp_path):
    from rcmg.generation.job import GenerateConfig, run_generation

    _write_bank(tmp_path)
    (tmp_path / "p.txt").write_text("a calm piano\n")
    run = run_generation(
        GenerateConfig(
            model_key="audioldm2",
            model_id=str(tiny_model("audioldm2")),
            family="audioldm2",
            condition="retrieval_guided",
            condition_type="retrieval",
            adapter="native",
            prompts=str(tmp_path / "p.txt"),
            seed=0,
            steps=STEPS,
            guidance=G,
            seconds=SECONDS,
            batch=1,
            clap_model=str(tiny_model("clap")),
            bank=str(tmp_path / "b.npy"),
            index=str(tmp_path / "b.index"),
            alpha=0.3,
            style_guidance=1.0,
            out_dir=str(tmp_path / "on"),
        )  # fmt: skip
    )
    config = json.loads((run / "run_config.json").read_text())
    assert config["params"]["style_guidance"] == 1.0
    assert config["unet_slots_per_step"] == 3  # eps_u, eps_c, eps_s: one extra UNet slot
    assert config["unet_forward_calls"] == STEPS  # one batched call per step
    assert (run / "wav" / "0000.wav").is_file()


# ------------------------------------------------------------------ the shared loop, bit for bit
#
# The two families' style-guided loops were once separate near-copies; they now share
# rcmg.generation.style_guidance.style_guided_loop. These references are those per-family
# loops as they stood before the fold (verbatim, upstream-style), frozen here so that any
# beta > 0 output of the shared loop is checked bit for bit against them, not only beta 0
# against the pipeline.


def _reference_height(pipe):
    """Latent height and waveform length of a SECONDS clip, as both pipelines compute them."""
    vocoder_upsample_factor = (
        np.prod(pipe.vocoder.config.upsample_rates) / pipe.vocoder.config.sampling_rate
    )
    height = int(SECONDS / vocoder_upsample_factor)
    original_waveform_length = int(SECONDS * pipe.vocoder.config.sampling_rate)
    if height % pipe.vae_scale_factor != 0:
        height = int(np.ceil(height / pipe.vae_scale_factor)) * pipe.vae_scale_factor
    return height, original_waveform_length


def _reference_guidance(noise_pred, beta):
    if beta:
        eps_u, eps_c, eps_s = noise_pred.chunk(3)
        return eps_u + G * (eps_c - eps_u) + beta * (eps_s - eps_c)
    eps_u, eps_c = noise_pred.chunk(2)
    return eps_u + G * (eps_c - eps_u)


def _aldm1_reference(pipe, cond, uncond, styled, beta):
    import torch

    device = pipe._execution_device
    height, original_waveform_length = _reference_height(pipe)
    generator = _gens()
    with torch.no_grad():
        pipe.scheduler.set_timesteps(STEPS, device=device)
        latents = pipe.prepare_latents(
            cond.shape[0], pipe.unet.config.in_channels, height, cond.dtype, device, generator, None
        )
        extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
        slots = [uncond, cond] + ([styled] if beta else [])
        class_labels = torch.cat(slots)
        for t in pipe.scheduler.timesteps:
            latent_model_input = torch.cat([latents] * len(slots))
            latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = pipe.unet(
                latent_model_input, t, encoder_hidden_states=None, class_labels=class_labels
            ).sample
            noise_pred = _reference_guidance(noise_pred, beta)
            latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        mel_spectrogram = pipe.decode_latents(latents)
        audio = pipe.mel_spectrogram_to_waveform(mel_spectrogram)[:, :original_waveform_length]
    return audio.numpy()


def _aldm2_reference(pipe, p, s, beta):
    import torch

    device = pipe._execution_device
    height, original_waveform_length = _reference_height(pipe)
    generator = _gens()

    def slots(key, dtype=None):
        parts = [p[f"negative_{key}"], p[key]] + ([s[key]] if beta else [])
        return torch.cat([x.to(device=device, dtype=dtype or x.dtype) for x in parts])

    with torch.no_grad():
        t5 = slots("prompt_embeds", pipe.text_encoder_2.dtype)
        mask = slots("attention_mask")
        generated = slots("generated_prompt_embeds", pipe.language_model.dtype)
        pipe.scheduler.set_timesteps(STEPS, device=device)
        latents = pipe.prepare_latents(
            p["prompt_embeds"].shape[0], pipe.unet.config.in_channels, height, t5.dtype, device,
            generator, None,
        )  # fmt: skip
        extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
        n = 3 if beta else 2
        for t in pipe.scheduler.timesteps:
            latent_model_input = torch.cat([latents] * n)
            latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = pipe.unet(
                latent_model_input, t, encoder_hidden_states=generated,
                encoder_hidden_states_1=t5, encoder_attention_mask_1=mask, return_dict=False,
            )[0]  # fmt: skip
            noise_pred = _reference_guidance(noise_pred, beta)
            latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        mel_spectrogram = pipe.vae.decode(1 / pipe.vae.config.scaling_factor * latents).sample
        audio = pipe.mel_spectrogram_to_waveform(mel_spectrogram)[:, :original_waveform_length]
    return audio.numpy()


@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_aldm1_style_guidance_equals_the_per_family_reference_loop(pipe, beta):
    cond, uncond, styled = _embeds(pipe)
    expected = _aldm1_reference(pipe, cond, uncond, styled, beta)
    assert np.array_equal(_guided(pipe, cond, uncond, styled, beta), expected)


@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_aldm2_style_guidance_equals_the_per_family_reference_loop(pipe2, beta):
    own, styled = _aldm2_kwargs(pipe2)
    expected = _aldm2_reference(pipe2, own, styled, beta)
    assert np.array_equal(_guided2(pipe2, own, styled, beta), expected)
