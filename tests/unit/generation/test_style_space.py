"""The generate job verifies the declared style space by a fingerprint of the weights, and
AudioLDM2 embeds its retrieval queries with its own CLAP (the space it blends into)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from rcmg.bank.spaces import segment_ids_digest
from rcmg.generation.conditioning import OptionError
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.generation.resources import verify_style_space
from rcmg.models.clap import ClapEmbedder
from rcmg.models.fingerprint import clap_space_fingerprint
from rcmg.workflow.atomic import read_jsonl

from tests.unit import fake_runs

SCRIPTS = Path(__file__).resolve().parents[3] / "workflow_scripts"
PROMPTS = ["a calm piano melody", "rain on a tin roof with bells"]
N_BANK = 12


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model):
    """A bank embedded in the tiny AudioLDM2's own CLAP space, with its space record."""
    root = tmp_path_factory.mktemp("style_space")
    aldm2 = str(tiny_model("audioldm2"))
    vectors = np.random.default_rng(3).standard_normal((N_BANK, 512)).astype(np.float32)
    rows = [{"segment_id": f"s{i}", "tags": ["t"], "source_id": f"u{i}"} for i in range(N_BANK)]
    files = fake_runs.write_style_bank(root / "bank", vectors, rows)
    record = root / "space.json"
    record.write_text(
        json.dumps(
            {
                "space": "audioldm2.text_encoder",
                "fingerprint": clap_space_fingerprint(aldm2, "text_encoder"),
                "segment_ids_sha256": segment_ids_digest(r["segment_id"] for r in rows),
            }
        )
    )
    prompts = root / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return {"root": root, "files": files, "record": str(record), "prompts": str(prompts)}


def _cfg(space, tiny_model, kind, name, **extra) -> GenerateConfig:
    values = dict(
        model_key=kind, model_id=str(tiny_model(kind)),
        family="audioldm1" if kind == "audioldm" else "audioldm2", condition=name,
        condition_type="retrieval", prompts=space["prompts"], out_dir=str(space["root"] / name),
        seed=0, steps=1, guidance=2.0, seconds=0.25, batch=2, adapter="native", alpha=0.2,
        style_topk=3, style_temp=0.1, clap_model=str(tiny_model("audioldm2")),
        clap_subfolder="text_encoder", style_space="audioldm2.text_encoder",
        space_records=[space["record"]], **space["files"],
    )  # fmt: skip
    values.update(extra)
    return GenerateConfig(**values)


def test_audioldm2_queries_its_own_clap_and_records_the_verified_space(space, tiny_model):
    run = run_generation(_cfg(space, tiny_model, "audioldm2", "own_space"))
    config = json.loads((run / "run_config.json").read_text())
    want = clap_space_fingerprint(str(tiny_model("audioldm2")), "text_encoder")["sha256"]
    assert config["style_space"]["name"] == "audioldm2.text_encoder"
    assert config["style_space"]["verified"] is True
    assert config["style_space"]["fingerprint"] == want
    assert config["condition_params"]["style_space"]["fingerprint"] == want
    rows = read_jsonl(run / "items.jsonl")
    assert {(r["style_space"], r["space_fingerprint"]) for r in rows} == {
        ("audioldm2.text_encoder", want)
    }
    # the retrieval scores are the bank rows against the prompt in the model's OWN space
    own = ClapEmbedder(str(tiny_model("audioldm2")), device="cpu", subfolder="text_encoder")
    bank = np.load(space["files"]["bank"])
    other = ClapEmbedder(str(tiny_model("clap")), device="cpu")
    for row in rows:
        scores = bank @ own.embed_text([row["prompt_used"]])[0]
        hits = [h["row"] for h in row["retrieved"]]
        assert hits == list(np.argsort(-scores)[: len(hits)])
        got = np.array([h["score"] for h in row["retrieved"]])
        np.testing.assert_allclose(got, scores[hits], atol=1e-4)
        elsewhere = bank @ other.embed_text([row["prompt_used"]])[0]  # the bank CLAP's space
        assert np.abs(elsewhere[hits] - got).max() > 1e-2


def test_a_model_whose_clap_is_not_the_spaces_is_refused_in_one_line(space, tiny_model, capsys):
    """AudioLDM2-Music declared in AudioLDM2's space: its own text_encoder has other weights."""
    spec = importlib.util.spec_from_file_location("generate_cli", SCRIPTS / "generate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    music = str(tiny_model("audioldm2-music"))
    code = script.main([
        "--model-key", "audioldm2-music", "--model-id", music, "--pipeline", "audioldm2",
        "--condition", "retrieval_native", "--condition-type", "retrieval", "--adapter", "native",
        "--prompts", space["prompts"], "--out-dir", str(space["root"] / "refused"),
        "--clap-model", str(tiny_model("audioldm2")), "--clap-subfolder", "text_encoder",
        "--style-space", "audioldm2.text_encoder", "--space-record", space["record"],
        "--bank", space["files"]["bank"], "--bank-mapping", space["files"]["bank_mapping"],
        "--index", space["files"]["index"], "--steps", "1", "--device", "cpu",
    ])  # fmt: skip
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(err) == 1
    message = err[0]
    assert "style space 'audioldm2.text_encoder'" in message
    assert str(tiny_model("audioldm2")) in message and f"{music}/text_encoder" in message
    assert "models.audioldm2-music.style_space" in message
    assert not (space["root"] / "refused").exists()


def test_audioldm1_checks_the_bank_clap_it_queries_with(space, tiny_model, tmp_path):
    """AudioLDM1 in the bank space: the CLAP that embeds its queries must be the one that
    embedded the bank (every clap_embed shard's stats); its text tower is align_check's."""
    clap = str(tiny_model("clap"))
    shards = []
    for i, model in enumerate((clap, clap)):
        path = tmp_path / f"shard{i}.stats.json"
        path.write_text(json.dumps({"fingerprint": clap_space_fingerprint(model)}))
        shards.append(str(path))
    cfg = _cfg(
        space, tiny_model, "audioldm", "bank_space", clap_model=clap, clap_subfolder="",
        style_space="bank", space_records=shards,
    )  # fmt: skip
    ids = [f"s{i}" for i in range(N_BANK)]
    found = verify_style_space(cfg, ids)
    assert found["verified"] and found["fingerprint"] == clap_space_fingerprint(clap)["sha256"]
    assert found["conditioning_clap"] == clap
    # one shard embedded with other weights is enough to refuse
    Path(shards[1]).write_text(
        json.dumps({"fingerprint": json.loads(Path(space["record"]).read_text())["fingerprint"]})
    )
    with pytest.raises(OptionError, match="was embedded with .*audioldm2/text_encoder"):
        verify_style_space(cfg, ids)


def test_a_space_holding_other_items_than_the_bank_is_refused(space, tiny_model):
    cfg = _cfg(space, tiny_model, "audioldm2", "reordered")
    ids = [f"s{i}" for i in range(N_BANK)]
    assert verify_style_space(cfg, ids)["segment_ids_sha256"] == segment_ids_digest(ids)
    with pytest.raises(OptionError, match="holds other bank items"):
        verify_style_space(cfg, ids[::-1])


def test_without_a_declared_space_nothing_is_claimed(space, tiny_model):
    cfg = _cfg(space, tiny_model, "audioldm2", "undeclared", style_space=None, space_records=[])
    found = verify_style_space(cfg, [])
    assert found["verified"] is False and "no --style-space" in found["note"]
