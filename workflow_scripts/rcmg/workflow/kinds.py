"""The names of the things the workflow has several of: one definition each.

Standard library only (rules/common.smk imports it while Snakemake parses). The
schema's enums are checked against these by tests/unit/workflow/test_kinds.py.
"""

from __future__ import annotations

# Datasets whose published layouts rcmg.data.sources reads.
DATASET_KINDS = ("maestro", "urmp", "fsd50k")
# Model folders the stand-in builders write (tiny and published-architecture).
MODEL_KINDS = ("clap", "audioldm", "audioldm2", "audioldm2-music", "musicgen")
# Model folders built only as tiny stand-ins by the tiny-model builder (musicgen-melody's
# published architecture is built by tests/benchmarks/bench_musicgen.py --kind
# musicgen-melody alone: rcmg.standins.musicgen_models.build_published_musicgen_melody).
TINY_ONLY_KINDS = ("musicgen-melody",)
# Evaluation classifiers (evaluation.classifier): tiny stand-ins only (no bench build).
CLASSIFIER_KINDS = ("ast",)
# Every kind the tiny-model builder writes (the demo's model folders).
TINY_KINDS = MODEL_KINDS + TINY_ONLY_KINDS + CLASSIFIER_KINDS
# Condition types a config condition can have (rcmg.generation.conditioning).
CONDITION_TYPES = (
    "prompt",
    "prompt_aug",
    "retrieval",
    "retrieval_random",
    "retrieval_mismatched",
    "style_only",
    "continuation",
    "melody",
)
# Condition types that blend a style vector into the conditioning.
STYLE_TYPES = ("retrieval", "retrieval_random", "retrieval_mismatched", "style_only")
# Which bank item an audio-prompt condition gives the model: the prompt's top hit, or the
# controls' seeded random item / the top hit of the prompt half the set away.
AUDIO_PROMPT_SOURCES = ("top", "random", "mismatched")
# Condition types that give the model the top retrieved bank item's audio itself: its first
# seconds to continue, or its chroma as the melody (families with ``audio_prompt_types``).
AUDIO_PROMPT_TYPES = ("continuation", "melody")
