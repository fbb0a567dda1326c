"""Style adapter checkpoints: safetensors only, shapes checked, pickles refused unread."""

from __future__ import annotations

import json

import pytest
import torch
from rcmg.generation.adapter import (
    AdapterFileError,
    build_adapter,
    load_adapter,
    read_safetensors_header,
    save_adapter,
)


def test_round_trip_keeps_weights_and_config(tmp_path):
    module = build_adapter(512, 48, hidden=32, seed=0)
    path = save_adapter(
        module, tmp_path / "a.safetensors", {"model": "tiny-audioldm2", "epochs": 3}
    )
    loaded = load_adapter(path, expected_in=512, expected_out=48)
    x = torch.randn(4, 512, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded(x), module.eval()(x))
    meta = json.loads(read_safetensors_header(path)["__metadata__"]["rcmg_adapter"])
    assert meta == {
        "model": "tiny-audioldm2",
        "epochs": 3,
        "in_dim": 512,
        "out_dim": 48,
        "hidden": 32,
        "kind": "mlp",
    }
    assert not list(tmp_path.glob("*.part*"))


def test_residual_only_when_dims_match():
    same, other = build_adapter(512, 512, 16, seed=0), build_adapter(512, 64, 16, seed=0)
    assert same.residual and not other.residual
    with torch.no_grad():
        for p in same.parameters():
            p.zero_()
    x = torch.randn(2, 512)
    assert torch.equal(same(x), x)  # zero MLP + residual = identity


def test_refuses_torch_save_pickle_renamed_safetensors(tmp_path, monkeypatch):
    path = tmp_path / "evil.safetensors"
    torch.save(build_adapter(512, 512, 16).state_dict(), path)
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: pytest.fail("torch.load must never be called")
    )
    with pytest.raises(
        AdapterFileError, match=r"evil\.safetensors: not a safetensors file \(a zip archive"
    ):
        load_adapter(path, 512, 512)


def test_refuses_raw_pickle(tmp_path):
    import pickle

    path = tmp_path / "raw.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    with pytest.raises(AdapterFileError, match="a Python pickle"):
        load_adapter(path, 512, 512)


def test_refuses_wrong_output_dim_naming_shapes(tmp_path):
    path = save_adapter(build_adapter(512, 64, 16, seed=0), tmp_path / "h64.safetensors")
    with pytest.raises(
        AdapterFileError, match=r"h64\.safetensors.*expected 512 -> 96, found 512 -> 64"
    ):
        load_adapter(path, expected_in=512, expected_out=96)


def test_refuses_tensors_that_disagree_with_config(tmp_path):
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in build_adapter(512, 64, 16).state_dict().items()}
    meta = {"in_dim": 512, "out_dim": 64, "hidden": 32, "kind": "mlp"}  # claims hidden 32, has 16
    path = tmp_path / "lying.safetensors"
    save_file(tensors, str(path), metadata={"rcmg_adapter": json.dumps(meta)})
    with pytest.raises(
        AdapterFileError, match=r"fc1\.weight: expected \(32, 512\), found \(16, 512\)"
    ):
        load_adapter(path, 512, 64)


def test_refuses_foreign_safetensors_and_missing_and_bad_suffix(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(AdapterFileError, match="no 'rcmg_adapter' metadata"):
        load_adapter(foreign, 512, 512)
    with pytest.raises(AdapterFileError, match="not found"):
        load_adapter(tmp_path / "missing.safetensors", 512, 512)
    with pytest.raises(AdapterFileError, match="must end in .safetensors"):
        save_adapter(build_adapter(512, 512, 8), tmp_path / "x.pt")
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(b"\x10\x00")
    with pytest.raises(AdapterFileError, match="too short"):
        read_safetensors_header(truncated)
