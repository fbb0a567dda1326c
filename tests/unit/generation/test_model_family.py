"""The model-family seam: a family defined outside the product (tests/unit/generation/
minimal_family.py) runs through the generate CLI end to end, with nothing but its module
and the ``--family`` (config ``models.<m>.family``) that names it; the orchestrator
modules name no family."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.families import REGISTERED, family_class, family_problem, get_family
from rcmg.generation.families.base import ModelFamily
from rcmg.workflow.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[3]
MINIMAL = "tests/unit/generation/minimal_family.py:MinimalFamily"
PROMPTS = ["a calm piano melody", "fast jazz drums", "rain on a window", "a brass fanfare"]
SEED, SECONDS = 3, 0.25
pytestmark = pytest.mark.xdist_group("model_family")


def test_registry_names_import_paths_and_refusals(tmp_path):
    assert {get_family(n).name for n in REGISTERED} == set(REGISTERED)
    assert family_class(str(REPO / MINIMAL)).name == "minimal"
    assert issubclass(family_class("rcmg.generation.families.audioldm1:AudioLDM1"), ModelFamily)
    assert "unknown model family 'audioldm3'" in family_problem("audioldm3")
    assert "cannot import" in family_problem("no.such.module:Family")
    assert "cannot import" in family_problem(f"{tmp_path}/missing.py:Family")
    assert "not a ModelFamily subclass" in family_problem(
        "rcmg.generation.families.base:SamplingSettings"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Prompt, retrieval at alpha 0 and 0.3, and its random control at the same angles,
    each through the generate CLI (a subprocess, as the workflow runs it)."""
    from rcmg.bank.retrieval import build_index, save_index

    work = tmp_path_factory.mktemp("family")
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(work / "bank.npy", vectors)
    rows = [
        {"segment_id": f"seg{i:02d}", "tags": ["piano" if i % 2 else "rain"]} for i in range(12)
    ]
    (work / "bank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    save_index(build_index(vectors), work / "bank.index")
    (work / "toy").mkdir()
    (work / "toy" / "config.json").write_text("{}", encoding="utf-8")
    bank = ["--bank", str(work / "bank.npy"), "--bank-mapping", str(work / "bank.jsonl"),
            "--index", str(work / "bank.index"), "--clap-model", str(tiny_model("clap"))]  # fmt: skip

    def run(name: str, condition_type: str, *extra: str) -> Path:
        out = work / name
        command = [
            sys.executable, "workflow_scripts/generate.py", "--model-key", "toy",
            "--model-id", str(work / "toy"), "--family", MINIMAL, "--condition", name,
            "--condition-type", condition_type, "--prompts", str(prompts), "--seed", str(SEED),
            "--seconds", str(SECONDS), "--steps", "1", "--batch", "3", "--out-dir", str(out),
            *extra,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return out

    return {
        "prompt": run("prompt", "prompt"),
        "alpha0": run("alpha0", "retrieval", *bank, "--alpha", "0"),
        "retrieval": run("retrieval", "retrieval", *bank, "--alpha", "0.3", "--blend", "slerp"),
        "random": run(
            "random",
            "retrieval_random",
            *bank,
            "--blend",
            "slerp",
            "--match-angles",
            str(work / "retrieval" / "items.jsonl"),
        ),  # fmt: skip
    }


def _audio(run: Path) -> dict[int, np.ndarray]:
    out = {}
    for row in read_jsonl(run / "items.jsonl"):
        data, rate = sf.read(run / row["wav"], dtype="float32")
        assert rate == 8000
        out[row["item"]] = data
    return out


def test_prompt_condition_equals_the_plain_call(runs):
    import torch

    family = family_class(str(REPO / MINIMAL))()
    pipe = family.load("toy", "cpu", "fp32", "default").pipe
    gens = [torch.Generator().manual_seed(SEED + i) for i in range(len(PROMPTS))]
    plain = family.plain_call(pipe, PROMPTS, SECONDS, gens)
    audio = _audio(runs["prompt"])
    for i in range(len(PROMPTS)):
        np.testing.assert_array_equal(audio[i], plain[i].astype(np.float32))
    config = json.loads((runs["prompt"] / "run_config.json").read_text())
    assert config["family"] == MINIMAL and config["params"]["sample_rate"] == 8000
    assert config["unet_forward_calls"] == len(PROMPTS)  # the family's denoiser was timed


def test_retrieval_blends_at_alpha_and_alpha_zero_is_the_prompt(runs):
    prompt, alpha0, styled = (_audio(runs[k]) for k in ("prompt", "alpha0", "retrieval"))
    for i in prompt:
        np.testing.assert_array_equal(alpha0[i], prompt[i])
        assert np.abs(styled[i] - prompt[i]).max() > 1e-4
    rows = list(read_jsonl(runs["retrieval"] / "items.jsonl"))
    assert all(r["conditioning"]["site"] == "toy_embedding" for r in rows)
    assert all(
        r["conditioning"]["angles_deg"]["cond"] > 0 and len(r["retrieved"]) == 4 for r in rows
    )


def test_control_turns_each_item_by_the_retrieval_runs_angle(runs):
    base = {r["item"]: r for r in read_jsonl(runs["retrieval"] / "items.jsonl")}
    for row in read_jsonl(runs["random"] / "items.jsonl"):
        assert row["style_source"] == "bank_random"
        target = base[row["item"]]["conditioning"]["angles_deg"]["cond"]
        assert row["conditioning"]["angles_deg"]["cond"] == pytest.approx(target, abs=0.05)


def test_config_takes_the_family_as_one_entry():
    """models.<m>.family with the import path passes the config checks; a wrong one is named."""
    import yaml
    from rcmg.generation.config_checks import problems

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"]["toy"] = {**config["models"]["audioldm"], "family": MINIMAL}
    assert not [p for p in problems(config, REPO) if "models.toy" in p]
    config["models"]["toy"]["family"] = "tests/unit/generation/minimal_family.py:Nope"
    assert any(
        p.startswith("models.toy.family:") and "cannot import" in p for p in problems(config, REPO)
    )


def test_adapter_mlp_is_the_native_path_on_the_cli_and_a_named_error_in_config():
    """The original scripts' ``--adapter mlp`` maps to ``native`` (no MLP is trained on that
    path); a config still writing ``adapter: mlp`` is told the new spelling."""
    import yaml
    from rcmg.generation.conditioning import ADAPTERS, canonical_adapter
    from rcmg.generation.config_checks import problems

    assert canonical_adapter("mlp") == "native" and "mlp" not in ADAPTERS
    assert [canonical_adapter(a) for a in ADAPTERS] == list(ADAPTERS)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "retrieval_native" in config["conditions"]
    assert config["conditions"]["retrieval_native"]["adapter"] == "native"
    config["conditions"]["retrieval_native"]["adapter"] = "mlp"
    found = [p for p in problems(config, REPO) if p.startswith("conditions.retrieval_native:")]
    assert found == [
        "conditions.retrieval_native: 'adapter: mlp' is now 'adapter: native' (the model's own "
        "conditioning path; no MLP is trained on it); write 'adapter: native'"
    ]


def test_style_only_runs_only_on_families_with_that_baseline():
    """family_problems: style_only on a family without the baseline is named with the models
    that have it; a model whose family does not resolve is reported once, not twice."""
    import yaml
    from rcmg.generation.config_checks import family_problems

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert family_problems(config) == []  # style_only: models [audioldm]
    config["conditions"]["style_only"]["models"] = ["audioldm", "audioldm2"]
    assert family_problems(config) == [
        "conditions.style_only: style_only is a baseline of the families that have it "
        "(models ['audioldm']); set 'models' to such models (not ['audioldm2'])"
    ]
    config["models"]["audioldm2"]["family"] = "no.such.module:Family"
    found = family_problems(config)
    assert len(found) == 1 and found[0].startswith("models.audioldm2.family:")


ORCHESTRATOR = [
    "job.py", "job_checks.py", "resources.py", "planning.py", "controls.py", "batching.py",
    "ranking.py", "provenance.py", "generate_config.py", "conditioning.py",
    "style_guidance.py", "adapter_training.py", "adapter_job.py",
]  # fmt: skip
FAMILY_NAMES = re.compile(
    r"audioldm|aldm[12]|AudioLDM2?Pipeline|StableAudio|Musicgen", re.IGNORECASE
)


@pytest.mark.parametrize("module", ORCHESTRATOR)
def test_orchestrator_modules_name_no_family(module):
    path = REPO / "workflow_scripts" / "rcmg" / "generation" / module
    text = path.read_text(encoding="utf-8")
    found = [line for line in text.splitlines() if FAMILY_NAMES.search(line)]
    assert not found, f"{path} names a family: {found}"


def test_generation_modules_stay_small():
    """job.py was split by job: no generation module over about 400 lines, adapter
    training's generic loop aside (its families' parts moved out)."""
    sizes = {
        p.name: len(p.read_text().splitlines())
        for p in (REPO / "workflow_scripts" / "rcmg" / "generation").glob("*.py")
    }
    assert sizes["job.py"] < 400
    assert all(
        n < 450
        for name, n in sizes.items()
        if name in ORCHESTRATOR and name != "adapter_training.py"
    ), sizes


def test_family_modules_import_no_heavy_library_at_import_time():
    """Snakemake asks families for their traits while it parses: their module level
    imports stay light (torch, diffusers and transformers inside methods)."""
    for path in (REPO / "workflow_scripts" / "rcmg" / "generation" / "families").glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"torch", "diffusers", "transformers"}, (path, names)
