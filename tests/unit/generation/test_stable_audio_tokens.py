"""Stable Audio's K style tokens through the shared adapter interface (issue 26 on main's
family hooks): K is ``adapter_training.style_tokens`` (``ModelFamily.adapter_options``,
1..8: the T5 positions every condition leaves free), the held-out ``untrained`` arm is
MusicGen's convention (the unit style vector zero-padded into each token) and the loss is
the family's ``adapter_loss`` (the v-objective through the frozen DiT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rcmg.generation.families import get_family

pytestmark = pytest.mark.xdist_group("stable_audio")


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from rcmg.standins.stable_audio import build_stable_audio

    folder = build_stable_audio(tmp_path_factory.mktemp("sao_k") / "tiny", "tiny", seed=0)
    return get_family("stable_audio").load(str(Path(folder)), "cpu", "fp32", "cosine_ode").pipe


def test_k_is_an_adapter_option_within_the_free_t5_positions(pipe):
    from rcmg.generation.adapter_training import TrainingDataError
    from rcmg.generation.families.stable_audio import MAX_STYLE_TOKENS, STYLE_TOKENS

    family = get_family("stable_audio")
    width = int(pipe.text_encoder.config.d_model)
    assert family.adapter_options == ("style_tokens",)
    assert family.adapter_out_dim(pipe) == STYLE_TOKENS * width
    assert family.adapter_out_dim(pipe, style_tokens=2) == 2 * width
    for bad in (0, MAX_STYLE_TOKENS + 1):
        with pytest.raises(TrainingDataError, match=f"1..{MAX_STYLE_TOKENS}"):
            family.adapter_out_dim(pipe, style_tokens=bad)
    # generation reads K off the checkpoint: any K of 1..8 is taken as it is
    assert family.generation_adapter_dim(pipe, 2 * width) == 2 * width
    assert family.generation_adapter_dim(pipe, (MAX_STYLE_TOKENS + 1) * width) == (
        STYLE_TOKENS * width
    )
    limits = [n for _, n, _ in family.token_limits(pipe)]
    assert limits == [128, 128 - MAX_STYLE_TOKENS]  # the same text for every K


def test_the_arms_and_the_v_loss_at_k_two(pipe):
    import torch
    import torch.nn.functional as F

    family = get_family("stable_audio")
    width = int(pipe.text_encoder.config.d_model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 512, generator=gen)
    frames = int(pipe.transformer.config.sample_size)
    latents = torch.randn(3, int(pipe.vae.config.decoder_input_channels), frames, generator=gen)
    ctx = family.adapter_context(
        pipe, ["piano", "rain on a roof", "violin"], latents, x, style_tokens=2
    )
    rows = [0, 2]
    labels = family.baseline_conditioning(ctx, rows, "labels_text")
    assert labels.shape == (2, 2, width) and not labels.abs().any()
    untrained = family.baseline_conditioning(ctx, rows, "untrained")
    assert untrained.shape == (2, 2, width)
    # the unit style vector in each token, zero-padded (or cut) to the T5 width
    unit = F.normalize(x.float(), dim=-1)
    head = unit[rows, : min(width, 512)]
    tokens = untrained / untrained[:, :1].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(tokens[:, 0, : head.shape[1]], F.normalize(head, dim=-1))
    torch.testing.assert_close(tokens[:, 0], tokens[:, 1])
    # at the adapter's scale: ||tokens|| = TRAIN_TOKEN_SCALE x the label text's T5 norm
    norms = torch.stack([ctx.extra["norms"][r] for r in rows])
    torch.testing.assert_close(untrained.flatten(1).norm(dim=1), norms, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no 'native' baseline"):
        family.baseline_conditioning(ctx, rows, "native")

    # adapter_loss: the v-objective on cosine_noisy / velocity_target, with grad to cond
    ctx.extra["seconds"] = 0.5
    z0 = latents[rows]
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.tensor([10, 700])
    cond = untrained.clone().requires_grad_(True)
    loss = family.adapter_loss(pipe, z0, noise, t, cond, ctx, rows)
    with torch.no_grad():
        noisy = family.cosine_noisy(pipe, z0, noise, t)
        v = family.denoiser_eps(pipe, noisy, t, cond, ctx, rows)
        expected = F.mse_loss(v.float(), family.velocity_target(pipe, z0, noise, t).float())
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    frozen = family.adapter_frozen_modules(pipe)
    assert pipe.transformer in frozen and pipe.text_encoder in frozen
