"""Blending maths for retrieval conditioning (pure functions, numpy first).

Every function takes vectors on the last axis (``[..., d]``) and broadcasts over the
leading axes. Torch tensors are accepted too: they are converted to numpy for the
maths and the result is handed back as a tensor of the input's dtype and device
(torch itself is never imported here).

Conventions
-----------
* Style vectors are directions: before blending, the style is rescaled to the
  prompt's norm, so ``alpha`` means the same thing whatever the raw norms are.
* Every blend keeps the prompt's norm (the conditioning scale the model was
  trained with); only the direction moves.
* ``alpha == 0`` (and ``beta == 0``) returns the prompt values bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLEND_MODES = ("orth", "lerp", "slerp")

# Below this relative size an orthogonal component (or sin(angle)) counts as zero.
_PARALLEL_EPS = 1e-6


def _to_numpy(x, name: str) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """Return ``x`` as a numpy array plus a function that converts a result back."""
    if type(x).__module__.startswith("torch"):
        device, dtype = x.device, x.dtype
        array = x.detach().cpu().numpy()

        def back(result: np.ndarray):
            import torch

            return torch.from_numpy(np.ascontiguousarray(result)).to(device=device, dtype=dtype)

        return array, back
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    return array, lambda result: result


def _out_dtype(array: np.ndarray) -> np.dtype:
    return array.dtype if array.dtype.kind == "f" else np.dtype(np.float64)


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or inf values; check the embeddings that produced it"
        )


def _check_vectors(array: np.ndarray, name: str) -> np.ndarray:
    """Validate a ``[..., d]`` array (finite, non-zero rows); return its norms ``[..., 1]``."""
    if array.ndim < 1 or array.shape[-1] == 0:
        raise ValueError(
            f"{name} must have a non-empty last (feature) axis, got shape {array.shape}"
        )
    _check_finite(array, name)
    norms = np.linalg.norm(array.astype(np.float64), axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} has a zero-norm vector; a direction cannot be taken from it")
    return norms


def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def softmax_weights(scores, temperature: float):
    """Numerically stable softmax of ``scores / temperature`` over the last axis."""
    array, back = _to_numpy(scores, "scores")
    temperature = float(temperature)
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if array.ndim < 1 or array.shape[-1] == 0:
        raise ValueError(f"scores must have at least one entry on the last axis, got {array.shape}")
    _check_finite(array, "scores")
    logits = array.astype(np.float64) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    weights = exp / exp.sum(axis=-1, keepdims=True)
    return back(weights.astype(_out_dtype(array)))


def style_vector(bank_vectors, scores, temperature: float):
    """Softmax-weighted mean of retrieved vectors, L2-normalised.

    ``bank_vectors`` is ``[k, d]`` with ``scores`` ``[k]`` (one query), or batched
    ``[B, k, d]`` with ``[B, k]``; the result is ``[d]`` or ``[B, d]``.
    """
    vectors, back = _to_numpy(bank_vectors, "bank_vectors")
    weights_in, _ = _to_numpy(scores, "scores")
    if vectors.ndim < 2 or vectors.shape[:-1] != weights_in.shape:
        raise ValueError(
            f"bank_vectors {vectors.shape} and scores {weights_in.shape} disagree: "
            "expected [..., k, d] and [..., k]"
        )
    _check_finite(vectors, "bank_vectors")
    weights = np.asarray(softmax_weights(weights_in.astype(np.float64), temperature))
    mean = np.einsum("...k,...kd->...d", weights, vectors.astype(np.float64))
    norms = np.linalg.norm(mean, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("the weighted style vector has zero norm (retrieved vectors cancel out)")
    return back((mean / norms).astype(_out_dtype(vectors)))


def style_vectors(bank_vectors, scores, temperature: float):
    """Batched :func:`style_vector`: ``[B, k, d]`` and ``[B, k]`` -> ``[B, d]``."""
    shape = tuple(getattr(bank_vectors, "shape", np.shape(bank_vectors)))
    if len(shape) != 3:
        raise ValueError(f"style_vectors expects bank_vectors of shape [B, k, d], got {shape}")
    return style_vector(bank_vectors, scores, temperature)


def _unit(array: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return array / norms


def _blend_orth(p: np.ndarray, p_norm: np.ndarray, s_dir: np.ndarray, alpha: float) -> np.ndarray:
    p_dir = _unit(p, p_norm)
    along = np.sum(s_dir * p_dir, axis=-1, keepdims=True)
    orthogonal = s_dir - along * p_dir
    orth_norm = np.linalg.norm(orthogonal, axis=-1, keepdims=True)
    moved = p + alpha * p_norm * orthogonal
    moved *= p_norm / np.linalg.norm(moved, axis=-1, keepdims=True)
    return np.where(orth_norm <= _PARALLEL_EPS, p, moved)


def _blend_lerp(p: np.ndarray, p_norm: np.ndarray, s_dir: np.ndarray, alpha: float) -> np.ndarray:
    mixed = (1.0 - alpha) * _unit(p, p_norm) + alpha * s_dir
    mixed_norm = np.linalg.norm(mixed, axis=-1, keepdims=True)
    if np.any(mixed_norm <= _PARALLEL_EPS):
        raise ValueError(
            "lerp of opposite prompt and style directions passes through zero; use mode 'orth'"
        )
    return mixed * (p_norm / mixed_norm)


def _blend_slerp(p: np.ndarray, p_norm: np.ndarray, s_dir: np.ndarray, alpha: float) -> np.ndarray:
    p_dir = _unit(p, p_norm)
    cos = np.clip(np.sum(p_dir * s_dir, axis=-1, keepdims=True), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    if np.any((sin <= _PARALLEL_EPS) & (cos < 0)):
        raise ValueError("slerp between opposite directions is undefined; use mode 'orth'")
    safe_sin = np.where(sin <= _PARALLEL_EPS, 1.0, sin)
    w_prompt = np.where(sin <= _PARALLEL_EPS, 1.0 - alpha, np.sin((1.0 - alpha) * omega) / safe_sin)
    w_style = np.where(sin <= _PARALLEL_EPS, alpha, np.sin(alpha * omega) / safe_sin)
    mixed = w_prompt * p_dir + w_style * s_dir
    return mixed * (p_norm / np.linalg.norm(mixed, axis=-1, keepdims=True))


_BLENDERS = {"orth": _blend_orth, "lerp": _blend_lerp, "slerp": _blend_slerp}


def blend(prompt, style, alpha: float, mode: str = "orth"):
    """Blend a style direction into prompt embeddings, keeping the prompt's norm.

    * ``orth``: ``p + alpha * |p| * (component of style-direction orthogonal to p)``,
      rescaled to ``|p|``. The projection onto the prompt direction stays positive;
      a style parallel (or anti-parallel) to the prompt leaves the prompt unchanged.
    * ``lerp``: linear interpolation of the unit directions, rescaled to ``|p|``.
    * ``slerp``: spherical interpolation of the unit directions, at norm ``|p|``.

    At ``alpha == 1`` lerp and slerp return the style direction at the prompt norm.
    ``prompt`` and ``style`` broadcast over leading axes (e.g. ``[B, d]`` with ``[d]``).
    """
    if mode not in _BLENDERS:
        raise ValueError(f"unknown blend mode {mode!r}; valid modes: {', '.join(BLEND_MODES)}")
    alpha = _check_fraction(alpha, "alpha")
    p_in, back = _to_numpy(prompt, "prompt")
    s_in, _ = _to_numpy(style, "style")
    p_norm = _check_vectors(p_in, "prompt")
    s_norm = _check_vectors(s_in, "style")
    if p_in.shape[-1] != s_in.shape[-1]:
        raise ValueError(f"prompt dim {p_in.shape[-1]} != style dim {s_in.shape[-1]}")
    shape = np.broadcast_shapes(p_in.shape, s_in.shape)
    if alpha == 0.0:
        return back(np.broadcast_to(p_in, shape).copy())
    p64 = np.broadcast_to(p_in.astype(np.float64), shape)
    p_norm = np.broadcast_to(p_norm, shape[:-1] + (1,))
    s_dir = np.broadcast_to(s_in.astype(np.float64) / s_norm, shape)
    result = _BLENDERS[mode](p64, p_norm, s_dir, alpha)
    return back(result.astype(_out_dtype(p_in)))


def residual_add(cond, blended, style, beta: float):
    """AudioLDM1 ``cond_mix: residual`` (our reading of the original, whose formula is not
    published): ``blended + beta * |cond| * unit(style)``, NOT renormalised.

    An operation distinct from the blend: the blend only turns the conditioning on the
    sphere of radius ``|cond|``; the residual adds the style direction on top and so also
    changes the norm (by ``sqrt(1 + 2 beta cos + beta^2)`` at alpha 0, cos the
    prompt-style cosine), turning by ``atan2(beta sin, 1 + beta cos)``. ``beta == 0``
    returns ``blended`` bit-identically.
    """
    beta = _check_fraction(beta, "beta")
    c_in, _ = _to_numpy(cond, "cond")
    b_in, back = _to_numpy(blended, "blended")
    s_in, _ = _to_numpy(style, "style")
    c_norm = _check_vectors(c_in, "cond")
    s_norm = _check_vectors(s_in, "style")
    shape = np.broadcast_shapes(c_in.shape, b_in.shape, s_in.shape)
    if beta == 0.0:
        return back(np.broadcast_to(b_in, shape).copy())
    out = b_in.astype(np.float64) + beta * c_norm * (s_in.astype(np.float64) / s_norm)
    return back(np.broadcast_to(out, shape).astype(_out_dtype(b_in)))


def angle_deg(a, b) -> np.ndarray:
    """Angle in degrees between ``a`` and ``b`` along the last axis (float64 numpy).

    ``2 * atan2(|â - b̂|, |â + b̂|)``: accurate for tiny angles, where ``arccos`` of a
    cosine near 1 loses all digits.
    """
    a_in, _ = _to_numpy(a, "a")
    b_in, _ = _to_numpy(b, "b")
    a64 = a_in.astype(np.float64) / _check_vectors(a_in, "a")
    b64 = b_in.astype(np.float64) / _check_vectors(b_in, "b")
    diff = np.linalg.norm(a64 - b64, axis=-1)
    summ = np.linalg.norm(a64 + b64, axis=-1)
    return np.degrees(2.0 * np.arctan2(diff, summ))


def cosine(a, b) -> np.ndarray:
    """Cosine along the last axis (float64 numpy)."""
    a_in, _ = _to_numpy(a, "a")
    b_in, _ = _to_numpy(b, "b")
    a64 = a_in.astype(np.float64) / _check_vectors(a_in, "a")
    b64 = b_in.astype(np.float64) / _check_vectors(b_in, "b")
    return np.sum(a64 * b64, axis=-1)


def analytic_angle_deg(mode: str, alpha, cos):
    """The angle (degrees) a blend turns the prompt by, from alpha and the prompt-style cosine.

    With ``theta = arccos(cos)``: ``orth`` ``atan(alpha sin theta)``; ``lerp``
    ``atan2(alpha sin theta, 1 - alpha + alpha cos theta)``; ``slerp`` ``alpha theta``;
    ``residual`` (the AudioLDM1 cond mix at alpha 0, ``alpha`` = beta)
    ``atan2(beta sin theta, 1 + beta cos theta)``.
    """
    alpha = np.asarray(alpha, np.float64)
    c = np.clip(np.asarray(cos, np.float64), -1.0, 1.0)
    sin = np.sqrt(1.0 - c * c)
    if mode == "orth":
        rad = np.arctan(alpha * sin)
    elif mode == "lerp":
        rad = np.arctan2(alpha * sin, 1.0 - alpha + alpha * c)
    elif mode == "slerp":
        rad = alpha * np.arccos(c)
    elif mode == "residual":
        rad = np.arctan2(alpha * sin, 1.0 + alpha * c)
    else:
        raise ValueError(f"unknown mode {mode!r}; one of orth, lerp, slerp, residual")
    return np.degrees(rad)


def solve_alpha(angle_of_alpha: Callable[[float], float], target_deg: float, tol_deg: float = 1e-6):
    """The alpha in [0, 1] at which ``angle_of_alpha(alpha)`` (increasing) equals ``target_deg``.

    Bisection on the measured angle itself, so the result hits the target within
    ``tol_deg`` whatever the blend. Returns ``(alpha, reached)``: when even alpha = 1
    turns by less than the target, ``(1.0, False)``; when alpha = 0 already turns
    further, ``(0.0, False)``.
    """
    target = float(target_deg)
    if not target > 0:
        raise ValueError(f"target angle must be > 0 degrees, got {target}")
    if angle_of_alpha(1.0) < target:
        return 1.0, False
    if angle_of_alpha(0.0) > target:  # e.g. a residual cond mix already turns further
        return 0.0, False
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        got = angle_of_alpha(mid)
        if abs(got - target) <= tol_deg:
            return mid, True
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return 0.5 * (lo + hi), True
