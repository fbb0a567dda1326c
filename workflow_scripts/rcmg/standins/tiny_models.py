"""Tiny random-weight models in Hugging Face folder format, for offline pipeline checks.

Each kind is saved with ``save_pretrained`` so the real loading code
(``AudioLDMPipeline`` / ``AudioLDM2Pipeline`` / ``ClapModel`` + ``ClapProcessor``
``.from_pretrained``) loads it. Widths and depths are tiny; the time/frequency geometry
is the real one (16 kHz audio, 64 mel bins, vocoder upsample product 160, VAE
downsampling 4, CLAP at 48 kHz with a 256 spectrogram and no fusion), so latent shapes
and clip lengths match the real checkpoints. Tokenizers are trained locally with the
``tokenizers`` library on a small built-in English music vocabulary.

The output is noise (near-silent audio), not music: every folder carries the
random-weight marker (:mod:`rcmg.models.random_weights`) that says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rcmg.models.random_weights import random_weight_info, write_marker
from rcmg.workflow.atomic import atomic_dir
from rcmg.workflow.kinds import TINY_KINDS

log = logging.getLogger(__name__)

BUILDER_VERSION = 4
KINDS = TINY_KINDS

# Real geometry (kept): generation side.
AUDIO_SAMPLING_RATE = 16_000
MEL_BINS = 64
VOCODER_UPSAMPLE_RATES = (5, 4, 2, 2, 2)  # product 160 = hop length at 16 kHz
VOCODER_UPSAMPLE_KERNELS = (16, 16, 8, 4, 4)
VAE_BLOCK_CHANNELS = (16, 16, 32)  # three levels: downsampling 4 like the real VAE
VAE_LATENT_CHANNELS = 8
VAE_SCALING_FACTOR = 0.9227914
AUDIOLDM_UNET_SAMPLE_SIZE = 128  # default 5.12 s like cvssp/audioldm
AUDIOLDM2_UNET_SAMPLE_SIZE = 256  # default 10.24 s like cvssp/audioldm2
# Real geometry (kept): CLAP side.
CLAP_SAMPLING_RATE = 48_000
CLAP_PROJECTION_DIM = 512
CLAP_SPEC_SIZE = 256
CLAP_MAX_TEXT_TOKENS = 512
# Tiny widths.
CLAP_TEXT_WIDTH = 32
T5_WIDTH = 48
GPT2_WIDTH = 32
# The real AudioLDM2 checkpoints give GPT-2 1024 positions for a T5 tokenizer of 128 tokens
# (config/bench/audioldm2/language_model.json, tokenizers.json): a ratio of 8. The tiny
# models keep that ratio with their 512-token T5 tokenizer, so the language-model context
# check behaves as on the real models (a long prompt is cut by T5, never by GPT-2).
TINY_T5_MAX_TOKENS = 512
REAL_LM_POSITIONS_PER_T5_TOKEN = 1024 // 128
GPT2_POSITIONS = TINY_T5_MAX_TOKENS * REAL_LM_POSITIONS_PER_T5_TOKEN
UNET_CHANNELS = (32, 64, 64)

MUSIC_VOCABULARY_TEXT = """
a calm solo piano piece with soft sustained chords and gentle arpeggios
an energetic rock song with distorted electric guitar bass and loud drums
a string quartet playing a slow melancholic melody with violin viola and cello
jazz trio with upright bass brushed snare and a walking piano line
ambient electronic pad with warm synthesizer textures and reverb
orchestral film score with brass fanfare timpani and choir
acoustic folk guitar strumming with a light tambourine and hand claps
a flute and clarinet duet in a bright major key
deep techno beat with kick drum hi hat and rolling bassline
lofi hip hop groove with vinyl crackle mellow keys and soft drums
classical sonata in a minor key played fast with staccato notes
a trumpet solo over a funky rhythm section with saxophone and trombone
percussion ensemble with marimba xylophone bells and shakers
a sad cello melody with slow tempo and legato phrasing
happy upbeat pop song with catchy vocals synth and claps
dog barking bird singing rain falling wind blowing door knocking
water dripping footsteps applause crowd cheering engine running
harp glissando celesta music box and glockenspiel
bassoon oboe horn tuba double bass and viola da gamba
loud quiet fast slow high low bright dark warm cold soft hard
major minor chord scale melody harmony rhythm tempo beat bar note
""".split("\n")


def build_tiny_model(kind: str, out_dir: Path, seed: int = 0) -> Path:
    """Build (once) the tiny model ``kind`` into ``out_dir`` and return ``out_dir``.

    Idempotent: a folder whose marker records the same kind, seed and builder version
    is returned untouched. Atomic: built in a temporary sibling, moved in when complete.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    expected = _marker_content(kind, seed)
    if _marker_matches(out_dir, expected):
        log.info("tiny %s model already built in %s", kind, out_dir)
        return out_dir
    log.info("building tiny %s model (seed %d) into %s", kind, seed, out_dir)
    with atomic_dir(out_dir) as tmp:
        _BUILDERS[kind](tmp, seed + _SEED_OFFSET[kind])
        write_marker(tmp, "tiny", expected)
    return out_dir


def read_tiny_marker(model_dir: Path) -> dict | None:
    """The marker of a tiny model folder, or None for any other folder."""
    info = random_weight_info(model_dir)
    return info if info is not None and info.get("build") == "tiny" else None


def _marker_content(kind: str, seed: int) -> dict:
    return {"kind": kind, "seed": seed, "builder_version": BUILDER_VERSION}


def _marker_matches(out_dir: Path, expected: dict) -> bool:
    try:
        found = read_tiny_marker(out_dir)
    except (OSError, json.JSONDecodeError):
        return False
    if found is None:
        return False
    keys = ("kind", "seed", "builder_version")
    return all(found.get(k) == expected[k] for k in keys)


# ---------------------------------------------------------------- tokenizers


def _training_lines() -> list[str]:
    return [line.strip() for line in MUSIC_VOCABULARY_TEXT if line.strip()]


def train_roberta_tokenizer(vocab_size: int = 400, max_length: int = CLAP_MAX_TEXT_TOKENS):
    """A byte-level BPE tokenizer (RoBERTa special tokens and ids) trained locally.

    Trained on the built-in music vocabulary, so the vocabulary holds at most
    ``vocab_size`` entries; ``max_length`` becomes its ``model_max_length``.
    Shared by the tiny models and ``rcmg.standins.real_arch``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_lines(), trainer=trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    return RobertaTokenizer(vocab=model_json["vocab"], merges=merges, model_max_length=max_length)


def train_t5_tokenizer(vocab_size: int = 300, max_length: int = TINY_T5_MAX_TOKENS):
    """A unigram tokenizer (T5 special tokens and ids) built from the corpus' word counts.

    Same corpus and contract as :func:`train_roberta_tokenizer`. The pieces and scores
    are computed here rather than by the ``tokenizers`` Unigram trainer, whose scores vary
    from run to run: two builds must give identical token ids, or two machines building
    the demo would generate different audio from the same seed. Every character of the
    corpus is a piece, so any text still encodes; frequent words are whole pieces.
    """
    import collections
    import math
    import string

    from transformers import T5Tokenizer

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words: collections.Counter[str] = collections.Counter()
    chars: collections.Counter[str] = collections.Counter()
    for line in _training_lines():
        for word in line.split():
            words["\u2581" + word] += 1
            chars.update(word)
    chars.update(c for c in string.printable if not c.isspace())  # any ASCII text encodes
    chars["\u2581"] += sum(words.values())
    total = sum(words.values()) + sum(chars.values())
    char_pieces = sorted(chars, key=lambda c: (-chars[c], c))
    budget = max(vocab_size - len(specials) - len(char_pieces), 0)
    word_pieces = sorted(words, key=lambda w: (-words[w], w))[:budget]
    # whole words score above their spelling, characters last: longest match wins
    scored = [(w, math.log(words[w] / total)) for w in word_pieces]
    scored += [(c, math.log(chars[c] / total) - 10.0) for c in char_pieces]
    return T5Tokenizer(vocab=specials + scored, extra_ids=0, model_max_length=max_length)


# ---------------------------------------------------------------- components


def clap_feature_extractor():
    """CLAP features like laion/clap-htsat-unfused: 48 kHz, 64 mels, 10 s, no fusion."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(
        feature_size=MEL_BINS,
        sampling_rate=CLAP_SAMPLING_RATE,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14_000,
        truncation="rand_trunc",
        padding="repeatpad",
    )


def _clap_text_config(vocab_size: int):
    from transformers import ClapTextConfig

    return ClapTextConfig(
        vocab_size=vocab_size,
        hidden_size=CLAP_TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=CLAP_MAX_TEXT_TOKENS + 2,
        projection_dim=CLAP_PROJECTION_DIM,
    )


def _clap_audio_config():
    from transformers import ClapAudioConfig

    patch_width = 16
    depths = (1, 1)
    return ClapAudioConfig(
        spec_size=CLAP_SPEC_SIZE,
        num_mel_bins=MEL_BINS,
        window_size=8,
        patch_size=4,
        patch_stride=(4, 4),
        depths=depths,
        num_attention_heads=(2, 2),
        patch_embeds_hidden_size=patch_width,
        hidden_size=patch_width * 2 ** (len(depths) - 1),
        enable_fusion=False,
        projection_dim=CLAP_PROJECTION_DIM,
    )


def _clap_model(vocab_size: int):
    from transformers import ClapConfig, ClapModel

    config = ClapConfig(
        text_config=_clap_text_config(vocab_size).to_dict(),
        audio_config=_clap_audio_config().to_dict(),
        projection_dim=CLAP_PROJECTION_DIM,
    )
    return ClapModel(config).eval()


def _vae():
    from diffusers import AutoencoderKL

    levels = len(VAE_BLOCK_CHANNELS)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=VAE_BLOCK_CHANNELS,
        layers_per_block=1,
        latent_channels=VAE_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=512,
        scaling_factor=VAE_SCALING_FACTOR,
    )


def _vocoder():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=MEL_BINS,
        sampling_rate=AUDIO_SAMPLING_RATE,
        upsample_initial_channel=64,
        upsample_rates=VOCODER_UPSAMPLE_RATES,
        upsample_kernel_sizes=VOCODER_UPSAMPLE_KERNELS,
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
        normalize_before=False,
    )
    vocoder = SpeechT5HifiGan(config).eval()
    _variance_preserving_init(vocoder)
    return vocoder


def _variance_preserving_init(module) -> None:
    """Re-draw every conv weight with std 1/sqrt(fan_in) (biases zero).

    transformers' default init (std 0.01) shrinks the signal at each of the vocoder's
    layers, so random-weight audio comes out near 1e-9: every clip then looks the same
    to CLAP and loudness metrics floor out. With a variance-preserving init the demo's
    clips sit around -25 dBFS and differ by condition, so metrics, mel plots and paired
    comparisons are exercised on real differences (still noise, not music).
    """
    import math

    import torch

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.ConvTranspose1d):
                fan_in = layer.weight.shape[0] * layer.weight.shape[2] / layer.stride[0]
            elif isinstance(layer, torch.nn.Conv1d):
                fan_in = layer.weight.shape[1] * layer.weight.shape[2]
            else:
                continue
            layer.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
            if layer.bias is not None:
                layer.bias.zero_()


def _ddim_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


# Block layout shared by the AudioLDM1 and AudioLDM2 tiny UNets.
_UNET_LAYOUT = {
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": UNET_CHANNELS,
    "layers_per_block": 1,
    "norm_num_groups": 8,
}


def _audioldm_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=AUDIOLDM_UNET_SAMPLE_SIZE,
        in_channels=VAE_LATENT_CHANNELS,
        out_channels=VAE_LATENT_CHANNELS,
        **_UNET_LAYOUT,
        # AudioLDM1 has no text cross-attention: the attention layers attend to the
        # hidden states themselves, so their context width equals the block width.
        cross_attention_dim=UNET_CHANNELS,
        attention_head_dim=8,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=CLAP_PROJECTION_DIM,
        class_embeddings_concat=True,
    )


def _audioldm2_unet():
    from diffusers import AudioLDM2UNet2DConditionModel

    per_block = [None, GPT2_WIDTH, T5_WIDTH]  # self-attn, language model, T5
    return AudioLDM2UNet2DConditionModel(
        sample_size=AUDIOLDM2_UNET_SAMPLE_SIZE,
        in_channels=VAE_LATENT_CHANNELS,
        out_channels=VAE_LATENT_CHANNELS,
        **_UNET_LAYOUT,
        cross_attention_dim=[per_block] * len(UNET_CHANNELS),
        attention_head_dim=8,
    )


def _t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=T5_WIDTH,
        d_kv=12,
        d_ff=96,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def _gpt2_language_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=64,
        n_positions=GPT2_POSITIONS,
        n_embd=GPT2_WIDTH,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    # The pipeline reads the number of generated embedding vectors from the config.
    config.max_new_tokens = 8
    return GPT2LMHeadModel(config).eval()


# ---------------------------------------------------------------- builders


def _build_clap(out: Path, seed: int) -> None:
    import torch
    from transformers import ClapProcessor

    tokenizer = train_roberta_tokenizer()
    torch.manual_seed(seed)
    model = _clap_model(len(tokenizer))
    model.save_pretrained(out)
    ClapProcessor(feature_extractor=clap_feature_extractor(), tokenizer=tokenizer).save_pretrained(
        out
    )


def _build_audioldm(out: Path, seed: int) -> None:
    import torch
    from diffusers import AudioLDMPipeline
    from transformers import ClapTextModelWithProjection

    tokenizer = train_roberta_tokenizer()
    torch.manual_seed(seed)
    pipe = AudioLDMPipeline(
        vae=_vae(),
        text_encoder=ClapTextModelWithProjection(_clap_text_config(len(tokenizer))).eval(),
        tokenizer=tokenizer,
        unet=_audioldm_unet(),
        scheduler=_ddim_scheduler(),
        vocoder=_vocoder(),
    )
    pipe.save_pretrained(out)


def _build_audioldm2(out: Path, seed: int) -> None:
    import torch
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel

    tokenizer = train_roberta_tokenizer()
    tokenizer_2 = train_t5_tokenizer()
    torch.manual_seed(seed)
    pipe = AudioLDM2Pipeline(
        vae=_vae(),
        text_encoder=_clap_model(len(tokenizer)),
        text_encoder_2=_t5_encoder(len(tokenizer_2)),
        projection_model=AudioLDM2ProjectionModel(
            text_encoder_dim=CLAP_PROJECTION_DIM,
            text_encoder_1_dim=T5_WIDTH,
            langauge_model_dim=GPT2_WIDTH,
        ),
        language_model=_gpt2_language_model(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        feature_extractor=clap_feature_extractor(),
        unet=_audioldm2_unet(),
        scheduler=_ddim_scheduler(),
        vocoder=_vocoder(),
    )
    pipe.save_pretrained(out)


# AST (MIT/ast-finetuned-audioset-10-10-0.4593): the published geometry is kept (16 kHz,
# 128 mel bins, 1024 frames, 16x16 patches at stride 10, 527 AudioSet classes, the
# AudioSet normalisation mean/std of its feature extractor = transformers' ASTConfig /
# ASTFeatureExtractor defaults); only the transformer widths are tiny.
AST_NUM_LABELS = 527
AST_WIDTH = 32


def _build_ast(out: Path, seed: int) -> None:
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=AST_WIDTH,
        num_hidden_layers=1,  # one layer: each evaluate job runs it on every clip
        num_attention_heads=2,
        intermediate_size=2 * AST_WIDTH,
        patch_size=16,
        frequency_stride=10,
        time_stride=10,
        max_length=1024,
        num_mel_bins=128,
        num_labels=AST_NUM_LABELS,
        id2label={i: f"audioset_class_{i:03d}" for i in range(AST_NUM_LABELS)},
        label2id={f"audioset_class_{i:03d}": i for i in range(AST_NUM_LABELS)},
        problem_type="multi_label_classification",
    )
    torch.manual_seed(seed)
    ASTForAudioClassification(config).eval().save_pretrained(out)
    ASTFeatureExtractor(
        sampling_rate=16000,
        num_mel_bins=128,
        max_length=1024,
        do_normalize=True,
        mean=-4.2677393,
        std=4.5689974,
    ).save_pretrained(out)


def _build_musicgen(out: Path, seed: int) -> None:
    from rcmg.standins.musicgen_models import build_tiny_musicgen

    build_tiny_musicgen(out, seed)


def _build_musicgen_melody(out: Path, seed: int) -> None:
    from rcmg.standins.musicgen_models import build_tiny_musicgen_melody

    build_tiny_musicgen_melody(out, seed)


_BUILDERS = {
    "ast": _build_ast,
    "clap": _build_clap,
    "audioldm": _build_audioldm,
    "audioldm2": _build_audioldm2,
    # cvssp/audioldm2-music has the same component classes as cvssp/audioldm2 (CLAP,
    # T5 encoder, GPT-2, AudioLDM2 UNet); only the trained weights differ.
    "audioldm2-music": _build_audioldm2,
    # MusicgenForConditionalGeneration with the published structure
    # (rcmg.standins.musicgen_models: 4 codebooks, EnCodec 32 kHz, T5 encoder)
    "musicgen": _build_musicgen,
    # MusicgenMelodyForConditionalGeneration: the same codec, codebooks and T5, plus the
    # prepended 12-bin chroma (rcmg.standins.musicgen_models)
    "musicgen-melody": _build_musicgen_melody,
}
# Offsets of the weight seed per kind: AudioLDM2 and AudioLDM2-Music share every class and
# width, so without an offset their random weights (and demo audio) would be identical.
_SEED_OFFSET = {
    "clap": 0,
    "audioldm": 0,
    "audioldm2": 0,
    "audioldm2-music": 1,
    "ast": 0,
    "musicgen": 0,
    "musicgen-melody": 2,
}
