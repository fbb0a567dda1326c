"""Style spaces: planned from config (no weights), one bank filtered/deduplicated once,
every space holding the same items in the same order, a shared space embedded once."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rcmg.bank import spaces
from rcmg.bank.build import build_bank
from rcmg.bank.space_embedding import embed_bank_items
from rcmg.models.clap import ClapEmbedder
from rcmg.models.fingerprint import clap_space_fingerprint
from rcmg.models.shard_embedding import EmbedOptions, embed_shard, gather_shards
from rcmg.workflow.atomic import read_jsonl
from rcmg.workflow.cli import InputError

from tests.unit.models.test_clap import write_fake_shard

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "workflow_scripts"


def _config(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


# ------------------------------------------------------------------ planning


def test_demo_and_real_configs_declare_both_cases():
    """AudioLDM1 -> the bank CLAP (alignment check); AudioLDM2 models -> their own CLAP."""
    for name in ("demo.yaml", "config.yaml"):
        cfg = _config(name)
        assert spaces.model_space_name(cfg, "audioldm") == "bank"
        for model in ("audioldm2", "audioldm2-music"):
            space = spaces.model_space(cfg, model)
            assert space.name == f"{model}.text_encoder"
            assert (space.model, space.subfolder) == (cfg["models"][model]["id"], "text_encoder")
        assert spaces.embedded_spaces(cfg) == [
            "audioldm2.text_encoder",
            "audioldm2-music.text_encoder",
        ]
        assert spaces.space_problems(cfg) == []


def test_a_space_shared_by_several_models_is_embedded_once():
    cfg = copy.deepcopy(_config("config.yaml"))
    aldm2 = cfg["models"]["audioldm2"]["id"]
    cfg["style_spaces"] = {
        "aldm2_clap": {"model": aldm2, "subfolder": "text_encoder"},
        # the same weights under another name, spelled as another path: still one space
        "again": {"model": f"./{aldm2}", "subfolder": "text_encoder/", "revision": None},
        "pinned": {"model": aldm2, "subfolder": "text_encoder", "revision": "abc123"},
        "bank_again": {"model": cfg["clap"]["model"]},
    }
    cfg["models"]["audioldm2-music"]["style_space"] = "again"
    assert spaces.model_space_name(cfg, "audioldm2-music") == "aldm2_clap"
    # own_text_encoder of audioldm2 is the same (model, subfolder, revision) as aldm2_clap
    assert spaces.model_space_name(cfg, "audioldm2") == "aldm2_clap"
    assert spaces.embedded_spaces(cfg) == ["aldm2_clap"]
    cfg["models"]["audioldm"]["style_space"] = "bank_again"
    assert spaces.model_space_name(cfg, "audioldm") == "bank"
    cfg["models"]["audioldm2-music"]["style_space"] = "pinned"  # another revision: own space
    assert spaces.embedded_spaces(cfg) == ["aldm2_clap", "pinned"]
    assert spaces.embedded_spaces(cfg, models=[]) == []


def test_space_problems_name_the_key_and_the_fix():
    cfg = copy.deepcopy(_config("demo.yaml"))
    cfg["models"]["audioldm"]["style_space"] = "own_text_encoder"
    cfg["models"]["audioldm2"]["style_space"] = "nowhere"
    cfg["style_spaces"] = {"bank": {"model": "x"}}
    found = spaces.space_problems(cfg)
    assert any(p.startswith("models.audioldm.style_space") and "no CLAP audio" in p for p in found)
    assert any(p.startswith("models.audioldm2.style_space: 'nowhere'") for p in found)
    assert any(p.startswith("style_spaces.bank") for p in found)


# ------------------------------------------------------------------ embedding


def _shard_columns(n: int, tags: list) -> dict:
    return {
        "source_id": [f"src{i}" for i in range(n)],
        "dataset": ["fsd50k"] * n,
        "path": [f"a{i}.wav" for i in range(n)],
        "offset_s": [0.0] * n,
        "duration_s": [1.0] * n,
        "split": ["dev"] * n,
        "tags": tags,
        "rms_dbfs": [-20.0] * n,
        "source_duration_s": [5.0] * n,
    }


@pytest.fixture(scope="module")
def bank(tmp_path_factory, tiny_model):
    """Two shards -> bank-CLAP embeddings -> gathered -> a bank filtered and deduplicated."""
    root = tmp_path_factory.mktemp("spaces")
    segments = root / "segments"
    tags = [["Rain"], ["Speech"], ["Bell"], ["Wind"]]
    audio0 = write_fake_shard(segments / "shard0", n=4, seed=1, **_shard_columns(4, tags))
    shard1 = segments / "shard1"
    write_fake_shard(shard1, n=3, seed=2, **_shard_columns(3, [["Bird"], ["Bell"], ["Water"]]))
    audio1 = np.load(shard1 / "audio_48k.npy")
    audio1[1] = audio0[2]  # a duplicate of an earlier clip: dropped by the dedupe
    np.save(shard1 / "audio_48k.npy", audio1)
    clap = str(tiny_model("clap"))
    embs, stats = [], []
    for shard in ("shard0", "shard1"):
        out = root / f"{shard}.npy"
        opts = EmbedOptions(model=clap, batch=4, device="cpu")
        stats.append(embed_shard(segments / shard, out, opts))
        embs.append(out)
    gather_shards([segments / "shard0", shard1], embs, root / "emb.npy", root / "map.jsonl")
    filt = root / "filter.yaml"
    filt.write_text(yaml.safe_dump({"exclude_tags": ["Speech"], "splits": ["dev"]}))
    build_bank(
        embeddings=root / "emb.npy",
        mapping=root / "map.jsonl",
        filter_path=filt,
        out_bank=root / "bank.npy",
        out_mapping=root / "bank.jsonl",
        audit_dir=root / "audit",
        dedupe_cosine=0.999999,  # the random-weight CLAP puts all clips at cosine ~0.99995
    )
    return {
        "root": root,
        "segments": segments,
        "audio": {"shard0": audio0, "shard1": audio1},
        "mapping": root / "bank.jsonl",
        "npy": root / "bank.npy",
        "clap": clap,
        "stats": stats,
    }


def _space_embed(bank, name, model, subfolder=""):
    """The space_embed CLI (in-process: its main(), as `python space_embed.py` runs it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_embed", SCRIPTS / "space_embed.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = bank["root"] / name
    code = script.main([
        "--space", name, "--bank-mapping", str(bank["mapping"]),
        "--segments-root", str(bank["segments"]), "--model", model, "--subfolder", subfolder,
        "--batch", "3", "--device", "cpu", "--out", str(out / "style_bank.npy"),
        "--record", str(out / "space.json"),
    ])  # fmt: skip
    assert code in (0, None)
    return out


def test_every_space_holds_the_banks_items_in_the_banks_order(bank, tiny_model):
    mapping = read_jsonl(bank["mapping"])
    ids = [m["segment_id"] for m in mapping]
    # filtered (Speech) and deduplicated (shard1-001 repeats shard0-002, shard1-000 is the
    # silence of shard0-000) ONCE, in the bank CLAP's space
    assert ids == ["shard0-000", "shard0-002", "shard0-003", "shard1-002"]
    # the bank's own CLAP as a "space": exactly the bank's rows back
    same = bank["root"] / "bank_again.npy"
    embed_bank_items(
        bank["mapping"], bank["segments"], same, EmbedOptions(model=bank["clap"], device="cpu")
    )
    np.testing.assert_allclose(np.load(same), np.load(bank["npy"]), atol=1e-5)
    # AudioLDM2's own text_encoder: row i is the audio of bank row i in that space
    aldm2 = str(tiny_model("audioldm2"))
    out = _space_embed(bank, "aldm2", aldm2, "text_encoder")
    rows = np.load(out / "style_bank.npy")
    own = ClapEmbedder(aldm2, device="cpu", subfolder="text_encoder")
    clips = np.stack(
        [bank["audio"][m["shard"]][m["shard_row"]].astype(np.float32) for m in mapping]
    )
    np.testing.assert_allclose(rows, own.embed_audio(clips), atol=1e-5)
    assert not np.allclose(rows, np.load(bank["npy"]), atol=1e-2)  # another space
    record = json.loads((out / "space.json").read_text())
    assert record["space"] == "aldm2" and record["n"] == len(ids)
    assert record["segment_ids_sha256"] == spaces.segment_ids_digest(ids)
    assert record["fingerprint"] == clap_space_fingerprint(aldm2, "text_encoder")
    assert record["fingerprint"]["sha256"] != clap_space_fingerprint(bank["clap"])["sha256"]
    assert not (out / "style_bank.npy.partial").exists()


def test_a_shard_changed_after_the_bank_was_built_is_refused(bank, tmp_path):
    import shutil

    import pandas as pd

    segments = tmp_path / "segments"
    shutil.copytree(bank["segments"], segments)
    manifest = pd.read_parquet(segments / "shard1" / "manifest.parquet")
    manifest["segment_id"] = manifest["segment_id"].iloc[::-1].to_numpy()
    manifest.to_parquet(segments / "shard1" / "manifest.parquet")
    with pytest.raises(InputError, match="rebuild the bank"):
        embed_bank_items(
            bank["mapping"],
            segments,
            tmp_path / "x.npy",
            EmbedOptions(model=bank["clap"], device="cpu"),
        )


def test_clap_embed_stats_record_the_weights_fingerprint(bank):
    """The bank space's records are the clap_embed stats: they carry the fingerprint too."""
    for stats in bank["stats"]:
        assert stats["fingerprint"]["sha256"] == clap_space_fingerprint(bank["clap"])["sha256"]
        assert stats["fingerprint"]["tensors"] > 0
