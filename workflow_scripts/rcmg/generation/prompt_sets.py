"""Seeded template prompt sets that ask for what the reference set holds.

The real experiment's reference clips are MAESTRO (solo piano) and URMP (classical
chamber ensembles: strings, woodwinds, brass and their mixtures, instruments in
:data:`rcmg.data.sources.URMP_INSTRUMENTS`), weighted by
``evaluation.reference_composition``. Set metrics (FAD, KAD) measure how far the generated
clips are from that reference: a prompt set asking for jazz, lo-fi or ambient music would
be "far" by design. :func:`reference_prompts` draws ``n`` distinct prompts, a share
``piano_share`` for solo piano and the rest spread evenly over URMP-style ensembles, each
with a mood, a tempo, a register and a form, so that the set's content matches the
reference's. Deterministic for a seed (stdlib ``random.Random``); the CLI
``workflow_scripts/make_prompts.py`` writes it as a plain prompt file.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from rcmg.data.sources import URMP_INSTRUMENTS

PIANO = "piano"  # MAESTRO: solo piano (Yamaha Disklavier grand)

# (phrase, instruments): ensembles of URMP's kinds (duets to quintets of its instruments).
# Instruments are URMP abbreviations (URMP_INSTRUMENTS), or PIANO for MAESTRO.
ENSEMBLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a string quartet of two violins, viola and cello", ("vn", "va", "vc")),
    ("a string trio of violin, viola and cello", ("vn", "va", "vc")),
    ("a violin and cello duet", ("vn", "vc")),
    ("two violins in a duet", ("vn",)),
    ("a viola and double bass duet", ("va", "db")),
    (
        "a woodwind quintet of flute, oboe, clarinet, bassoon and horn",
        ("fl", "ob", "cl", "bn", "hn"),
    ),
    ("a flute and clarinet duet", ("fl", "cl")),
    ("an oboe and bassoon duet", ("ob", "bn")),
    ("a clarinet trio", ("cl",)),
    ("a saxophone quartet", ("sax",)),
    ("a brass quintet of two trumpets, horn, trombone and tuba", ("tpt", "hn", "tbn", "tba")),
    ("a trumpet duet", ("tpt",)),
    ("a trombone and tuba duet", ("tbn", "tba")),
    ("a horn trio", ("hn",)),
    ("a trio of flute, violin and cello", ("fl", "vn", "vc")),
    ("a quintet of clarinet, two violins, viola and cello", ("cl", "vn", "va", "vc")),
)
PIANO_PHRASES: tuple[str, ...] = ("solo piano", "a solo grand piano")
MOODS = (
    "gentle",
    "melancholic",
    "joyful",
    "dramatic",
    "playful",
    "serene",
    "tense",
    "tender",
    "majestic",
    "nostalgic",
    "lively",
    "brooding",
)
TEMPOS = (
    "at a slow tempo",
    "at a moderate tempo",
    "at a fast tempo",
    "in a flowing andante",
    "in a brisk allegro",
    "in a stately largo",
)
REGISTERS = (
    "in the low register",
    "in the middle register",
    "in the high register",
    "spanning a wide range",
    "with the melody in the upper voice",
)
FORMS = ("piece", "melody", "dance", "chorale")
# Mood x tempo pairs that contradict each other ("a lively piece at a slow tempo"): left out.
_SLOW = {"at a slow tempo", "in a stately largo"}
_FAST = {"at a fast tempo", "in a brisk allegro"}
CLASHES = {(m, t) for m in ("joyful", "playful", "lively") for t in _SLOW} | {
    (m, t) for m in ("serene", "melancholic", "tender", "brooding") for t in _FAST
}


@dataclass(frozen=True)
class TemplatePrompt:
    prompt: str
    instrumentation: str  # "piano" (MAESTRO) or "urmp"
    instruments: tuple[str, ...]
    mood: str
    tempo: str
    register: str


def _text(mood: str, form: str, who: str, tempo: str, register: str) -> str:
    article = "an" if mood[0] in "aeiou" else "a"
    return f"{article} {mood} {form} for {who}, {tempo}, {register}"


def _combos(phrases) -> list[tuple]:
    return [
        c
        for c in itertools.product(phrases, MOODS, FORMS, TEMPOS, REGISTERS)
        if (c[1], c[3]) not in CLASHES
    ]


def reference_prompts(n: int, seed: int = 0, piano_share: float = 0.5) -> list[TemplatePrompt]:
    """``n`` distinct prompts: ``round(n * piano_share)`` solo piano, the rest chamber
    ensembles (as even over :data:`ENSEMBLES` as ``n`` allows), in a seeded order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= piano_share <= 1.0:
        raise ValueError(f"piano_share must be in [0, 1], got {piano_share}")
    rng = random.Random(seed)
    n_piano = round(n * piano_share)
    piano = _combos(PIANO_PHRASES)
    per_ensemble = _combos([""])  # mood x form x tempo x register, per ensemble
    n_chamber = n - n_piano
    if n_piano > len(piano) or n_chamber > len(per_ensemble) * len(ENSEMBLES):
        raise ValueError(f"n = {n} is more than the templates' distinct prompts")
    out = [
        TemplatePrompt(_text(m, f, who, t, r), PIANO, (PIANO,), m, t, r)
        for who, m, f, t, r in rng.sample(piano, n_piano)
    ]
    base, extra = divmod(n_chamber, len(ENSEMBLES))
    extra_ensembles = set(rng.sample(range(len(ENSEMBLES)), extra))
    for e, (who, instruments) in enumerate(ENSEMBLES):
        k = base + (e in extra_ensembles)
        out += [
            TemplatePrompt(_text(m, f, who, t, r), "urmp", instruments, m, t, r)
            for _, m, f, t, r in rng.sample(per_ensemble, k)
        ]
    rng.shuffle(out)
    return out


def reference_instruments() -> set[str]:
    """Every instrument the reference datasets hold (URMP abbreviations and piano)."""
    return set(URMP_INSTRUMENTS) | {PIANO}


def prompt_file_text(prompts: list[TemplatePrompt], header: list[str]) -> str:
    """A plain prompt file: ``#`` header lines, then one prompt per line."""
    lines = [f"# {line}" for line in header] + [p.prompt for p in prompts]
    return "\n".join(lines) + "\n"
