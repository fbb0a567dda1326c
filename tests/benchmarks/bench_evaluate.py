#!/usr/bin/env python
"""Benchmark the evaluate job on one synthetic run cell: the model forwards' share.

Builds a run folder of ``--clips`` synthetic 16-kHz clips (the run-directory contract:
wav/, items.jsonl, run_config.json, hardware.json), a reference (``reference_stats``'s
code on synthetic segments) and the demo's tiny random-weight judge CLAP and AST
classifier, then runs the real evaluate path (:func:`rcmg.evaluation.run_eval.evaluate_run`,
what workflow_scripts/evaluate.py calls) once per ``--drawing`` mode and prints, per mode:
the job's wall seconds, the seconds inside the models' forward passes (judge CLAP audio
and text, classifier) and their share of the job, the seconds inside the model calls
with their CPU feature extraction, and the seconds of each stage (drawing included).

Drawing modes: ``new`` = the code as it is; ``old`` = the per-item mel drawing as it was
before per-clip mels were drawn on one reused figure (commit eb24b4e's
``write_visualizations``: a fresh matplotlib figure per clip, every clip's spectrogram
kept in memory), copied below verbatim and swapped in for the run. The evaluation
settings are config/config.yaml's (``evaluation``: batch, n_boot, FAD options,
mel_max_items). Not included: the style baseline and copy audit (they need a bank, its
index and segments; the demo's cell has them) and the judge-bank style similarity.
Random weights: timings only.

    .venv/bin/python tests/benchmarks/bench_evaluate.py --clips 1000 --seconds 10 \\
        --drawing old,new --json /tmp/bench_evaluate.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

import numpy as np  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402
from rcmg.workflow.runinfo import cpu_name  # noqa: E402

SR = 16000
PROMPT_POOL = (
    "a calm piano melody",
    "fast jazz drums with brushes",
    "a string quartet playing a slow waltz",
    "ambient synth pad with reverb",
    "solo violin, expressive vibrato",
    "upbeat acoustic guitar strumming",
    "deep cello drone",
    "bright marimba arpeggios",
)
# evaluate_run's stages, timed by wrapping the module functions it calls (nested: the
# classifier's forwards are inside classifier_view, the CLAP's inside embed_*)
STAGES = {
    "run_eval": (
        "read_clips",
        "embed_audio_batches",
        "embed_texts",
        "classifier_view",
        "summarise",
        "write_visualizations",
        "write_embeddings",
    ),
    "provenance": ("write_provenance",),
    "report": ("render_run_report",),
    # inside write_visualizations
    "plots": ("mel_spectrogram_db", "save_mel_grid", "save_histograms"),
}
MEL_PNG = "mel_png"  # one clip's mel PNG: MelImages.save (new), legacy_save_mel_image (old)
DRAWING_STAGE = "write_visualizations"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clips", type=int, default=1000, help="clips in the run cell")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per clip")
    p.add_argument("--drawing", default="old,new", help="comma list of old, new (run in order)")
    p.add_argument("--reference-items", type=int, default=128, help="reference segments")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--no-classifier", action="store_true", help="judge CLAP only")
    p.add_argument("--n-boot", type=int, default=None, help="default: config/config.yaml's")
    p.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    return p.parse_args(argv)


# ------------------------------------------------------------------ the run cell


def synthetic_clip(item: int, seconds: float) -> np.ndarray:
    """A decaying harmonic note per half second (pitch from the item) plus a little noise."""
    rng = np.random.default_rng(item)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = 0.003 * rng.standard_normal(n)
    note_s = 0.5
    for start in range(0, n, int(note_s * SR)):
        hz = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        seg = t[: min(int(note_s * SR), n - start)]
        tone = sum(np.sin(2 * np.pi * k * hz * seg) / k for k in (1, 2, 3))
        out[start : start + seg.size] += 0.2 * tone * np.exp(-seg / 0.2)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def write_run_cell(run_dir: Path, n_clips: int, seconds: float) -> Path:
    """One run folder as the generate job leaves it (prompt condition, one seed)."""
    import soundfile as sf

    (run_dir / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for item in range(n_clips):
        prompt = f"{PROMPT_POOL[item % len(PROMPT_POOL)]}, take {item}"
        name = f"{item:04d}.wav"
        sf.write(run_dir / "wav" / name, synthetic_clip(item, seconds), SR, subtype="PCM_16")
        rows.append(
            {
                "item": item,
                "waveform_index": 0,
                "wav": f"wav/{name}",
                "prompt": prompt,
                "prompt_used": prompt,
                "negative_prompt": "low quality",
                "seed": 0,
                "status": "ok",
                "skip_reason": None,
                "style_source": "none",
                "style_row": None,
                "retrieved": [],
                "augment_tags": [],
            }
        )
    (run_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model": "tiny-audioldm",
        "model_id": "tiny-audioldm",
        "pipeline": "audioldm1",
        "condition": "prompt",
        "condition_params": {},
        "seed": 0,
        "params": {"steps": 1, "guidance": 2.5, "seconds": seconds, "batch": 1,
                   "num_waveforms_per_prompt": 1},
        "prompts_file": "synthetic (bench_evaluate.py)",
        "command": "bench_evaluate.py",
        "code_version": "bench",
        "timings_s": {},
        "is_pipeline_check": True,
    }  # fmt: skip
    (run_dir / "run_config.json").write_text(json.dumps(config, indent=2))
    hardware = {"device": "cpu", "cpu": "bench", "cpu_count": os.cpu_count()}
    (run_dir / "hardware.json").write_text(json.dumps(hardware, indent=2))
    return run_dir


def write_reference(work: Path, clap: Path, classifier: Path | None, n: int, seconds: float):
    """ref_stats.npz from synthetic segments (reference_stats's code, as the job runs it)."""
    import reference_stats

    shard = work / "reference_shard"
    shard.mkdir(parents=True, exist_ok=True)
    audio = np.stack([synthetic_clip(100_000 + i, seconds) for i in range(n)])
    np.save(shard / "audio_16k.npy", audio.astype(np.float16))
    out = work / "ref_stats.npz"
    argv = ["--shards", f"maestro={shard}", "--clap-model", str(clap), "--device", "cpu"]
    argv += ["--max-items", str(n), "--out", str(out)]
    if classifier is not None:
        argv += ["--classifier", str(classifier)]
    if reference_stats.main(argv) != 0:
        raise RuntimeError("reference_stats failed")
    return out


def eval_options(args, classifier: Path | None):
    import yaml
    from rcmg.evaluation.run_eval import EvalOptions

    evaluation = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["evaluation"]
    keys = ("batch", "n_boot", "seed", "mel_max_items", "fad_blocks", "fad_inf_min_n",
            "fad_inf_steps", "fad_inf_repeats")  # fmt: skip
    settings = {k: evaluation[k] for k in keys}
    if args.n_boot is not None:
        settings["n_boot"] = args.n_boot
    return EvalOptions(
        device=args.device, classifier=None if classifier is None else str(classifier), **settings
    )


# ------------------------------------------------------------------ timing


class Timings:
    """Seconds accumulated per name by wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed


@contextlib.contextmanager
def patched(module, name: str, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def clap_factory(clap: Path, device: str, timings: Timings, embedders: list):
    """The judge CLAP; its calls (features + forward) timed, its forwards counted by itself."""

    def make():
        from rcmg.models.clap import ClapEmbedder

        start = time.perf_counter()
        embedder = ClapEmbedder(str(clap), device=device)
        timings.seconds["load_clap"] += time.perf_counter() - start
        embedder.embed_audio = timings.wrap("clap_audio_calls", embedder.embed_audio)
        embedder.embed_text = timings.wrap("clap_text_calls", embedder.embed_text)
        embedders.append(embedder)  # model_forward_seconds: its own forward timer
        return embedder

    return make


def classifier_factory(classifier: Path, device: str, timings: Timings):
    """The AST classifier; its calls and its two forward modules timed."""

    def make():
        import torch
        from rcmg.models.classifier import AudioClassifier

        start = time.perf_counter()
        model = AudioClassifier(str(classifier), device=device)
        timings.seconds["load_classifier"] += time.perf_counter() - start
        cuda = str(model.device).startswith("cuda")
        for module in (model.model.audio_spectrogram_transformer, model.model.classifier):
            forward = module.forward

            def synced(*a, _forward=forward, **k):
                out = _forward(*a, **k)
                if cuda:
                    torch.cuda.synchronize()
                return out

            module.forward = timings.wrap("classifier_forward", synced)
        model.embed = timings.wrap("classifier_calls", model.embed)
        return model

    return make


# ------------------------------------------------------------------ old drawing (eb24b4e)


def legacy_save_mel_image(mel_db, path, title: str, sr: int = 16000, hop: int = 160):
    """plots.save_mel_image as of eb24b4e: a fresh figure and colour bar per clip."""
    from rcmg.evaluation import plots
    from rcmg.workflow.figures import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=80)
    image = plots._show_mel(ax, mel_db, title, sr, hop)
    fig.colorbar(image, ax=ax, format="%d dB")
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.18, top=0.88)
    return save_png(fig, path)


def legacy_write_visualizations(run_dir: Path, rows, clips, mel_max_items: int) -> list[dict]:
    """run_eval.write_visualizations as of eb24b4e (every clip's mel kept in memory)."""
    from rcmg.evaluation import plots, run_eval
    from rcmg.workflow.atomic import atomic_dir
    from tqdm import tqdm

    ok_rows = [r for r in rows if r["status"] == "ok"]
    with atomic_dir(run_dir / "visualizations") as tmp:
        mels = []
        for row, (x, sr) in tqdm(
            list(zip(ok_rows, clips, strict=True)), desc="mel", file=sys.stderr
        ):
            mel_db = plots.mel_spectrogram_db(x, sr)
            legacy_save_mel_image(
                mel_db, tmp / "mel" / Path(row["mel"]).name, f"item {row['item']}", sr
            )
            mels.append((mel_db, f"{row['item']}: {str(row['prompt'])[:40]}", sr))
        grid = mels[:mel_max_items]
        sr_grid = grid[0][2] if grid else 16000
        plots.save_mel_grid(
            [m for m, _, _ in grid], [t for _, t, _ in grid], tmp / "mel_grid.png", sr_grid
        )
        histogram_columns = {
            name: run_eval.column(rows, name)
            for name in [*run_eval.SIM_COLUMNS, *run_eval.LEVEL_COLUMNS]
        }
        plots.save_histograms(histogram_columns, tmp / "metric_histograms.png")
    return [
        {
            "src": "visualizations/mel_grid.png",
            "alt": f"mel spectrograms (first {len(grid)} clips)",
        },
        {"src": "visualizations/metric_histograms.png", "alt": "per-item metric histograms"},
    ]


# ------------------------------------------------------------------ one measured evaluate


def evaluate_once(mode: str, run_dir: Path, ref: Path, clap: Path, classifier, options) -> dict:
    """evaluate_run on ``run_dir`` with drawing ``mode``; seconds per stage and forward."""
    from rcmg.evaluation import plots, provenance, report, run_eval

    timings, embedders = Timings(), []
    modules = {"run_eval": run_eval, "provenance": provenance, "report": report, "plots": plots}
    with contextlib.ExitStack() as stack:
        if mode == "old":
            stack.enter_context(patched(run_eval, DRAWING_STAGE, legacy_write_visualizations))
            here = sys.modules[__name__]
            png = timings.wrap(MEL_PNG, legacy_save_mel_image)
            stack.enter_context(patched(here, "legacy_save_mel_image", png))
        else:
            png = timings.wrap(MEL_PNG, plots.MelImages.save)
            stack.enter_context(patched(plots.MelImages, "save", png))
        for module_name, names in STAGES.items():
            module = modules[module_name]
            for name in names:
                fn = timings.wrap(name, getattr(module, name))
                stack.enter_context(patched(module, name, fn))
        start = time.perf_counter()
        summary = run_eval.evaluate_run(
            run_dir,
            str(clap),
            ref,
            options,
            embedder_factory=clap_factory(clap, options.device, timings, embedders),
            classifier_factory=None
            if classifier is None
            else classifier_factory(classifier, options.device, timings),
        )
        total = time.perf_counter() - start
    clap_forward = sum(e.model_forward_seconds for e in embedders)
    forward = clap_forward + timings.seconds["classifier_forward"]
    calls = sum(timings.seconds[k] for k in ("clap_audio_calls", "clap_text_calls",
                                              "classifier_calls"))  # fmt: skip
    mels = list((run_dir / "visualizations" / "mel").glob("*.png"))
    drawn = [p for p in (run_dir / "visualizations").rglob("*") if p.is_file()]
    return {
        "drawing": mode,
        "clips": summary["n_evaluated"],
        "total_s": total,
        "forward_s": forward,
        "clap_forward_s": clap_forward,
        "classifier_forward_s": timings.seconds["classifier_forward"],
        "forward_share": forward / total,
        "model_calls_s": calls,
        "model_calls_share": calls / total,
        "drawing_s": timings.seconds[DRAWING_STAGE],
        "drawing_share": timings.seconds[DRAWING_STAGE] / total,
        "load_s": timings.seconds["load_clap"] + timings.seconds["load_classifier"],
        "stages_s": {
            name: timings.seconds[name]
            for names in (*STAGES.values(), (MEL_PNG,))
            for name in names
        },
        "mel_pngs": len(mels),
        "visualization_files": len(drawn),
        "mel_png_mib": sum(p.stat().st_size for p in mels) / 2**20,
    }


def print_result(r: dict) -> None:
    print(
        f"  drawing={r['drawing']:3s}: {r['clips']} clips, evaluate {r['total_s']:.1f} s; "
        f"model forwards {r['forward_s']:.1f} s = {100 * r['forward_share']:.1f}% "
        f"(CLAP {r['clap_forward_s']:.1f} s, classifier {r['classifier_forward_s']:.1f} s); "
        f"model calls incl. feature extraction {r['model_calls_s']:.1f} s = "
        f"{100 * r['model_calls_share']:.1f}%; drawing {r['drawing_s']:.1f} s = "
        f"{100 * r['drawing_share']:.1f}% ({r['mel_pngs']} mel PNGs, "
        f"{r['mel_png_mib']:.1f} MiB); model load {r['load_s']:.1f} s",
        flush=True,
    )
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items())
    print(f"  {'':12s} stages (s, nested): {stages}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    modes = [m.strip() for m in args.drawing.split(",") if m.strip()]
    unknown = sorted(set(modes) - {"old", "new"})
    if unknown or not modes:
        raise SystemExit(f"--drawing takes old and/or new, not {', '.join(unknown) or '(none)'}")
    import torch  # noqa: F401  (imported before anything is timed)
    from rcmg.standins.tiny_models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        work = args.work_dir or Path(tmp)
        start = time.perf_counter()
        clap = build_tiny_model("clap", work / "models" / "clap", seed=0)
        classifier = (
            None if args.no_classifier else build_tiny_model("ast", work / "models" / "ast", seed=0)
        )
        ref = write_reference(work, clap, classifier, args.reference_items, args.seconds)
        run_dir = write_run_cell(work / "runs" / "cell", args.clips, args.seconds)
        warm = write_run_cell(work / "runs" / "warm-up", min(4, args.clips), args.seconds)
        setup_s = time.perf_counter() - start
        options = eval_options(args, classifier)
        evaluate_once("new", warm, ref, clap, classifier, options)  # imports, caches
        results = []
        for mode in modes:
            results.append(evaluate_once(mode, run_dir, ref, clap, classifier, options))
    print(
        f"\n== evaluate on one run cell: {args.clips} synthetic {args.seconds:g}-s clips at "
        f"{SR} Hz, tiny judge CLAP{'' if classifier is None else ' + tiny AST classifier'}, "
        f"device {args.device}, {cpu_name()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}; "
        f"set-up {setup_s:.0f} s (not timed below) =="
    )
    for r in results:
        print_result(r)
    by_mode = {r["drawing"]: r for r in results}
    if {"old", "new"} <= set(by_mode):
        old, new = by_mode["old"], by_mode["new"]
        saved = old["drawing_s"] - new["drawing_s"]
        print(
            f"  old -> new: forward share {100 * old['forward_share']:.1f}% -> "
            f"{100 * new['forward_share']:.1f}%, evaluate {old['total_s']:.1f} -> "
            f"{new['total_s']:.1f} s, drawing {old['drawing_s']:.1f} -> {new['drawing_s']:.1f} s "
            f"({saved:.1f} s saved, {1000 * saved / max(args.clips, 1):.0f} ms per clip)"
        )
    if args.json:
        settings = {
            "clips": args.clips,
            "seconds": args.seconds,
            "reference_items": args.reference_items,
            "device": args.device,
            "classifier": classifier is not None,
            "eval_options": dataclasses.asdict(options),
            "setup_s": setup_s,
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
        }
        write_json(args.json, {"settings": json_ready(settings), "results": results})
    return 0


def json_ready(value):
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    sys.exit(main())
