"""Weight fingerprints: a fixed set of tensors, independent of file format and dtype."""

from __future__ import annotations

import numpy as np
from rcmg.models.fingerprint import (
    CLAP_SPACE_PREFIXES,
    TEXT_TOWER_PREFIXES,
    weights_fingerprint,
)
from safetensors.numpy import save_file


def _tensors(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "text_model.w": rng.standard_normal((3, 4)).astype(np.float32),
        "text_projection.w": rng.standard_normal((4, 2)).astype(np.float32),
        "audio_model.w": rng.standard_normal((5,)).astype(np.float32),
        "audio_projection.w": rng.standard_normal((2, 2)).astype(np.float32),
        "logit_scale_a": np.ones(1, np.float32),
    }


def test_safetensors_and_torch_bin_give_the_same_fingerprint(tmp_path):
    import torch

    tensors = _tensors()
    (tmp_path / "st").mkdir()
    save_file(tensors, tmp_path / "st" / "model.safetensors")
    (tmp_path / "bin").mkdir()
    torch.save(
        {k: torch.from_numpy(v) for k, v in tensors.items()},
        tmp_path / "bin" / "pytorch_model.bin",
    )
    st = weights_fingerprint(tmp_path / "st", CLAP_SPACE_PREFIXES)
    assert st["sha256"] and st["tensors"] == 4  # logit_scale is not part of the space
    assert weights_fingerprint(tmp_path / "bin", CLAP_SPACE_PREFIXES) == st


def test_the_fingerprint_covers_exactly_its_prefixes(tmp_path):
    base, changed = _tensors(), _tensors()
    changed["audio_model.w"] = changed["audio_model.w"] + np.float32(1e-3)
    for name, tensors in (("a", base), ("b", changed)):
        (tmp_path / name).mkdir()
        save_file(tensors, tmp_path / name / "model.safetensors")
    space = [weights_fingerprint(tmp_path / n, CLAP_SPACE_PREFIXES)["sha256"] for n in "ab"]
    text = [weights_fingerprint(tmp_path / n, TEXT_TOWER_PREFIXES)["sha256"] for n in "ab"]
    assert space[0] != space[1]  # the audio tower is part of a style space
    assert text[0] == text[1]  # and not of the text tower's fingerprint


def test_a_float16_copy_of_float16_weights_matches(tmp_path):
    """Values are cast to float32 before hashing: fp16 files hash like their fp32 upcast."""
    half = {k: v.astype(np.float16) for k, v in _tensors().items()}
    up = {k: v.astype(np.float32) for k, v in half.items()}
    for name, tensors in (("half", half), ("up", up)):
        (tmp_path / name).mkdir()
        save_file(tensors, tmp_path / name / "model.safetensors")
    a, b = (weights_fingerprint(tmp_path / n, CLAP_SPACE_PREFIXES) for n in ("half", "up"))
    assert a == b


def test_missing_folder_or_tensors_give_a_reason(tmp_path):
    assert (
        "no local folder" in weights_fingerprint(tmp_path / "absent", CLAP_SPACE_PREFIXES)["reason"]
    )
    (tmp_path / "empty").mkdir()
    found = weights_fingerprint(tmp_path / "empty", CLAP_SPACE_PREFIXES)
    assert found["sha256"] is None and "no tensors named" in found["reason"]
