"""Published-architecture configs: they parse, build on the meta device, and match the
published parameter counts. No full random-weight build here (too slow for CI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rcmg.standins import real_arch

GENERATION_KINDS = ("audioldm", "audioldm2", "audioldm2-music")


@pytest.fixture(scope="module")
def meta_counts():
    """Per-kind parameter counts on the meta device, computed once per module."""
    cache: dict[str, dict[str, int]] = {}

    def get(kind: str) -> dict[str, int]:
        if kind not in cache:
            cache[kind] = real_arch.meta_parameter_counts(kind)
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", real_arch.KINDS)
def test_every_config_file_parses_and_sources_are_listed(kind, repo_root):
    folder = real_arch.config_dir(kind)
    files = sorted(folder.glob("*.json"))
    assert files, f"no configs in {folder}"
    sources = (repo_root / "config" / "bench" / "SOURCES.md").read_text(encoding="utf-8")
    for path in files:
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        assert f"{folder.name}/{path.name}" in sources, f"{path.name} has no source line"


@pytest.mark.parametrize(
    ("kind", "component", "published_m", "tolerance"),
    [
        ("audioldm", "unet", 181.0, 0.05),
        ("audioldm2", "unet", 350.0, 0.03),
        ("audioldm2-music", "unet", 350.0, 0.03),
        ("audioldm2", "text_encoder_2", 341.0, 0.01),
        ("audioldm2", "language_model", 124.0, 0.01),
        ("audioldm2", "total", 1100.0, 0.05),
        ("audioldm2-music", "total", 1100.0, 0.05),
    ],
)
def test_meta_parameter_counts_match_published(
    kind, component, published_m, tolerance, meta_counts
):
    counts = meta_counts(kind)
    built_m = counts[component] / 1e6
    assert built_m == pytest.approx(published_m, rel=tolerance)


def test_clap_unfused_is_htsat_tiny_with_512_projection():
    import torch

    with torch.device("meta"):
        model = real_arch.build_component("clap", "config")
    assert model.config.projection_dim == 512
    assert list(model.config.audio_config.depths) == [2, 2, 6, 2]
    assert not model.config.audio_config.enable_fusion
    assert real_arch.count_parameters(model) / 1e6 == pytest.approx(153.5, rel=0.01)


def test_audioldm2_component_widths_agree_with_each_other():
    import torch

    with torch.device("meta"):
        unet = real_arch.build_component("audioldm2", "unet")
        t5 = real_arch.build_component("audioldm2", "text_encoder_2")
        gpt2 = real_arch.build_component("audioldm2", "language_model")
        proj = real_arch.build_component("audioldm2", "projection_model")
    assert unet.config.cross_attention_dim[1] == [None, gpt2.config.n_embd, t5.config.d_model]
    assert proj.config.text_encoder_1_dim == t5.config.d_model
    assert proj.config.langauge_model_dim == gpt2.config.n_embd


@pytest.mark.parametrize("kind", GENERATION_KINDS)
def test_real_time_frequency_geometry(kind):
    vocoder = real_arch.load_component_config(kind, "vocoder")
    vae = real_arch.load_component_config(kind, "vae")
    upsample = 1
    for rate in vocoder["upsample_rates"]:
        upsample *= rate
    assert upsample == 160 and vocoder["sampling_rate"] == 16000
    assert vocoder["model_in_dim"] == 64 and vae["latent_channels"] == 8


def test_compare_to_published_reports_relative_difference():
    rows = real_arch.compare_to_published("audioldm2", {"unet": 385_000_000})
    assert rows == [
        {
            "component": "unet",
            "built_M": 385.0,
            "published_M": 350.0,
            "rel_diff": 0.1,
            "source": real_arch.PUBLISHED_PARAMS_M[("audioldm2", "unet")][1],
        }
    ]


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="audioldm2-music"):
        real_arch.config_dir("audioldm3")


def test_cli_rejects_unknown_kind_without_writing(tmp_path, repo_root):
    out = tmp_path / "model"
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "workflow_scripts" / "real_arch_model.py"),
            "--kind",
            "nope",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert not out.exists()


def test_cli_reuses_a_finished_build_by_its_marker(tmp_path, repo_root):
    out = tmp_path / "clap"
    out.mkdir()
    counts = {"config": 153_492_890, "total": 153_492_890}
    (out / real_arch.MARKER).write_text(
        json.dumps(
            {
                "kind": "clap",
                "seed": 0,
                "config_sha256": real_arch.config_digest("clap"),
                "parameters": counts,
            }
        ),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "workflow_scripts" / "real_arch_model.py"),
            "--kind",
            "clap",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "153.49" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [real_arch.MARKER]


def test_an_edited_published_config_rebuilds_and_records_the_new_digest(tmp_path, monkeypatch):
    import shutil

    configs = tmp_path / "config_bench"
    shutil.copytree(real_arch.CONFIG_ROOT / "clap-htsat-unfused", configs / "clap-htsat-unfused")
    monkeypatch.setattr(real_arch, "CONFIG_ROOT", configs)
    monkeypatch.setattr(real_arch, "REPO_ROOT", tmp_path)
    builds = []

    def fake_build(kind, tmp, seed):
        builds.append((kind, seed))
        (tmp / "weights.bin").write_bytes(b"w")
        return {"total": 1}

    monkeypatch.setattr(real_arch, "_build_into", fake_build)
    out = tmp_path / "models" / "clap"
    real_arch.build_real_arch_model("clap", out)
    first = json.loads((out / real_arch.MARKER).read_text(encoding="utf-8"))
    real_arch.build_real_arch_model("clap", out)
    assert builds == [("clap", 0)]  # unchanged configs: reused

    config = configs / "clap-htsat-unfused" / "config.json"
    edited = json.loads(config.read_text(encoding="utf-8"))
    edited["projection_dim"] = 1024
    config.write_text(json.dumps(edited), encoding="utf-8")
    real_arch.build_real_arch_model("clap", out)
    second = json.loads((out / real_arch.MARKER).read_text(encoding="utf-8"))
    assert builds == [("clap", 0), ("clap", 0)]
    assert second["config_sha256"] == real_arch.config_digest("clap")
    assert second["config_sha256"] != first["config_sha256"]


@pytest.mark.parametrize("kind", ["audioldm2", "clap"])
def test_trained_tokenizers_stay_below_the_published_vocab_size(kind, tmp_path):
    from transformers import AutoTokenizer

    real_arch.train_tokenizers(kind, tmp_path)
    spec = real_arch.load_component_config(kind, "tokenizers")
    for name, entry in spec.items():
        tokenizer = AutoTokenizer.from_pretrained(tmp_path if kind == "clap" else tmp_path / name)
        ids = tokenizer("a calm piano melody with soft strings")["input_ids"]
        assert tokenizer.model_max_length == entry["model_max_length"]
        assert len(tokenizer) <= real_arch.TRAINED_VOCAB_CAP[entry["class"]]
        assert max(ids) < min(len(tokenizer), entry["vocab_size"])
        assert tokenizer.unk_token_id not in ids
        assert (
            tokenizer.decode(ids, skip_special_tokens=True)
            == "a calm piano melody with soft strings"
        )


def test_musicgen_small_structure_is_the_converted_checkpoints():
    """config/bench/musicgen-small: the decoder of convert_musicgen_transformers.py's
    "small", EnCodec 32 kHz (4 codebooks at 50 frames/s) and the t5-base encoder."""
    import torch

    with torch.device("meta"):
        decoder = real_arch.build_component("musicgen", "decoder")
        codec = real_arch.build_component("musicgen", "audio_encoder")
        t5 = real_arch.build_component("musicgen", "text_encoder")
    assert (decoder.config.hidden_size, decoder.config.num_hidden_layers) == (1024, 24)
    assert decoder.config.ffn_dim == 4096 and decoder.num_codebooks == 4
    assert (codec.config.frame_rate, codec.config.num_quantizers) == (50, 4)
    assert codec.config.sampling_rate == 32000 and codec.config.codebook_size == 2048
    assert (t5.config.d_model, t5.config.num_layers) == (768, 12)
    assert real_arch.count_parameters(t5) / 1e6 == pytest.approx(109.6, rel=0.005)  # t5-base enc.
    assert real_arch.components_for("musicgen") == ["text_encoder", "audio_encoder", "decoder"]
