"""Synthetic run directories and segment shards that follow the run-directory contract.

Used by the evaluate/compare/browser tests: results/runs/{model}/{condition}/seed{seed}/
with wav/, items.jsonl, run_config.json, hardware.json and (optionally) style.npy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
DEFAULT_PROMPTS = (
    "a calm solo piano melody",
    "an energetic string quartet",
    "<script>alert(1)</script> jazz trio",
    "ambient synth pads with rain",
)

FAKE_BANK_SEGMENTS = [f"fsd50k/FSD50K.dev_audio/{1000 + i}@{10.0 * (i % 2):.3f}" for i in range(12)]


def _clip(kind: str, item: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "sine":
        return (0.3 * np.sin(2 * np.pi * (220.0 + 110.0 * item) * t)).astype(np.float32)
    if kind == "noise":
        return (0.1 * rng.standard_normal(t.size)).astype(np.float32)
    if kind == "silent":
        return (1e-9 * rng.standard_normal(t.size)).astype(np.float32)
    if kind == "zeros":
        return np.zeros(t.size, dtype=np.float32)
    raise ValueError(f"unknown clip kind {kind!r}")


def _item_row(item, k, wav_name, prompt, condition, seed, skipped, style_row):
    return {
        "item": item,
        "waveform_index": k,
        "wav": f"wav/{wav_name}",
        "prompt": prompt,
        "prompt_used": prompt + (", piano, calm" if condition == "prompt_aug" else ""),
        "negative_prompt": "low quality",
        "seed": seed,
        "status": "skipped" if skipped else "ok",
        "skip_reason": "prompt too long for tokenizer" if skipped else None,
        "style_source": "bank" if style_row is not None else "none",
        "style_row": style_row,
        "retrieved": [
            # bank rows as the FSD50K bank numbers them (segment id = source id @ offset)
            {"row": 3, "segment_id": FAKE_BANK_SEGMENTS[3], "score": 0.71, "tags": ["piano"]},
            {"row": 9, "segment_id": FAKE_BANK_SEGMENTS[9], "score": 0.55, "tags": ["violin"]},
        ]
        if condition != "prompt"
        else [],
        "augment_tags": ["piano", "calm"] if condition == "prompt_aug" else [],
    }


def write_fake_run(
    runs_root: Path,
    model: str = "tiny-audioldm",
    condition: str = "prompt",
    seed: int = 0,
    kind: str = "sine",
    prompts=DEFAULT_PROMPTS,
    seconds: float = 1.0,
    with_style: bool = False,
    skipped_items=(),
    n_waveforms: int = 1,
    is_pipeline_check: bool = True,
    style_dim: int = 512,
) -> Path:
    """Write one run directory and return it."""
    run_dir = Path(runs_root) / model / condition / f"seed{seed}"
    (run_dir / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000 * len(condition))
    rows = []
    for item, prompt in enumerate(prompts):
        for k in range(n_waveforms):
            wav_name = f"{item:04d}.wav" if n_waveforms == 1 else f"{item:04d}_w{k}.wav"
            skipped = item in skipped_items
            style_row = item if with_style else None
            rows.append(_item_row(item, k, wav_name, prompt, condition, seed, skipped, style_row))
            if not skipped:
                audio = _clip(kind, item + k, seconds, rng)
                sf.write(run_dir / "wav" / wav_name, audio, SR, subtype="FLOAT")
    (run_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if with_style:
        style = rng.standard_normal((len(prompts), style_dim)).astype(np.float32)
        np.save(run_dir / "style.npy", style / np.linalg.norm(style, axis=1, keepdims=True))
    config = _run_config(model, condition, seed, seconds, n_waveforms, is_pipeline_check)
    (run_dir / "run_config.json").write_text(json.dumps(config, indent=2))
    (run_dir / "hardware.json").write_text(json.dumps(_hardware(), indent=2))
    return run_dir


def _run_config(model, condition, seed, seconds, n_waveforms, is_pipeline_check) -> dict:
    return {
        "model": model,
        "model_id": f"/tmp/tiny/{model}",
        "family": "audioldm1",
        "condition": condition,
        "condition_params": {"top_k": 4, "temperature": 0.1} if condition != "prompt" else {},
        "seed": seed,
        "params": {
            "steps": 4,
            "guidance": 2.5,
            "seconds": seconds,
            "batch": 2,
            "dtype": "float32",
            "scheduler": "ddim",
            "negative_prompt": "low quality",
            "num_waveforms_per_prompt": n_waveforms,
            "blend": "orth",
            "alpha": 0.3,
        },
        "prompts_file": "config/prompts/demo.txt",
        "command": f"python workflow_scripts/generate.py --model {model} --condition {condition} --seed {seed}",
        "code_version": "v0.1.0-3-gabcdef0 (dirty)",
        "timings_s": {
            "load": 1.5,
            "encode": 0.2,
            "retrieve": 0.1,
            "denoise": 3.0,
            "decode": 0.4,
            "vocode": 0.6,
            "write": 0.05,
            "total": 5.85,
        },
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:06Z",
        "is_pipeline_check": is_pipeline_check,
    }


def _hardware() -> dict:
    return {
        "device": "cpu",
        "gpu_name": None,
        "driver": None,
        "cuda": None,
        "torch": "2.13.0",
        "diffusers": "0.42.1",
        "transformers": "5.24.0",
        "python": "3.11",
        "cpu": "test cpu",
        "cpu_count": 2,
        "memory_gb": 8.0,
        "hostname": "testhost",
    }


def write_fake_shard(shard_dir: Path, n_segments: int = 12, seconds: float = 1.0, seed: int = 0):
    """A segment shard: audio_16k.npy [N, T] float16 at 16 kHz (tones + noise)."""
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    freqs = rng.uniform(110, 880, size=(n_segments, 1))
    audio = 0.2 * np.sin(2 * np.pi * freqs * t) + 0.02 * rng.standard_normal((n_segments, t.size))
    np.save(shard_dir / "audio_16k.npy", audio.astype(np.float16))
    return shard_dir


def write_fake_benchmark(bench_root: Path, model: str, condition: str, seed: int, seconds: float):
    """A Snakemake benchmark TSV for the generate job of one run."""
    path = Path(bench_root) / "generate" / model / condition / f"seed{seed}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    path.write_text(f"{header}\n{seconds:.4f}\t0:00:12\t812.3\t900.1\t700\t710\t0\t1\t95.0\t11.2\n")
    return path


def build_evaluated_tree(root: Path, clap_model: Path, n_boot: int = 50) -> dict:
    """Shards -> reference stats -> two evaluated runs -> compare pages, in-process.

    Calls the CLIs' ``main(argv)`` (same code as the command line) and returns the
    paths: {"runs": [...], "ref": npz, "report": table dir, "side_by_side": dir}.
    """
    import compare
    import evaluate
    import reference_stats

    root = Path(root)
    shard = write_fake_shard(root / "shards" / "s0", n_segments=10)
    ref = root / "ref_stats.npz"
    reference_stats.main(
        ["--shards", str(shard), "--clap-model", str(clap_model), "--device", "cpu"]
        + ["--max-items", "10", "--out", str(ref)]
    )
    runs_root = root / "results" / "runs"
    runs = [
        write_fake_run(runs_root, condition="prompt", kind="sine"),
        write_fake_run(
            runs_root, condition="retrieval", kind="noise", with_style=True, skipped_items=(1,)
        ),
    ]
    for run in runs:
        evaluate.main(
            ["--run-dir", str(run), "--clap-model", str(clap_model), "--reference-stats", str(ref)]
            + ["--device", "cpu", "--n-boot", str(n_boot)]
        )
    write_fake_benchmark(root / "benchmarks", "tiny-audioldm", "prompt", 0, 12.0)
    report_dir = root / "results" / "report"
    compare.main(
        ["--runs", *map(str, runs), "--out-dir", str(report_dir)]
        + ["--bench-root", str(root / "benchmarks"), "--n-boot", str(n_boot)]
        + ["--reference-stats", str(ref), "--min-n", "100", "--fad-inf-min-n", "2"]
        + ["--primary", "retrieval:prompt:clap_text_sim:ni=0.02", "retrieval:prompt:clap_style_sim"]
    )
    side_dir = root / "results" / "compare_ab"
    compare.main(
        ["--roots", str(runs[0]), str(runs[1]), "--out-dir", str(side_dir), "--n-boot", "20"]
    )
    return {"runs": runs, "ref": ref, "report": report_dir, "side_by_side": side_dir}


class FakeEmbedder:
    """Deterministic stand-in for ClapEmbedder (spectral summary, L2-normalised).

    32-d instead of CLAP's 512 keeps the FAD matrix square root cheap in tests.
    """

    sampling_rate = 48000
    dim = 32

    def embed_audio(self, waves):
        spectrum = np.abs(np.fft.rfft(np.asarray(waves, np.float64), n=2 * self.dim, axis=1))
        return self._norm(np.log1p(spectrum[:, : self.dim] * 1e3) + 1e-3)

    def embed_text(self, texts):
        rows = [np.random.default_rng(sum(map(ord, t))).standard_normal(self.dim) for t in texts]
        return self._norm(np.stack(rows))

    @staticmethod
    def _norm(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_fake_reference(path: Path, model: str = "fake-clap", two_datasets: bool = False) -> Path:
    """ref_stats.npz from FakeEmbedder embeddings of noise (the library's writer).

    ``two_datasets``: rows 0-5 'maestro', 6-11 'urmp', with a recorded composition.
    """
    from rcmg.evaluation import reference

    emb = FakeEmbedder().embed_audio(np.random.default_rng(0).standard_normal((12, 48000)))
    labels = composition = None
    if two_datasets:
        labels = ["maestro"] * 6 + ["urmp"] * 6
        entry = {"requested": 6, "available": 6, "drawn": 6, "kind": "weight", "value": 0.5}
        composition = {"maestro": entry, "urmp": dict(entry)}
    reference.write_reference(
        Path(path), emb.astype(np.float32), model, [Path("shards/s0")], labels, composition
    )
    return Path(path)


def evaluate_with_fake_embedder(run_dir: Path, ref: Path, n_boot: int = 50, **options) -> dict:
    """Run the library's evaluation on ``run_dir`` with FakeEmbedder (no CLAP load)."""
    from rcmg.evaluation.run_eval import EvalOptions, evaluate_run

    return evaluate_run(
        run_dir, "fake-clap", ref, EvalOptions(n_boot=n_boot, **options), FakeEmbedder
    )


def write_style_bank(folder: Path, vectors: np.ndarray, rows: list[dict] | None = None) -> dict:
    """A style bank as build_bank + build_index write it: ``bank.npy`` (unit rows), a
    ``bank.jsonl`` mapping (one row per vector; default tags empty) and a flat FAISS index.

    Returns ``{"bank", "bank_mapping", "index"}`` as strings, ready for the CLIs' flags.
    """
    from rcmg.bank.retrieval import build_index, save_index
    from rcmg.workflow.atomic import write_jsonl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    if rows is None:
        rows = [
            {"row": i, "segment_id": f"s{i}", "source_id": f"u{i}", "tags": []}
            for i in range(len(vectors))
        ]
    np.save(folder / "bank.npy", vectors)
    write_jsonl(folder / "bank.jsonl", rows)
    save_index(build_index(vectors, kind="flat"), folder / "bank.index")
    return {
        "bank": str(folder / "bank.npy"),
        "bank_mapping": str(folder / "bank.jsonl"),
        "index": str(folder / "bank.index"),
    }


def write_generation_inputs(
    root: Path, vectors: np.ndarray, prompts: list[str], clap_model: Path
) -> dict:
    """A prompt file ``p.txt`` and a style bank (one uploader per row, tag ``t``) in ``root``:
    the inputs of a retrieval run, as GenerateConfig fields (``prompts``, ``bank``,
    ``bank_mapping``, ``index``, ``clap_model``) plus ``root``, the folder itself."""
    rows = [
        {"segment_id": f"s{i}", "tags": ["t"], "source_id": f"u{i}"} for i in range(len(vectors))
    ]
    (Path(root) / "p.txt").write_text("\n".join(prompts) + "\n")
    return {
        "prompts": str(Path(root) / "p.txt"),
        **write_style_bank(root, vectors, rows),
        "clap_model": str(clap_model),
        "root": root,
    }


SWEEP_CONDITIONS = (
    "prompt",
    "prompt@guidance=2",
    "retrieval@alpha=0.1",
    "retrieval@guidance=2,alpha=0.1",
)
SWEEP_WORDS = (
    "ag:A:retrieval@alpha=0.1:prompt:guidance=3,alpha=0.1",
    "ag:A:retrieval@guidance=2,alpha=0.1:prompt@guidance=2:guidance=2,alpha=0.1",
)


def build_swept_compare(root: Path) -> dict:
    """A swept model A evaluated with FakeEmbedder and compared through compare.py:
    prompt and prompt@guidance=2 (the matched baseline), retrieval at alpha 0.1 for
    guidance 3 (the configured value) and 2; plus a stale folder compare is not given."""
    import compare

    root = Path(root)
    ref = write_fake_reference(root / "ref.npz")
    runs_root = root / "results" / "runs"
    runs = []
    for cond in SWEEP_CONDITIONS:
        style = cond.startswith("retrieval")
        run = write_fake_run(
            runs_root, model="A", condition=cond, kind="noise" if style else "sine",
            with_style=style, style_dim=FakeEmbedder.dim,
        )  # fmt: skip
        evaluate_with_fake_embedder(run, ref, n_boot=20)
        runs.append(run)
    stale = write_fake_run(runs_root, model="A", condition="retrieval@alpha=0.5")
    out = root / "results" / "report"
    code = compare.main(
        ["--runs", *map(str, runs), "--out-dir", str(out), "--n-boot", "50"]
        + ["--reference-stats", str(ref), "--fad-inf-min-n", "2"]
        + ["--sweep-points", *SWEEP_WORDS, "--select-margin", "1.0"]
    )
    assert code == 0
    return {"root": root, "out": out, "runs": runs, "stale": stale}
