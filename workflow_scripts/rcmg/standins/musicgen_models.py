"""MusicGen stand-ins: tiny random-weight ``MusicgenForConditionalGeneration`` folders with
the published structure (demo, tests).

What is kept from the published checkpoints (facebook/musicgen-small|medium|large, the
transformers conversion scripts ``convert_musicgen_transformers.py`` and
``convert_encodec_checkpoint_to_pytorch.py``; config/bench/SOURCES.md):

* the decoder: ``MusicgenDecoderConfig`` with 4 codebooks of 2048 codes, pad = bos =
  decoder start = 2048, the delay pattern (``build_delay_pattern_mask``), no tied
  embeddings, sinusoidal positions (2048);
* the audio encoder: EnCodec 32 kHz (facebook/encodec_32khz): upsampling ratios
  (8, 5, 4, 4) (hop 640, 50 frames/s), target bandwidth 2.2 kbps (4 quantizers of 2048
  codes), non-causal convolutions, no normalisation, no conv shortcut, mono;
* the text encoder: a T5 encoder (t5-base in the real ones, relu feed-forward), its
  tokenizer's ``model_max_length`` 512 (t5-base), and ``enc_to_dec_proj`` because the
  T5 width differs from the decoder's, as in musicgen-small (768 vs 1024); the feature
  extractor pads left (the conversion script's ``padding_side="left"``);
* the generation config: ``do_sample``, ``guidance_scale`` 3.0, ``max_length`` 1500
  (30 s at 50 frames/s), decoder start / pad 2048.

Widths and depths are tiny. Tokenizers are trained locally
(:func:`rcmg.standins.tiny_models.train_t5_tokenizer`). The output is noise.
"""

from __future__ import annotations

from pathlib import Path

# Published structure (kept).
SAMPLING_RATE = 32_000
UPSAMPLING_RATIOS = (8, 5, 4, 4)  # hop 640: 50 frames per second at 32 kHz
TARGET_BANDWIDTHS = (2.2,)  # kbps: 4 quantizers of 2048 codes (11 bits) at 50 frames/s
CODEBOOK_SIZE = 2048
NUM_CODEBOOKS = 4
PAD_TOKEN_ID = 2048  # = bos = decoder_start_token_id (the conversion script's)
MAX_POSITIONS = 2048
T5_MAX_TOKENS = 512  # t5-base tokenizer model_max_length
GENERATION_MAX_SECONDS = 30  # generation_config.max_length = 30 s x frame rate
GUIDANCE_SCALE = 3.0
# Tiny widths.
TINY_T5_WIDTH = 24
TINY_DECODER_WIDTH = 32
TINY_ENCODEC_WIDTH = 16
TINY_ENCODEC_FILTERS = 4
# Weight std of the tiny decoder (the published 0.02 at width 32 gives near-uniform logits
# that no conditioning moves): large enough that the memory changes what is sampled.
TINY_DECODER_INIT_STD = 0.3


def encodec_32khz_config(hidden_size: int, num_filters: int):
    """The EnCodec 32 kHz configuration (published values) at the given widths."""
    from transformers import EncodecConfig

    return EncodecConfig(
        sampling_rate=SAMPLING_RATE,
        audio_channels=1,
        upsampling_ratios=list(UPSAMPLING_RATIOS),
        target_bandwidths=list(TARGET_BANDWIDTHS),
        codebook_size=CODEBOOK_SIZE,
        use_causal_conv=False,
        normalize=False,
        use_conv_shortcut=False,
        hidden_size=hidden_size,
        num_filters=num_filters,
    )


def _decoder_fields(hidden_size: int, layers: int, heads: int) -> dict:
    """The decoder fields MusicGen and MusicGen-melody share (the conversion scripts'):
    4 codebooks, mono, ffn 4 x hidden, the MusicGen token ids."""
    return dict(
        vocab_size=CODEBOOK_SIZE,
        hidden_size=hidden_size,
        ffn_dim=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_codebooks=NUM_CODEBOOKS,
        max_position_embeddings=MAX_POSITIONS,
        audio_channels=1,
        pad_token_id=PAD_TOKEN_ID,
        bos_token_id=PAD_TOKEN_ID,
        tie_word_embeddings=False,
    )


def decoder_config(hidden_size: int, layers: int, heads: int, **extra):
    from transformers import MusicgenDecoderConfig

    return MusicgenDecoderConfig(**_decoder_fields(hidden_size, layers, heads), **extra)


def randomize_codebooks(codec) -> None:
    """Standard-normal code vectors in every quantizer codebook (under the torch seed).

    transformers initialises EnCodec's codebooks (``embed`` buffers) to zeros: every code
    would decode to the same audio and every clip would encode to code 0, so neither the
    generated tokens nor the adapter's training targets would mean anything. A trained
    codec has distinct code vectors; random ones keep that property."""
    import torch

    with torch.no_grad():
        for layer in codec.quantizer.layers:
            book = layer.codebook
            book.embed.copy_(torch.randn_like(book.embed))
            book.embed_avg.copy_(book.embed)
            book.cluster_size.fill_(1.0)


def set_generation_config(model, frame_rate: int) -> None:
    """The published checkpoints' generation settings."""
    gen = model.generation_config
    gen.decoder_start_token_id = PAD_TOKEN_ID
    gen.pad_token_id = PAD_TOKEN_ID
    gen.bos_token_id = PAD_TOKEN_ID
    gen.do_sample = True
    gen.guidance_scale = GUIDANCE_SCALE
    gen.max_length = GENERATION_MAX_SECONDS * frame_rate


def _tiny_t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=TINY_T5_WIDTH,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=3,
        feed_forward_proj="relu",  # t5-base (not the gated Flan-T5 variant)
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def processor(tokenizer):
    """``MusicgenProcessor``: EnCodec feature extractor (32 kHz mono, left padding, as
    published) and the T5 tokenizer."""
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    features = EncodecFeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_side="left"
    )
    return MusicgenProcessor(feature_extractor=features, tokenizer=tokenizer)


def build_tiny_musicgen(out: Path, seed: int) -> None:
    """A tiny ``MusicgenForConditionalGeneration`` (+ processor) saved into ``out``."""
    import torch
    from transformers import EncodecModel, MusicgenForCausalLM, MusicgenForConditionalGeneration

    from rcmg.standins.tiny_models import train_t5_tokenizer

    tokenizer = train_t5_tokenizer(max_length=T5_MAX_TOKENS)
    torch.manual_seed(seed)
    text_encoder = _tiny_t5(len(tokenizer))
    audio_encoder = EncodecModel(encodec_32khz_config(TINY_ENCODEC_WIDTH, TINY_ENCODEC_FILTERS))
    randomize_codebooks(audio_encoder)
    decoder = MusicgenForCausalLM(
        decoder_config(TINY_DECODER_WIDTH, 2, 2, initializer_factor=TINY_DECODER_INIT_STD)
    )
    model = MusicgenForConditionalGeneration(
        text_encoder=text_encoder, audio_encoder=audio_encoder.eval(), decoder=decoder.eval()
    ).eval()
    set_generation_config(model, int(audio_encoder.config.frame_rate))
    model.save_pretrained(out)
    processor(tokenizer).save_pretrained(out)


# MusicGen-melody (facebook/musicgen-melody; transformers
# convert_musicgen_melody_transformers.py and MusicgenMelodyConfig, config/bench/SOURCES.md):
# the same 4 x 2048 codebooks, delay pattern, EnCodec 32 kHz and t5-base, plus the chroma.
NUM_CHROMA = 12  # MusicgenMelodyConfig.num_chroma
CHROMA_LENGTH = 235  # MusicgenMelodyConfig.chroma_length (frames of 4096 at 32 kHz, ~30 s)
# MusicgenMelodyFeatureExtractor's published parameters (its preprocessor_config.json)
CHROMA_FEATURES = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "processor_class": "MusicgenMelodyProcessor",
    "feature_size": NUM_CHROMA,
    "num_chroma": NUM_CHROMA,
    "sampling_rate": SAMPLING_RATE,
    "hop_length": 4096,
    "n_fft": 16384,
    "chunk_length": 30,
    "padding_value": 0.0,
    "padding_side": "right",
    "return_attention_mask": False,
    "stem_indices": [3, 2],
}


def melody_decoder_config(hidden_size: int, layers: int, heads: int, **extra):
    """``MusicgenMelodyDecoderConfig`` as the conversion script builds it (4 codebooks,
    mono, ffn 4 x hidden) with the MusicGen decoder's token ids."""
    from transformers import MusicgenMelodyDecoderConfig

    return MusicgenMelodyDecoderConfig(**_decoder_fields(hidden_size, layers, heads), **extra)


def build_tiny_musicgen_melody(out: Path, seed: int) -> None:
    """A tiny ``MusicgenMelodyForConditionalGeneration`` (+ T5 tokenizer and the chroma
    feature extractor's ``preprocessor_config.json``) saved into ``out``.

    The feature extractor's config is written as its published JSON: transformers'
    ``MusicgenMelodyFeatureExtractor`` cannot be built without torchaudio (the family
    reads the file as a dict; rcmg.models.chroma computes the chroma)."""
    import json

    import torch
    from transformers import (
        EncodecModel,
        MusicgenMelodyConfig,
        MusicgenMelodyForCausalLM,
        MusicgenMelodyForConditionalGeneration,
    )

    from rcmg.standins.tiny_models import train_t5_tokenizer

    tokenizer = train_t5_tokenizer(max_length=T5_MAX_TOKENS)
    torch.manual_seed(seed)
    text_encoder = _tiny_t5(len(tokenizer))
    audio_encoder = EncodecModel(encodec_32khz_config(TINY_ENCODEC_WIDTH, TINY_ENCODEC_FILTERS))
    randomize_codebooks(audio_encoder)
    decoder = MusicgenMelodyForCausalLM(
        melody_decoder_config(TINY_DECODER_WIDTH, 2, 2, initializer_factor=TINY_DECODER_INIT_STD)
    )
    config = MusicgenMelodyConfig(
        text_encoder=text_encoder.config.to_dict(),
        audio_encoder=audio_encoder.config.to_dict(),
        decoder=decoder.config.to_dict(),
        num_chroma=NUM_CHROMA,
        chroma_length=CHROMA_LENGTH,
    )
    model = MusicgenMelodyForConditionalGeneration(
        config=config,
        text_encoder=text_encoder,
        audio_encoder=audio_encoder.eval(),
        decoder=decoder.eval(),
    ).eval()
    with torch.no_grad():  # the chroma projection at the decoder's init scale (post_init: 0.02)
        model.audio_enc_to_dec_proj.weight.normal_(0.0, TINY_DECODER_INIT_STD)
    set_generation_config(model, int(audio_encoder.config.frame_rate))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (Path(out) / "preprocessor_config.json").write_text(json.dumps(CHROMA_FEATURES, indent=2))


# facebook/musicgen-melody's decoder (decoder_config_from_checkpoint in
# convert_musicgen_melody_transformers.py; config/bench/SOURCES.md)
PUBLISHED_MELODY_DECODER = {"hidden_size": 1536, "layers": 48, "heads": 24}


def build_published_musicgen_melody(out: Path, seed: int) -> dict[str, int]:
    """``MusicgenMelodyForConditionalGeneration`` with facebook/musicgen-melody's published
    architecture and random weights (the CPU benchmark's, tests/benchmarks/bench_musicgen.py):
    the 48-layer 1536-wide decoder, and musicgen-small's published T5-base encoder, EnCodec
    32 kHz and generation settings (config/bench/musicgen-small: the conversion script
    loads the same t5-base and facebook/encodec_32khz). Returns parameter counts."""
    import json

    import torch
    from transformers import (
        MusicgenMelodyConfig,
        MusicgenMelodyForCausalLM,
        MusicgenMelodyForConditionalGeneration,
    )

    from rcmg.standins.real_arch import (
        build_component,
        count_parameters,
        load_component_config,
        train_tokenizers,
    )

    out = Path(out)
    if (out / "model.safetensors.index.json").is_file() or (out / "model.safetensors").is_file():
        return json.loads((out / "parameters.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    train_tokenizers("musicgen", out)
    text_encoder = build_component("musicgen", "text_encoder").eval()
    audio_encoder = build_component("musicgen", "audio_encoder").eval()
    d = PUBLISHED_MELODY_DECODER
    decoder = MusicgenMelodyForCausalLM(
        melody_decoder_config(d["hidden_size"], d["layers"], d["heads"])
    ).eval()
    config = MusicgenMelodyConfig(
        text_encoder=text_encoder.config.to_dict(),
        audio_encoder=audio_encoder.config.to_dict(),
        decoder=decoder.config.to_dict(),
        num_chroma=NUM_CHROMA,
        chroma_length=CHROMA_LENGTH,
    )
    model = MusicgenMelodyForConditionalGeneration(
        config=config, text_encoder=text_encoder, audio_encoder=audio_encoder, decoder=decoder
    ).eval()
    for key, value in load_component_config("musicgen", "generation").items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(CHROMA_FEATURES, indent=2))
    counts = {
        "text_encoder": count_parameters(text_encoder),
        "audio_encoder": count_parameters(audio_encoder),
        "decoder": count_parameters(decoder),
        "total": count_parameters(model),
    }
    (out / "parameters.json").write_text(json.dumps(counts, indent=2))
    return counts
