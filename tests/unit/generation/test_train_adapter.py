"""Style-adapter training through the frozen model: split, latents, baselines, the CLI.

The bank (tests/unit/adapter_bank.py) has FSD50K-style dev/eval rows with uploaders and
segment audio; the models are the session's tiny random-weight pipelines.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rcmg.generation.adapter_training import (
    ARMS,
    BankItem,
    TrainConfig,
    TrainingDataError,
    bank_items,
    caption_from_tags,
    check_split,
    drop_prompt_duplicates,
    fixed_draws,
    fold_text,
    held_out_filter,
    paired_comparison,
    split_items,
)

from tests.unit.adapter_bank import (
    HELDOUT_UPLOADERS,
    ITEMS,
    PROMPTS,
    TRAINABLE_UPLOADERS,
    write_trainable_bank,
)

CLI_EPOCHS = 3
TINY_HIDDEN = 64


@pytest.fixture(scope="module")
def bank_assets(tmp_path_factory):
    return write_trainable_bank(tmp_path_factory.mktemp("adapter_bank"))


def _cli_command(tmp_model, clap, assets, pipeline: str, out_dir, **overrides) -> list[str]:
    flags = {
        "--model-key": f"tiny-{pipeline}",
        "--model-id": str(tmp_model),
        "--family": pipeline,
        "--prompts": str(assets["prompts"]),
        "--clap-model": str(clap),
        "--bank": str(assets["bank"]),
        "--bank-mapping": str(assets["mapping"]),
        "--index": str(assets["index"]),
        "--segments-root": str(assets["segments"]),
        "--style-topk": "4",
        "--style-temp": "0.07",
        "--epochs": str(CLI_EPOCHS),
        "--batch": "4",
        "--lr": "1e-2",
        "--hidden": str(TINY_HIDDEN),
        "--val-fraction": "0.25",
        "--seconds": "0.32",
        "--eval-draws": "4",
        "--max-items": "4",
        "--max-eval-items": "4",
        "--seed": "0",
        "--exclude-cosine": "1.0",  # random-weight CLAP: every text pair is at cosine ~0.997
        "--device": "cpu",
        "--out-dir": str(out_dir),
        **overrides,
    }
    command = [sys.executable, "workflow_scripts/train_adapter.py"]
    for flag, value in flags.items():
        command += [flag, value]
    return command


def _run(command, repo_root) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=300)


def _load_cli(repo_root: Path, name: str):
    """Import ``workflow_scripts/NAME.py`` as a module (to call its ``main(argv)`` in-process)."""
    spec = importlib.util.spec_from_file_location(
        f"cli_{name}", repo_root / "workflow_scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tiny_model, bank_assets, repo_root, tmp_path_factory):
    """``{pipeline: out_dir}``: audioldm2 through a subprocess (the user's path), audioldm1
    through the library job the CLI calls, in-process (saves a second interpreter start)."""
    from rcmg.generation.adapter_job import AdapterJobConfig, run_adapter_training

    root = tmp_path_factory.mktemp("adapters")
    clap = tiny_model("clap")
    out = {"audioldm1": root / "audioldm1", "audioldm2": root / "audioldm2"}
    command = _cli_command(
        tiny_model("audioldm2"), clap, bank_assets, "audioldm2", out["audioldm2"]
    )
    proc = _run(command, repo_root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    argv = _cli_command(tiny_model("audioldm"), clap, bank_assets, "audioldm1", out["audioldm1"])
    values = {
        flag.removeprefix("--").replace("-", "_"): value
        for flag, value in zip(argv[2::2], argv[3::2], strict=True)
    }
    for name in (
        "style_topk",
        "epochs",
        "batch",
        "hidden",
        "seed",
        "eval_draws",
        "max_items",
        "max_eval_items",
    ):
        values[name] = int(values[name])
    for name in ("style_temp", "lr", "val_fraction", "exclude_cosine", "seconds"):
        values[name] = float(values[name])
    run_adapter_training(AdapterJobConfig(**values, command="in-process"))
    return out


def _lm_width(model_dir) -> int:
    config = json.loads((model_dir / "language_model" / "config.json").read_text())
    return int(config["n_embd"])


def _config(out_dir: Path) -> dict:
    return json.loads((out_dir / "adapter_config.json").read_text())


# ---------------------------------------------------------------- split (pure)


def _items() -> list[BankItem]:
    return [
        BankItem(i, f"s{i}", split, uploader, caption_from_tags(tags), "shard0", i, f"src{i}")
        for i, (split, uploader, tags) in enumerate(ITEMS)
    ]


def test_bank_captions_dedupe_tag_sets_for_align_check():
    from rcmg.generation.adapter_training import bank_captions

    rows = [{"tags": ["rain", "water"]}, {"tags": []}, {"tags": ["rain", "water"]}, {}]
    assert bank_captions([*rows, {"tags": ["wind"]}]) == ["rain, water", "wind"]


def test_captions_join_tags():
    assert (
        caption_from_tags(["rain", "water_drops", " ", "big   wind"])
        == "rain, water drops, big wind"
    )
    assert fold_text("Solo_piano, SOFT!") == "solo piano soft"


def test_split_follows_fsd50k_dev_eval_and_keeps_uploaders_on_one_side():
    split = split_items(_items(), val_fraction=0.25, seed=0)
    dev = split.train + split.val
    assert {i.split for i in dev} <= {"train", "val"}
    assert {i.split for i in split.heldout} == {"eval"}
    assert {i.group for i in dev}.isdisjoint({i.group for i in split.heldout})
    assert {i.uploader for i in dev} == TRAINABLE_UPLOADERS | {"u5"}
    assert {i.uploader for i in split.heldout} == HELDOUT_UPLOADERS
    reasons = {e["segment_id"]: e["reason"] for e in split.excluded}
    both_dev = next(i for i in _items() if i.uploader == "both" and i.split == "train")
    assert "uploader also has eval items" in reasons[both_dev.segment_id]
    no_split = next(i for i in _items() if i.split == "")
    assert "neither FSD50K dev nor eval" in reasons[no_split.segment_id]
    # validation = whole uploaders of the dev side, never one uploader on both parts
    assert split.val and {i.group for i in split.val}.isdisjoint({i.group for i in split.train})
    again = split_items(_items(), val_fraction=0.25, seed=0)
    assert [i.segment_id for i in again.val] == [i.segment_id for i in split.val]
    check_split(split)


def test_split_caps_each_part_and_an_item_without_uploader_is_its_own_group():
    split = split_items(_items(), val_fraction=0.25, seed=3, max_items=2, max_eval_items=2)
    assert len(split.train) <= 2 and len(split.val) <= 2 and len(split.heldout) == 2
    lone = [i for i in _items() if i.uploader == ""]
    assert lone[0].group == f"no-uploader:{lone[0].source_id}"


def test_split_refuses_without_held_out_or_training_items():
    only_dev = [i for i in _items() if i.split in ("train", "val")]
    with pytest.raises(TrainingDataError, match="no held-out bank item"):
        check_split(split_items(only_dev, 0.25, 0))
    only_eval = [i for i in _items() if i.split == "eval"]
    with pytest.raises(TrainingDataError, match="no bank item left to train on"):
        check_split(split_items(only_eval, 0.25, 0))


def test_held_out_prompts_drop_exact_and_near_duplicate_captions():
    """Evaluation prompts never reach training: equal text (folded) or CLAP cosine >= threshold."""
    texts = ["Solo_piano, soft!", "rain, water", "bells", "drums"]
    prompts = ["solo piano soft", "a storm"]
    e = np.eye(8)
    storm = e[1] * 0.96 + e[5] * np.sqrt(1 - 0.96**2)  # cosine 0.96 to "rain, water"
    keep, dropped = held_out_filter(texts, e[:4], prompts, np.stack([e[3] + e[6], storm]), 0.95)
    assert keep == [2, 3]
    assert [(d["text"], d["prompt"]) for d in dropped] == [
        ("Solo_piano, soft!", "solo piano soft"),
        ("rain, water", "a storm"),
    ]
    assert "0.9600" in dropped[1]["reason"]
    keep, _ = held_out_filter(texts, e[:4], prompts, np.stack([e[3] + e[6], storm]), 0.97)
    assert keep == [1, 2, 3]


def test_prompt_duplicates_leave_the_training_items():
    split = split_items(_items(), val_fraction=0.25, seed=0)
    captions = sorted({i.caption for i in split.train + split.val})
    rng = np.random.default_rng(0)
    emb = {c: rng.normal(size=16) for c in captions}
    prompt_emb = rng.normal(size=(2, 16))
    prompt_emb[1] = emb["rain"]  # "a storm" at cosine 1 to the caption "rain"
    dropped = drop_prompt_duplicates(split, emb, ["Solo piano!", "a storm"], prompt_emb, 0.95)
    assert sorted(d["text"] for d in dropped) == ["rain", "solo piano"]
    left = {fold_text(i.caption) for i in split.train + split.val}
    assert "solo piano" not in left and "rain" not in left


# ---------------------------------------------------------------- evaluation draws and stats


def test_fixed_draws_are_seeded_by_item_and_stratified():
    import torch

    items = _items()[:2]
    latents = torch.zeros(2, 8, 4, 4)
    a = fixed_draws(items, latents, 4, 1000, seed=0)
    b = fixed_draws(list(reversed(items)), latents.flip(0), 4, 1000, seed=0)
    assert torch.equal(a[0][0], b[1][0]) and torch.equal(a[0][1], b[1][1])  # by id, not position
    for t, noise in a:
        assert noise.shape == (4, 8, 4, 4)
        assert [int(x) // 250 for x in t] == [0, 1, 2, 3]  # one timestep per quarter
    assert not torch.equal(a[0][1], a[1][1])


def test_paired_comparison_arithmetic():
    from rcmg.generation.heldout_verdict import clustered_mean_t_interval

    per_item = {
        "adapter": [1.0, 2.0, 3.0],
        "labels_text": [2.0, 2.0, 5.0],
        "untrained": [1.5, 1.0, 3.5],
        "shuffled": [1.5, 2.0, 3.2],
    }
    shuffle = {"available": True, "partner": [1, 2, 0], "reason": ""}
    out = paired_comparison(per_item, ["a", "b", "c"], shuffle)
    assert out["n_items"] == 3
    assert out["mean"] == pytest.approx(
        {"adapter": 2.0, "labels_text": 3.0, "untrained": 2.0, "shuffled": 6.7 / 3}
    )
    assert out["adapter_minus_labels_text"]["mean"] == pytest.approx(-1.0)
    assert out["adapter_minus_labels_text"]["items_lower"] == 2
    assert out["adapter_minus_untrained"]["sd"] == pytest.approx(np.std([-0.5, 1.0, -0.5], ddof=1))
    assert out["adapter_minus_shuffled"]["items_lower"] == 2
    assert out["shuffle"] == shuffle
    expected = clustered_mean_t_interval([-0.5, 0.0, -0.2], ["a", "b", "c"])
    assert out["uses_given_item"]["diff"] == pytest.approx(expected)
    assert out["uses_given_item"]["verdict"] == "no"  # the interval holds 0


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="--val-fraction"):
        TrainConfig(val_fraction=0.0).check()
    with pytest.raises(ValueError, match="--epochs"):
        TrainConfig(epochs=0).check()
    with pytest.raises(ValueError, match="--eval-draws"):
        TrainConfig(eval_draws=0).check()


# ---------------------------------------------------------------- latents and baselines


@pytest.mark.parametrize(
    ("pipeline", "kind"), [("audioldm1", "audioldm"), ("audioldm2", "audioldm2")]
)
def test_latents_and_label_baseline_are_the_pipelines_own(tiny_model, bank_assets, pipeline, kind):
    """Latent = VAE mean of AudioLDM's log-mel * scaling; the labels_text arm = the pipeline's
    own text conditioning; the untrained arm = the audio embedding on the untrained path."""
    import torch
    from rcmg.generation.adapter_training import item_context, load_segment_audio
    from rcmg.generation.families import get_family
    from rcmg.models.mel import log_mel, n_frames, normalize_wav

    family = get_family(pipeline)
    pipe = family.load(str(tiny_model(kind)), "cpu", "auto", "default").pipe
    rows = [json.loads(line) for line in bank_assets["mapping"].read_text().splitlines()]
    items = bank_items(rows)[:2]
    waves = load_segment_audio(items, bank_assets["segments"], 0.64)
    frames = n_frames(0.64)
    latents = family.adapter_latents(pipe, waves, 0.64)
    with torch.no_grad():
        mel = log_mel(np.stack([normalize_wav(waves[1])]), frames)[:, None]
        expected = pipe.vae.encode(mel).latent_dist.mean * pipe.vae.config.scaling_factor
    assert latents.shape == (2, 8, frames // 4, 16)
    torch.testing.assert_close(latents[1:], expected, atol=1e-5, rtol=1e-5)
    bank = torch.from_numpy(np.load(bank_assets["bank"])[[i.row for i in items]])
    ctx = item_context(pipe, family, items, latents, bank)
    with torch.no_grad():
        if pipeline == "audioldm1":
            own = pipe._encode_prompt([items[0].caption], "cpu", 1, False)
            torch.testing.assert_close(ctx.labels[:1], own, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ctx.untrained, bank, atol=1e-6, rtol=1e-6)
        else:
            own = pipe.encode_prompt([items[0].caption], "cpu", 1, False)
            torch.testing.assert_close(ctx.labels[0], own[2], atol=1e-5, rtol=1e-5)  # LM tokens
            torch.testing.assert_close(ctx.extra["t5"][0], own[0], atol=1e-5, rtol=1e-5)
            assert ctx.untrained[0].shape == own[2].shape
            assert not torch.allclose(ctx.untrained[0], own[2])


# ---------------------------------------------------------------- CLI


def test_cli_writes_complete_outputs_and_records_the_split(trained, bank_assets):
    from rcmg.generation.adapter_training import sha256_file

    for pipeline, out_dir in trained.items():
        assert sorted(p.name for p in out_dir.iterdir()) == [
            "adapter_config.json",
            "loss.png",
            "metrics.jsonl",
            "style_adapter.safetensors",
        ]
        assert not list(out_dir.parent.glob(f".{out_dir.name}.*")), "temporary dir left behind"
        config = _config(out_dir)
        assert config["family"] == pipeline and config["in_dim"] == 512
        assert config["data"]["sha256"]["bank"] == sha256_file(bank_assets["bank"])
        assert config["data"]["n_held_out_prompts"] == 3
        assert config["mel_front_end"]["hop_length"] == 160
        data = config["data"]
        dev = data["train_items"] + data["val_items"]
        assert {i["split"] for i in dev} <= {"train", "val"}
        assert {i["split"] for i in data["heldout_items"]} == {"eval"}
        assert {i["uploader"] for i in dev} <= TRAINABLE_UPLOADERS  # --max-items 4 per part
        assert {i["uploader"] for i in data["heldout_items"]} <= HELDOUT_UPLOADERS
        assert 1 <= len(data["train_items"]) <= 4 and len(data["heldout_items"]) == 4
        assert [(d["text"], d["prompt"]) for d in data["dropped_near_duplicates"]] == [
            ("solo piano", "Solo piano!")
        ]
        assert config["training"]["hidden"] == TINY_HIDDEN
        assert config["random_weight_model"] is True
        if pipeline == "audioldm2":  # the subprocess run records its exact command
            assert f"--out-dir {out_dir}" in config["command"]
        rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
        epochs = [r for r in rows if r["kind"] == "epoch"]
        assert [r["epoch"] for r in epochs] == list(range(CLI_EPOCHS + 1))
        assert config["best_epoch"] == int(np.argmin([r["val_loss"] for r in epochs]))
        assert rows[-1]["kind"] == "heldout_comparison" and rows[-1] == config["heldout"]
        assert (out_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_prompts_are_never_training_texts(trained, tiny_model):
    from rcmg.generation.prompts import read_prompt_file

    for out_dir in trained.values():
        config = _config(out_dir)
        prompts = [
            i.prompt for i in read_prompt_file(Path(config["data"]["paths"]["prompts"])).items
        ]
        folded = {fold_text(p) for p in prompts}
        trained_on = config["data"]["train_items"] + config["data"]["val_items"]
        assert trained_on and all(fold_text(i["caption"]) not in folded for i in trained_on)
        assert "solo piano" in {fold_text(p) for p in PROMPTS}  # the bank does hold one


def test_adapter_lowers_heldout_denoising_loss_below_both_baselines(trained):
    """On held-out (eval-split, other-uploader) items, paired fixed draws: adapter < labels
    text conditioning and < the untrained path (identity / native). The shuffled arm (the
    adapter on another uploader's held-out item) is measured and its verdict recorded; on
    random-weight models its direction is not asserted."""
    for pipeline, out_dir in trained.items():
        config = _config(out_dir)
        heldout = config["heldout"]
        mean = heldout["mean"]
        assert set(mean) == set(ARMS)
        assert heldout["n_items"] == 4  # --max-items 4 of the 5 held-out items
        assert mean["adapter"] < mean["labels_text"], (pipeline, mean)
        assert mean["adapter"] < mean["untrained"], (pipeline, mean)
        assert heldout["adapter_minus_labels_text"]["mean"] < 0
        assert heldout["adapter_minus_untrained"]["mean"] < 0
        shuffle = heldout["shuffle"]
        items = config["data"]["heldout_items"]
        assert shuffle["available"] and shuffle["seed"] == 0
        by_id = {i["segment_id"]: i for i in items}
        for item, other in zip(items, shuffle["partner_segment_ids"], strict=True):
            assert other != item["segment_id"]
            assert not item["uploader"] or by_id[other]["uploader"] != item["uploader"]
        assert len(heldout["per_item"]["shuffled"]) == 4
        assert heldout["per_item"]["shuffled"] != heldout["per_item"]["adapter"]
        verdict = heldout["uses_given_item"]
        assert verdict["verdict"] in ("yes", "no")
        assert verdict["text"].startswith(f"uses the item it is given: {verdict['verdict']}")


def test_checkpoints_reload_with_model_shapes(trained, tiny_model):
    import torch
    from rcmg.generation.adapter import load_adapter

    width = _lm_width(tiny_model("audioldm2"))
    for pipeline, out_dim in {"audioldm1": 512, "audioldm2": width}.items():
        module = load_adapter(
            trained[pipeline] / "style_adapter.safetensors", expected_in=512, expected_out=out_dim
        )
        assert _config(trained[pipeline])["out_dim"] == out_dim
        assert module(torch.zeros(2, 512)).shape == (2, out_dim)


def test_mismatched_and_pickled_checkpoints_are_refused(trained, tmp_path):
    import torch
    from rcmg.generation.adapter import AdapterFileError, load_adapter

    aldm2_file = trained["audioldm2"] / "style_adapter.safetensors"
    with pytest.raises(AdapterFileError, match="train an adapter for this model") as err:
        load_adapter(aldm2_file, expected_in=512, expected_out=512)  # as audioldm1 would ask
    assert str(aldm2_file) in str(err.value)
    pickled = tmp_path / "evil.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(AdapterFileError, match="pickle"):
        load_adapter(pickled, expected_in=512, expected_out=512)
    torch_saved = tmp_path / "torch_save.safetensors"
    torch.save({"w": torch.zeros(2)}, torch_saved)
    with pytest.raises(AdapterFileError, match="torch.save"):
        load_adapter(torch_saved, expected_in=512, expected_out=512)


def test_cli_missing_bank_names_the_file(tiny_model, bank_assets, repo_root, tmp_path):
    missing = tmp_path / "nope.npy"
    command = _cli_command(
        tiny_model("audioldm"),
        tiny_model("clap"),
        bank_assets,
        "audioldm1",
        tmp_path / "out",
        **{"--bank": str(missing)},
    )
    proc = _run(command, repo_root)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- generation with the checkpoint


def _generate_argv(model_dir, pipeline: str, checkpoint, assets, prompts, out_dir) -> list[str]:
    return [
        "--model-key", f"tiny-{pipeline}", "--model-id", str(model_dir), "--pipeline", pipeline,
        "--condition", "retrieval_external", "--condition-type", "retrieval",
        "--prompts", str(prompts), "--seed", "0", "--steps", "2", "--guidance", "3.0",
        "--seconds", "1.0", "--batch", "1", "--device", "cpu",
        "--clap-model", str(assets["clap"]), "--bank", str(assets["bank"]),
        "--bank-mapping", str(assets["mapping"]), "--index", str(assets["index"]),
        "--adapter", "external", "--adapter-checkpoint", str(checkpoint), "--out-dir", str(out_dir),
    ]  # fmt: skip


@pytest.fixture()
def generate_inputs(tiny_model, bank_assets, tmp_path):
    prompts = tmp_path / "gen_prompts.txt"
    prompts.write_text("a calm piano with rain\n", encoding="utf-8")
    return {**bank_assets, "clap": tiny_model("clap")}, prompts


def test_generate_cli_uses_the_trained_adapter(
    trained, tiny_model, generate_inputs, repo_root, tmp_path
):
    assets, prompts = generate_inputs
    checkpoint = trained["audioldm2"] / "style_adapter.safetensors"
    out_dir = tmp_path / "run"
    argv = _generate_argv(
        tiny_model("audioldm2"), "audioldm2", checkpoint, assets, prompts, out_dir
    )
    proc = _run([sys.executable, "workflow_scripts/generate.py", *argv], repo_root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out_dir / "wav" / "0000.wav").is_file()
    assert str(checkpoint) in (out_dir / "run_config.json").read_text()


def test_generate_refuses_an_audioldm2_adapter_on_audioldm1(
    trained, tiny_model, generate_inputs, repo_root, tmp_path, capsys
):
    assets, prompts = generate_inputs
    checkpoint = trained["audioldm2"] / "style_adapter.safetensors"
    out_dir = tmp_path / "run"
    argv = _generate_argv(tiny_model("audioldm"), "audioldm1", checkpoint, assets, prompts, out_dir)
    assert _load_cli(repo_root, "generate").main(argv) == 2
    message = capsys.readouterr().err  # the CLI frame logs its one-line error to stderr
    assert str(checkpoint) in message and "train an adapter for this model" in message
    assert not out_dir.exists()
