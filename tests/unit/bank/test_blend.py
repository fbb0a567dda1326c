"""Properties of the blending maths (randomised checks with a seeded numpy RNG)."""

from __future__ import annotations

import numpy as np
import pytest
from rcmg.bank.blend import (
    BLEND_MODES,
    analytic_angle_deg,
    angle_deg,
    blend,
    cosine,
    residual_add,
    softmax_weights,
    solve_alpha,
    style_vector,
    style_vectors,
)

RNG_SEEDS = range(20)


def _random_pair(seed: int, d: int = 512, batch: int = 4):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 20.0, size=(batch, 1))
    prompt = (rng.normal(size=(batch, d)) * scale).astype(np.float32)
    style = rng.normal(size=(batch, d)).astype(np.float32) * rng.uniform(0.01, 5.0)
    return prompt, style


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_alpha_zero_is_bit_identical(mode, seed):
    prompt, style = _random_pair(seed)
    out = blend(prompt, style, 0.0, mode)
    assert out.dtype == prompt.dtype
    assert np.array_equal(out, prompt)
    assert out is not prompt


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_blends_keep_prompt_norm(mode, seed):
    prompt, style = _random_pair(seed)
    alpha = np.random.default_rng(seed + 100).uniform(0.01, 1.0)
    out = blend(prompt, style, alpha, mode)
    np.testing.assert_allclose(
        np.linalg.norm(out, axis=-1), np.linalg.norm(prompt, axis=-1), rtol=1e-5
    )


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_orth_projection_on_prompt_stays_positive_and_moves_towards_style(seed):
    prompt, style = _random_pair(seed)
    for alpha in (0.1, 0.5, 1.0):
        out = blend(prompt, style, alpha, "orth")
        along_prompt = np.sum(_unit(out) * _unit(prompt), axis=-1)
        assert np.all(along_prompt > 0)
        # the orthogonal style component grows, so similarity to the style increases
        # relative to the prompt whenever the style is not already aligned
        before = np.sum(_unit(prompt) * _unit(style), axis=-1)
        after = np.sum(_unit(out) * _unit(style), axis=-1)
        assert np.all(after > before)


def test_orth_parallel_or_antiparallel_style_returns_prompt():
    prompt = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
    for style in (prompt * 3.0, -prompt):
        out = blend(prompt, style, 0.7, "orth")
        assert np.array_equal(out, prompt)


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_lerp_slerp_alpha_one_give_style_direction_at_prompt_norm(mode, seed):
    prompt, style = _random_pair(seed)
    out = blend(prompt, style, 1.0, mode)
    expected = _unit(style) * np.linalg.norm(prompt.astype(np.float64), axis=-1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_slerp_midpoint_has_equal_angles():
    rng = np.random.default_rng(3)
    prompt, style = rng.normal(size=(2, 64))
    mid = blend(prompt, style, 0.5, "slerp")
    a = np.dot(_unit(mid), _unit(prompt))
    b = np.dot(_unit(mid), _unit(style))
    assert a == pytest.approx(b, rel=1e-9)


def test_broadcast_single_style_over_batch():
    prompt, style = _random_pair(1)
    out = blend(prompt, style[0], 0.3, "orth")
    assert out.shape == prompt.shape
    np.testing.assert_allclose(out[2], blend(prompt[2], style[0], 0.3, "orth"), rtol=1e-6)


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan")])
def test_alpha_out_of_range_raises(alpha):
    prompt, style = _random_pair(0)
    with pytest.raises(ValueError, match="alpha must be in"):
        blend(prompt, style, alpha, "orth")


def test_unknown_mode_names_valid_modes():
    prompt, style = _random_pair(0)
    with pytest.raises(ValueError, match="orth, lerp, slerp"):
        blend(prompt, style, 0.5, "add")


@pytest.mark.parametrize("bad", ["zero", "nan", "inf"])
@pytest.mark.parametrize("which", ["prompt", "style"])
def test_degenerate_vectors_raise(bad, which):
    prompt, style = _random_pair(0)
    target = prompt if which == "prompt" else style
    target[1] = {"zero": 0.0, "nan": np.nan, "inf": np.inf}[bad]
    message = "zero-norm" if bad == "zero" else "NaN or inf"
    with pytest.raises(ValueError, match=f"{which}.*{message}"):
        blend(prompt, style, 0.5, "orth")


def test_opposite_directions_raise_for_lerp_and_slerp():
    prompt = np.array([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="opposite"):
        blend(prompt, -prompt, 0.5, "lerp")
    with pytest.raises(ValueError, match="opposite"):
        blend(prompt, -prompt, 0.5, "slerp")


def test_dimension_mismatch_raises():
    with pytest.raises(ValueError, match="dim"):
        blend(np.ones(4), np.ones(3), 0.5, "orth")


def test_softmax_weights_stable_and_normalised():
    scores = np.array([[1000.0, 999.0, -1000.0], [0.1, 0.2, 0.3]])
    weights = softmax_weights(scores, 0.5)
    assert np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    assert weights[0, 0] / weights[0, 1] == pytest.approx(np.exp(2.0))
    assert weights[1].argmax() == 2


def test_softmax_temperature_limits():
    scores = np.array([0.9, 0.5, 0.1])
    assert softmax_weights(scores, 1e-4)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(softmax_weights(scores, 1e6), 1 / 3, rtol=1e-5)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            softmax_weights(scores, bad)
    with pytest.raises(ValueError, match="NaN"):
        softmax_weights(np.array([0.1, np.nan]), 1.0)


def test_style_vector_is_weighted_normalised_mean():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(5, 16)).astype(np.float32)
    scores = rng.uniform(size=5).astype(np.float32)
    out = style_vector(vectors, scores, 0.1)
    weights = np.exp(scores / 0.1) / np.exp(scores / 0.1).sum()
    expected = _unit(weights @ vectors.astype(np.float64))
    assert out.shape == (16,) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_style_vectors_batched_matches_single():
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(3, 4, 8))
    scores = rng.uniform(size=(3, 4))
    batched = style_vectors(vectors, scores, 0.2)
    for i in range(3):
        np.testing.assert_allclose(batched[i], style_vector(vectors[i], scores[i], 0.2))
    with pytest.raises(ValueError, match=r"\[B, k, d\]"):
        style_vectors(vectors[0], scores[0], 0.2)
    with pytest.raises(ValueError, match="disagree"):
        style_vector(vectors, scores[:, :2], 0.2)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_residual_add_is_not_a_blend(seed):
    """cond_mix residual: adds beta |c| s_hat on top of the blend; moves the norm too."""
    cond, style = _random_pair(seed)
    blended = blend(cond, style, 0.2, "orth")
    assert np.array_equal(residual_add(cond, blended, style, 0.0), blended)
    out = residual_add(cond, cond, style, 0.4)
    cos = cosine(cond, style)
    np.testing.assert_allclose(
        np.linalg.norm(out, axis=-1) / np.linalg.norm(cond, axis=-1),
        np.sqrt(1 + 0.8 * cos + 0.16),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        angle_deg(cond, out), analytic_angle_deg("residual", 0.4, cos), atol=1e-4
    )
    with pytest.raises(ValueError, match="beta"):
        residual_add(cond, blended, style, 1.5)


@pytest.mark.parametrize("mode", ["orth", "lerp", "slerp"])
@pytest.mark.parametrize("alpha", [0.03, 0.08, 0.3, 0.9])
def test_blend_turns_by_the_analytic_angle(mode, alpha):
    rng = np.random.default_rng(7)
    prompt, style = rng.standard_normal((2, 64, 512))
    got = angle_deg(prompt, blend(prompt, style, alpha, mode))
    want = analytic_angle_deg(mode, alpha, cosine(prompt, style))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_angle_is_accurate_for_tiny_angles():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([1.0, 1e-9, 0.0])
    assert angle_deg(a, b) == pytest.approx(np.degrees(1e-9), rel=1e-6)


@pytest.mark.parametrize("mode", ["orth", "lerp", "slerp"])
@pytest.mark.parametrize("target", [0.3, 2.0, 12.5])
def test_solve_alpha_hits_the_target_angle(mode, target):
    rng = np.random.default_rng(3)
    prompt, style = rng.standard_normal((2, 512)).astype(np.float32)
    alpha, reached = solve_alpha(
        lambda a: float(angle_deg(prompt, blend(prompt, style, a, mode))), target
    )
    assert reached and 0 < alpha < 1
    assert abs(float(angle_deg(prompt, blend(prompt, style, alpha, mode))) - target) < 0.01
    alpha, reached = solve_alpha(
        lambda a: float(angle_deg(prompt, blend(prompt, style, a, "orth"))), 60.0
    )
    assert (alpha, reached) == (1.0, False)  # orth turns by at most atan(sin theta) < 45 deg


def test_torch_tensors_round_trip():
    torch = pytest.importorskip("torch")
    prompt, style = _random_pair(2)
    out = blend(torch.from_numpy(prompt), torch.from_numpy(style), 0.5, "slerp")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), blend(prompt, style, 0.5, "slerp"))
    weights = softmax_weights(torch.tensor([0.1, 0.2]), 1.0)
    assert isinstance(weights, torch.Tensor)
