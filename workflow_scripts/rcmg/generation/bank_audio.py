"""A bank row's audio: its 16 kHz segment window, for families that condition on the
retrieved items' audio (``ModelFamily.bank_audio``), not only on their vectors.

The bank mapping's rows carry the segment shard and row of each item (``shard``,
``shard_row``, written by build_bank); the windows are the bank dataset's segment shards
(``<segments_root>/<shard>/audio_16k.npy``), the same arrays the style adapter trains on
(:func:`rcmg.generation.adapter_training.load_segment_audio`). Nothing is opened before
the first read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcmg.generation.conditioning import OptionError

SAMPLE_RATE = 16000  # segment.sr_gen: the generation-rate window of every segment


class BankAudio:
    """Reads bank rows' 16 kHz windows from the segment shards (memory-mapped, cached)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, mapping: list[dict], segments_root: str | Path):
        self.mapping = mapping
        self.segments_root = Path(segments_root)
        self._arrays: dict[str, np.ndarray] = {}

    def window(self, row: int) -> np.ndarray:
        """Bank row ``row``'s whole 16 kHz window ``[samples]`` (float32)."""
        if not 0 <= int(row) < len(self.mapping):
            raise OptionError(
                f"bank row {row} is outside the bank mapping ({len(self.mapping)} rows)"
            )
        meta = self.mapping[int(row)]
        if meta.get("shard") is None or meta.get("shard_row") is None:
            raise OptionError(
                f"bank mapping row {row} ({meta.get('segment_id')}) has no shard/shard_row: "
                "the model conditions on the retrieved items' audio; rebuild the bank with "
                "build_bank (its rows carry them)"
            )
        shard = str(meta["shard"])
        if shard not in self._arrays:
            path = self.segments_root / shard / "audio_16k.npy"
            if not path.is_file():
                raise OptionError(
                    f"{path} does not exist (bank item {meta.get('segment_id')}); pass "
                    "--segments-root the folder holding the bank dataset's segment shards"
                )
            self._arrays[shard] = np.load(path, mmap_mode="r")
        return np.asarray(self._arrays[shard][int(meta["shard_row"])], dtype=np.float32)


def default_segments_root(bank: str | Path, mapping: list[dict]) -> Path:
    """The workflow layout: ``<processed>/bank/style_bank.npy`` and the bank dataset's
    shards in ``<processed>/<dataset>/segments/`` (as the style adapter's job finds them)."""
    from rcmg.generation.adapter_job import default_segments_root as found

    return found(Path(bank), mapping)
