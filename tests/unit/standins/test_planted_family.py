"""The planted-effect model (rcmg.standins.planted_family): its mix weight w is the
documented function of the conditioning angle, its audio is exactly the known mix, a
control mixes its own items, and the generate CLI records w per item and in run_config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.bank_audio import BankAudio
from rcmg.generation.conditioning import ConditionOptions, style_only_options
from rcmg.generation.families import family_class
from rcmg.generation.families.base import ConditioningRequest, SamplingSettings
from rcmg.standins import planted_family as planted
from rcmg.workflow.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[3]
FAMILY = "rcmg.standins.planted_family:PlantedFamily"
PROMPTS = ["a gentle solo piano piece", "rain and distant bells", "a flute melody", "drum loop"]
RATE, SECONDS, SEED, N_BANK = 16000, 0.5, 5, 10
pytestmark = pytest.mark.xdist_group("planted_family")


def _segments(root: Path) -> np.ndarray:
    """A bank dataset's segment shard: N_BANK distinct 1-s windows (sines of rising pitch)."""
    t = np.arange(RATE) / RATE
    windows = np.stack([0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) for i in range(N_BANK)])
    (root / "shard0").mkdir(parents=True)
    np.save(root / "shard0" / "audio_16k.npy", windows.astype(np.float16))
    return windows.astype(np.float16).astype(np.float32)


def _mapping() -> list[dict]:
    return [
        {
            "row": i,
            "segment_id": f"seg{i:02d}",
            "dataset": "fsd50k",
            "shard": "shard0",
            "shard_row": i,
            "tags": ["Rain" if i % 2 else "Drum"],
        }  # fmt: skip
        for i in range(N_BANK)
    ]


@pytest.fixture
def loaded(tmp_path):
    planted.build_planted_model(tmp_path / "planted")
    family = family_class(FAMILY)()
    return family, family.load(str(tmp_path / "planted"), "cpu", "fp32", "ddim")


def _styles(n: int, seed: int = 0):
    import torch

    v = np.random.default_rng(seed).standard_normal((n, 512))
    return torch.from_numpy(v / np.linalg.norm(v, axis=1, keepdims=True)).float()


def _hits(rows):
    return [{"row": r, "segment_id": f"seg{r:02d}", "score": 0.5 - 0.1 * k, "tags": []}
            for k, r in enumerate(rows)]  # fmt: skip


def _request(options, styles=None, retrieved=None, bank=None, targets=None):
    return ConditioningRequest(
        prompts=PROMPTS, negatives=[""] * len(PROMPTS), do_cfg=False, options=options,
        styles=styles, targets=targets, infos=[], retrieved=retrieved, bank_audio=bank,
    )  # fmt: skip


def _retrieval(**kw) -> ConditionOptions:
    return ConditionOptions(condition_type="retrieval", family=FAMILY, **kw)


def test_weight_is_monotone_in_the_angle_zero_at_prompt_one_at_style_only(loaded, tmp_path):
    family, model = loaded
    _segments(tmp_path / "seg")
    bank = BankAudio(_mapping(), tmp_path / "seg")
    styles, retrieved = _styles(len(PROMPTS)), [_hits([i, i + 1]) for i in range(len(PROMPTS))]

    prompt = family.conditioning(model, _request(ConditionOptions("prompt", FAMILY)))
    assert prompt["weights"] == [0.0] * len(PROMPTS)

    def weights_and_angles(opts):
        request = _request(opts, styles, retrieved, bank)
        out = family.conditioning(model, request)
        measured = [info["measures"]["mix_weight"] for info in request.infos]
        assert measured == out["weights"]
        return np.array(out["weights"]), np.array([i["angles_deg"]["cond"] for i in request.infos])

    for blend in ("orth", "lerp", "slerp"):
        rows = [weights_and_angles(_retrieval(blend=blend, alpha=a)) for a in (0.0, 0.1, 0.3, 0.6)]
        w, angle = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        assert np.all(w[0] == 0.0) and np.all(angle[0] == 0.0)  # alpha 0: the prompt
        assert np.all(np.diff(angle, axis=0) > 0) and np.all(np.diff(w, axis=0) > 0)
    slerp = weights_and_angles(_retrieval(blend="slerp", alpha=0.3))[0]
    np.testing.assert_allclose(slerp, 0.3, atol=1e-4)  # slerp turns alpha of the arc
    only = weights_and_angles(style_only_options(ConditionOptions("style_only", FAMILY)))[0]
    np.testing.assert_allclose(only, 1.0, atol=1e-6)
    # w is a function of the angle alone given the prompt-style angle (documented formula)
    assert planted.mix_weight(30.0, 90.0) == pytest.approx(1 / 3)
    assert planted.mix_weight(120.0, 90.0) == 1.0 and planted.mix_weight(30.0, 90.0, 4.0) == 1.0
    assert planted.mix_weight(30.0, 90.0, beta=0.5) == pytest.approx(1 / 6)


def _noise(n_items: int, samples: int):
    import torch

    return [
        torch.randn(
            samples, generator=torch.Generator().manual_seed(SEED + i), dtype=torch.float64
        ).numpy()
        for i in range(n_items)
    ]


def _generate(family, model, conditioning):
    import torch

    gens = [torch.Generator().manual_seed(SEED + i) for i in range(len(PROMPTS))]
    return family.generate(model, conditioning, SamplingSettings(SECONDS, 1, 1.0, 1, gens))


def test_audio_is_the_known_mix_and_a_control_mixes_its_own_items(loaded, tmp_path):
    family, model = loaded
    windows = _segments(tmp_path / "seg")
    bank = BankAudio(_mapping(), tmp_path / "seg")
    samples = int(SECONDS * RATE)
    pipe = model.pipe
    styles = _styles(len(PROMPTS))
    own = [_hits([i, i + 2]) for i in range(len(PROMPTS))]
    wrong = [_hits([9 - i]) for i in range(len(PROMPTS))]
    opts = _retrieval(blend="slerp", alpha=0.4)
    noise = _noise(len(PROMPTS), samples)

    def expected(i, w, hits):
        weights = planted.item_weights(hits, opts.style_temp)
        items = sum(wt * windows[h["row"], :samples].astype(np.float64)
                    for h, wt in zip(hits, weights, strict=True))  # fmt: skip
        items = items * (pipe.level_rms / np.sqrt(np.mean(items**2)))
        part = planted.prompt_part(PROMPTS[i], samples, RATE, pipe.level_rms)
        return ((1 - w) * part + w * items + pipe.noise_rms * noise[i]).astype(np.float32)

    for retrieved in (own, wrong):
        cond = family.conditioning(model, _request(opts, styles, retrieved, bank))
        audio = _generate(family, model, cond)
        assert audio.shape == (len(PROMPTS), samples)
        for i, w in enumerate(cond["weights"]):
            assert 0.3 < w < 0.5
            np.testing.assert_allclose(audio[i], expected(i, w, retrieved[i]), atol=1e-6)
    # the prompt condition: the prompt part and the same noise, no bank audio
    audio = _generate(
        family, model, family.conditioning(model, _request(ConditionOptions("prompt", FAMILY)))
    )
    for i in range(len(PROMPTS)):
        np.testing.assert_allclose(audio[i], expected(i, 0.0, own[i]), atol=1e-6)
    # the prompt part is the prompt's instruments (default: piano)
    assert planted.instruments(PROMPTS[1]) == ["Rain", "Bell"]
    assert planted.instruments("an ambient pad") == ["piano"]


def test_a_missing_model_folder_names_the_fix(tmp_path):
    family = family_class(FAMILY)()
    with pytest.raises(planted.PlantedModelError, match="demo_model.py --kind planted"):
        family.load(str(tmp_path / "nothing"), "cpu", "fp32", "ddim")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    with pytest.raises(planted.PlantedModelError, match="not 'PlantedEffectModel'"):
        family.load(str(tmp_path / "other"), "cpu", "fp32", "ddim")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, tiny_model):
    """Prompt, retrieval (slerp 0.4), its random control at the matched angles and the
    alpha-0 null of the planted model, through the generate CLI on a bank with segments."""
    from rcmg.bank.retrieval import build_index, save_index

    work = tmp_path_factory.mktemp("planted")
    windows_root = work / "processed" / "fsd50k" / "segments"
    _segments(windows_root)
    (work / "processed" / "bank").mkdir(parents=True)
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    vectors = _styles(N_BANK, seed=1).numpy()
    bank_npy = work / "processed" / "bank" / "style_bank.npy"
    np.save(bank_npy, vectors)
    mapping = work / "processed" / "bank" / "style_bank.jsonl"
    mapping.write_text("".join(json.dumps(r) + "\n" for r in _mapping()), encoding="utf-8")
    save_index(build_index(vectors), work / "bank.index")
    model = planted.build_planted_model(work / "planted")
    bank = ["--bank", str(bank_npy), "--bank-mapping", str(mapping), "--index",
            str(work / "bank.index"), "--clap-model", str(tiny_model("clap"))]  # fmt: skip

    def run(name, condition_type, *extra):
        out = work / "runs" / name
        command = [
            sys.executable, "workflow_scripts/generate.py", "--model-key", "planted",
            "--model-id", str(model), "--family", FAMILY, "--condition", name,
            "--condition-type", condition_type, "--prompts", str(prompts), "--seed", str(SEED),
            "--seconds", str(SECONDS), "--steps", "1", "--batch", "3", "--guidance", "1.0",
            "--out-dir", str(out), *extra,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return out

    retrieval = run("retrieval", "retrieval", *bank, "--blend", "slerp", "--alpha", "0.4")
    return {
        "prompt": run("prompt", "prompt"),
        "retrieval": retrieval,
        "null": run("null", "retrieval", *bank, "--alpha", "0"),
        "random": run(
            "random",
            "retrieval_random",
            *bank,
            "--blend",
            "slerp",
            "--match-angles",
            str(retrieval / "items.jsonl"),
        ),  # fmt: skip
        "style_only": run("style_only", "style_only", *bank),
    }


def _audio(run: Path) -> dict[int, np.ndarray]:
    return {
        r["item"]: sf.read(run / r["wav"], dtype="float32")[0]
        for r in read_jsonl(run / "items.jsonl")
    }


def test_generate_records_w_per_item_and_in_run_config(cli_runs):
    rows = list(read_jsonl(cli_runs["retrieval"] / "items.jsonl"))
    assert len(rows) == len(PROMPTS)
    weights = [r["conditioning"]["measures"]["mix_weight"] for r in rows]
    np.testing.assert_allclose(weights, 0.4, atol=1e-4)
    for row in rows:  # it mixed the items its style was formed from
        mixed = [m["row"] for m in row["conditioning"]["mixed_items"]]
        assert mixed == [h["row"] for h in row["retrieved"]] and len(mixed) == 4
    config = json.loads((cli_runs["retrieval"] / "run_config.json").read_text())
    summary = config["conditioning_summary"]["measures.mix_weight"]
    assert summary["n"] == len(PROMPTS) and summary["mean"] == pytest.approx(
        np.mean(weights), abs=1e-6
    )
    assert config["model_note"].startswith("Known-answer stand-in")
    assert config["params"]["sample_rate"] == RATE
    only = [
        r["conditioning"]["measures"]["mix_weight"]
        for r in read_jsonl(cli_runs["style_only"] / "items.jsonl")
    ]
    np.testing.assert_allclose(only, 1.0, atol=1e-6)


def test_the_null_is_the_prompt_run_and_the_control_mixes_its_own_items(cli_runs):
    prompt, null = _audio(cli_runs["prompt"]), _audio(cli_runs["null"])
    for i in prompt:
        np.testing.assert_array_equal(null[i], prompt[i])
    assert all(
        r["conditioning"]["measures"]["mix_weight"] == 0.0
        for r in read_jsonl(cli_runs["null"] / "items.jsonl")
    )
    base = {r["item"]: r for r in read_jsonl(cli_runs["retrieval"] / "items.jsonl")}
    for row in read_jsonl(cli_runs["random"] / "items.jsonl"):
        assert row["style_source"] == "bank_random"
        target = base[row["item"]]["conditioning"]
        assert row["conditioning"]["angles_deg"]["cond"] == pytest.approx(
            target["angles_deg"]["cond"], abs=0.05
        )
        assert [m["row"] for m in row["conditioning"]["mixed_items"]] == [
            h["row"] for h in row["retrieved"]
        ]
        assert row["retrieved"] != base[row["item"]]["retrieved"]
        assert row["conditioning"]["measures"]["mix_weight"] > 0.2


def test_style_guidance_extrapolates_the_weight_by_beta(loaded, tmp_path):
    family, model = loaded
    _segments(tmp_path / "seg")
    bank = BankAudio(_mapping(), tmp_path / "seg")
    request = _request(_retrieval(blend="slerp", alpha=0.3), _styles(len(PROMPTS)),
                       [_hits([i]) for i in range(len(PROMPTS))], bank)  # fmt: skip
    kwargs = family.conditioning(model, request)
    import torch

    loop = dict(beta=2.0, guidance_scale=3.0, num_inference_steps=1, audio_length_in_s=SECONDS,
                generator=[torch.Generator().manual_seed(SEED + i) for i in range(len(PROMPTS))])  # fmt: skip
    guided = family.style_guided_audio(model, request, kwargs, loop)
    doubled = family.generate(model, {**kwargs, "weights": [2 * w for w in kwargs["weights"]]},
                              SamplingSettings(SECONDS, 1, 3.0, 1, [torch.Generator().manual_seed(SEED + i) for i in range(len(PROMPTS))]))  # fmt: skip
    np.testing.assert_array_equal(guided, doubled)
    assert [i["measures"]["mix_weight"] for i in request.infos] == pytest.approx(
        [0.6] * len(PROMPTS), abs=1e-4
    )


def test_demo_config_registers_it_by_import_path_and_checks_its_prompt_file():
    """config/demo.yaml's planted model passes the config checks (family, style space,
    sweeps); a missing models.<m>.prompts file is named with its fix."""
    import copy

    import yaml
    from rcmg.generation.config_checks import problems

    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    cfg = {**base, **demo}
    assert cfg["models"]["planted"]["family"] == FAMILY
    assert cfg["models"]["planted"]["style_space"] == "bank"
    assert problems(cfg, REPO) == []
    broken = copy.deepcopy(cfg)
    broken["models"]["planted"]["prompts"] = "config/prompts/nope.txt"
    assert any(
        p.startswith("models.planted.prompts: prompt file 'config/prompts/nope.txt'")
        for p in problems(broken, REPO)
    )
