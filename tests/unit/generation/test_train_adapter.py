"""Style-adapter training: data building, targets, optimisation, the CLI and its checkpoints.

A small synthetic bank (unit vectors + tags, flat FAISS index) is built here with numpy
and faiss; the models are the session's tiny random-weight pipelines.
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
    TrainConfig,
    TrainingDataError,
    adapter_loss,
    bank_captions,
    caption_from_tags,
    held_out_filter,
    pipeline_targets,
    sha256_file,
    split_indices,
    style_vectors_for,
    target_dim,
    train_adapter,
    training_texts,
)

TAG_SETS = [["rain", "water"], ["solo_piano"], ["drums", "percussion"], ["bells", "water"]]
PROMPTS = [
    "# training prompts",
    "a calm solo piano piece with soft chords",
    "",
    "loud drums and bass guitar",
    "Solo piano!",  # = the bank caption "solo piano" once folded: must be held out
]
N_TEXTS = len(TAG_SETS) - 1  # bank items only: one caption per tag set, minus "solo piano"
CLI_EPOCHS = 5
TINY_HIDDEN = 64


@pytest.fixture(scope="module")
def bank_assets(tmp_path_factory):
    """Bank .npy [18, 512] (unit rows), mapping .jsonl with tags, flat index, prompt file."""
    from rcmg.bank.retrieval import build_index, save_index
    from rcmg.workflow.atomic import write_jsonl

    root = tmp_path_factory.mktemp("adapter_bank")
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3 * len(TAG_SETS), 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        {"segment_id": f"seg{i:03d}", "tags": TAG_SETS[i % len(TAG_SETS)], "source_id": f"src{i}"}
        for i in range(len(vectors))
    ]
    paths = {
        "bank": root / "style_bank.npy",
        "mapping": root / "style_bank.jsonl",
        "index": root / "bank.index",
        "prompts": root / "prompts.txt",
    }
    np.save(paths["bank"], vectors)
    write_jsonl(paths["mapping"], rows)
    save_index(build_index(vectors, kind="flat"), paths["index"])
    paths["prompts"].write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return paths


def _cli_command(tmp_model, clap, assets, pipeline: str, out_dir, **overrides) -> list[str]:
    flags = {
        "--model-key": f"tiny-{pipeline}",
        "--model-id": str(tmp_model),
        "--pipeline": pipeline,
        "--prompts": str(assets["prompts"]),
        "--clap-model": str(clap),
        "--bank": str(assets["bank"]),
        "--bank-mapping": str(assets["mapping"]),
        "--index": str(assets["index"]),
        "--style-topk": "4",
        "--style-temp": "0.07",
        "--epochs": str(CLI_EPOCHS),
        "--batch": "4",
        "--lr": "3e-3",
        "--hidden": str(TINY_HIDDEN),
        "--val-fraction": "0.25",
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
    for name in ("style_topk", "epochs", "batch", "hidden", "seed"):
        values[name] = int(values[name])
    for name in ("style_temp", "lr", "val_fraction", "exclude_cosine"):
        values[name] = float(values[name])
    run_adapter_training(AdapterJobConfig(**values, command="in-process"))
    return out


def _lm_width(model_dir) -> int:
    config = json.loads((model_dir / "language_model" / "config.json").read_text())
    return int(config["n_embd"])


# ---------------------------------------------------------------- pure helpers


def test_captions_join_tags_and_dedupe():
    assert (
        caption_from_tags(["rain", "water_drops", " ", "big   wind"])
        == "rain, water drops, big wind"
    )
    rows = [
        {"tags": ["rain", "water"]},
        {"tags": []},
        {"tags": ["rain", "water"]},
        {},
        {"tags": ["wind"]},
    ]
    assert bank_captions(rows) == ["rain, water", "wind"]


def test_training_texts_are_bank_captions_only():
    rows = [{"tags": ["wind"]}, {"tags": ["rain"]}, {"tags": ["wind"]}]
    assert training_texts(rows) == ["wind", "rain"]


def test_training_texts_refuses_too_few():
    with pytest.raises(TrainingDataError, match="--bank-mapping"):
        training_texts([{"tags": ["only one"]}, {"tags": []}])


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


@pytest.mark.parametrize("n", [2, 5, 37])
def test_split_is_seeded_disjoint_and_non_empty(n):
    train, val = split_indices(n, 0.2, seed=3)
    again_train, again_val = split_indices(n, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert len(train) >= 1 and len(val) >= 1
    assert sorted([*train, *val]) == list(range(n))


def test_loss_is_zero_only_at_the_target():
    import torch

    target = torch.randn(6, 32)
    assert float(adapter_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    # Same direction, wrong scale: only the MSE term sees it.
    scaled = adapter_loss(2 * target, target, cosine_weight=1.0, mse_weight=0.0)
    assert float(scaled) == pytest.approx(0.0, abs=1e-6)
    assert float(adapter_loss(2 * target, target)) > 0.5


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="--val-fraction"):
        TrainConfig(val_fraction=0.0).check()
    with pytest.raises(ValueError, match="--epochs"):
        TrainConfig(epochs=0).check()


# ---------------------------------------------------------------- training loop


def _fixed_tiny_set(n: int = 32, out_dim: int = 16):
    rng = np.random.default_rng(11)
    inputs = rng.normal(size=(n, 512)).astype(np.float32)
    inputs /= np.linalg.norm(inputs, axis=1, keepdims=True)
    mixing = rng.normal(size=(512, out_dim)).astype(np.float32)
    return inputs, np.tanh(inputs @ mixing).astype(np.float32)


def test_training_loss_decreases_and_best_epoch_is_kept():
    inputs, targets = _fixed_tiny_set()
    cfg = TrainConfig(epochs=6, batch=8, lr=3e-3, hidden=32, val_fraction=0.25, seed=1)
    result = train_adapter(inputs, targets, cfg)
    train_losses = [row["train_loss"] for row in result.history]
    val_losses = [row["val_loss"] for row in result.history]
    assert train_losses[-1] < 0.7 * train_losses[0]
    assert result.best_epoch == 1 + int(np.argmin(val_losses))
    assert result.best_val_loss == pytest.approx(min(val_losses))
    assert (result.n_train, result.n_val) == (24, 8)
    # The returned weights are the best epoch's: re-evaluating them gives its val loss.
    import torch

    _train_rows, val_rows = split_indices(len(inputs), cfg.val_fraction, cfg.seed)
    with torch.no_grad():
        pred = result.module(torch.from_numpy(inputs[val_rows]))
    reloss = float(adapter_loss(pred, torch.from_numpy(targets[val_rows])))
    assert reloss == pytest.approx(result.best_val_loss, rel=1e-5)


def test_training_is_reproducible_with_the_seed():
    inputs, targets = _fixed_tiny_set(n=12)
    cfg = TrainConfig(epochs=2, batch=4, hidden=16, seed=5)
    first = train_adapter(inputs, targets, cfg)
    second = train_adapter(inputs, targets, cfg)
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]


# ---------------------------------------------------------------- inputs and targets


def test_style_vectors_follow_the_generation_recipe(bank_assets):
    from rcmg.bank.blend import style_vector
    from rcmg.bank.retrieval import StyleRetriever

    retriever = StyleRetriever(bank_assets["bank"], bank_assets["mapping"], bank_assets["index"])
    bank = np.load(bank_assets["bank"])
    queries = bank[[0, 5]] + 0.05 * np.random.default_rng(0).normal(size=(2, 512)).astype(
        np.float32
    )
    got = style_vectors_for(retriever, queries, topk=3, temperature=0.07)
    assert got.shape == (2, 512)
    for query, row in zip(queries, got, strict=True):
        scores = bank @ (query / np.linalg.norm(query))
        top = np.argsort(-scores)[:3]
        expected = style_vector(bank[top], scores[top], 0.07)
        np.testing.assert_allclose(row, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("pipeline", "kind"), [("audioldm1", "audioldm"), ("audioldm2", "audioldm2")]
)
def test_targets_equal_the_pipelines_own_conditioning(tiny_model, pipeline, kind):
    import torch
    from rcmg.models.pipelines import load_pipeline

    texts = ["a calm piano", "loud drums and a bass guitar"]
    pipe = load_pipeline(str(tiny_model(kind)), pipeline, device="cpu").pipe
    targets = pipeline_targets(pipe, pipeline, texts, batch=8)
    with torch.no_grad():
        if pipeline == "audioldm1":
            expected = pipe._encode_prompt(texts, "cpu", 1, False).numpy()
            assert target_dim(pipe, pipeline) == 512
        else:
            # one text at a time: batched T5 padding would change GPT-2's generation
            expected = np.concatenate(
                [pipe.encode_prompt([t], "cpu", 1, False)[2].mean(dim=1).numpy() for t in texts]
            )
            assert target_dim(pipe, pipeline) == _lm_width(tiny_model(kind))
    assert targets.shape == expected.shape
    np.testing.assert_allclose(targets, expected, atol=1e-5)


# ---------------------------------------------------------------- CLI


def test_cli_writes_complete_outputs(trained, tiny_model, bank_assets):
    for pipeline, out_dir in trained.items():
        assert sorted(p.name for p in out_dir.iterdir()) == [
            "adapter_config.json",
            "loss.png",
            "metrics.jsonl",
            "style_adapter.safetensors",
        ]
        assert not list(out_dir.parent.glob(f".{out_dir.name}.*")), "temporary dir left behind"
        config = json.loads((out_dir / "adapter_config.json").read_text())
        assert config["pipeline"] == pipeline
        assert config["in_dim"] == 512
        assert config["data"]["sha256"]["bank"] == sha256_file(bank_assets["bank"])
        assert config["data"]["sha256"]["prompts"] == sha256_file(bank_assets["prompts"])
        assert config["data"]["n_texts"] == N_TEXTS
        assert config["data"]["n_held_out_prompts"] == 3  # the prompt file: never trained on
        dropped = config["data"]["dropped_near_duplicates"]
        assert [(d["text"], d["prompt"]) for d in dropped] == [("solo piano", "Solo piano!")]
        assert "bank item captions only" in config["data"]["training_texts"]
        assert config["data"]["n_train"] + config["data"]["n_val"] == N_TEXTS
        assert config["training"]["hidden"] == TINY_HIDDEN
        assert config["random_weight_model"] is True
        if pipeline == "audioldm2":  # the subprocess run records its exact command
            assert f"--out-dir {out_dir}" in config["command"]
        metrics = [
            json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()
        ]
        assert [m["epoch"] for m in metrics] == list(range(1, CLI_EPOCHS + 1))
        assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
        assert config["best_epoch"] == 1 + int(np.argmin([m["val_loss"] for m in metrics]))
        assert (out_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_reload_with_model_shapes(trained, tiny_model):
    import torch
    from rcmg.generation.adapter import load_adapter

    width = _lm_width(tiny_model("audioldm2"))
    expectations = {"audioldm1": 512, "audioldm2": width}
    for pipeline, out_dim in expectations.items():
        path = trained[pipeline] / "style_adapter.safetensors"
        module = load_adapter(path, expected_in=512, expected_out=out_dim)
        config = json.loads((trained[pipeline] / "adapter_config.json").read_text())
        assert config["out_dim"] == out_dim
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
    run_config = (out_dir / "run_config.json").read_text()
    assert str(checkpoint) in run_config


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
