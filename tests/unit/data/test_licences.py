"""Licence normalisation on the URL and name forms FSD50K / Freesound use; ATTRIBUTION.md."""

from __future__ import annotations

import pytest
from rcmg.data.licences import (
    attribution_markdown,
    item_provenance,
    license_counts,
    normalize_license,
    source_url,
)
from rcmg.standins.demo_corpus import FSD_LICENSES


@pytest.mark.parametrize(
    ("value", "cls", "version"),
    [
        # the four URL forms in FSD50K's clips_info (also what the demo corpus writes)
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0", "1.0"),
        ("http://creativecommons.org/licenses/by/3.0/", "CC-BY", "3.0"),
        ("http://creativecommons.org/licenses/by-nc/3.0/", "CC-BY-NC", "3.0"),
        ("http://creativecommons.org/licenses/sampling+/1.0/", "Sampling+", "1.0"),
        # newer Freesound uploads, https and no trailing slash
        ("https://creativecommons.org/licenses/by/4.0/", "CC-BY", "4.0"),
        ("https://creativecommons.org/licenses/by-nc/4.0", "CC-BY-NC", "4.0"),
        ("HTTP://CreativeCommons.org/publicdomain/zero/1.0/legalcode", "CC0", "1.0"),
        # Freesound API / site names
        ("Creative Commons 0", "CC0", "1.0"),
        ("Attribution", "CC-BY", ""),
        ("Attribution Noncommercial", "CC-BY-NC", ""),
        ("Attribution 4.0", "CC-BY", "4.0"),
        ("Sampling+", "Sampling+", "1.0"),
        # not recognised / missing
        ("", "unknown", ""),
        (None, "unknown", ""),
        ("http://creativecommons.org/licenses/by-sa/3.0/", "unknown", ""),
        ("all rights reserved", "unknown", ""),
    ],
)
def test_normalize_license(value, cls, version):
    lic = normalize_license(value)
    assert (lic.cls, lic.version) == (cls, version)


def test_demo_corpus_licences_cover_every_class():
    classes = {normalize_license(u).cls for u in FSD_LICENSES}
    assert classes == {"CC0", "CC-BY", "CC-BY-NC", "Sampling+"}
    assert normalize_license(FSD_LICENSES[2]).label == "CC-BY-NC 3.0"
    assert normalize_license(FSD_LICENSES[2]).non_commercial
    assert normalize_license(FSD_LICENSES[1]).deed_url == (
        "https://creativecommons.org/licenses/by/3.0/"
    )


def test_source_url_is_the_freesound_page_of_fsd50k_clips_only():
    assert source_url({"dataset": "fsd50k", "source_id": "fsd50k/FSD50K.dev_audio/64760"}) == (
        "https://freesound.org/s/64760/"
    )
    assert source_url({"dataset": "maestro", "source_id": "maestro/2004/x"}) == ""


def _mapping(clip="64760", offset=10.0, lic="http://creativecommons.org/licenses/by/3.0/"):
    return {
        "row": 3,
        "segment_id": f"fsd50k/FSD50K.dev_audio/{clip}@{offset:.3f}",
        "source_id": f"fsd50k/FSD50K.dev_audio/{clip}",
        "dataset": "fsd50k",
        "offset_s": offset,
        "tags": ["Rain"],
        "title": "rain | on the skylight",
        "license": lic,
        "uploader": "fieldrec_anna",
    }


def test_item_provenance_joins_hit_and_mapping_and_warns_on_gaps():
    row = _mapping()
    hit = {"row": 3, "segment_id": row["segment_id"], "score": 0.8, "tags": ["Rain"]}
    record, warnings = item_provenance(hit, row)
    assert warnings == []
    assert record["clip_id"] == "64760" and record["offset_s"] == 10.0
    assert record["license_class"] == "CC-BY" and record["license_version"] == "3.0"
    assert record["uploader"] == "fieldrec_anna" and record["score"] == 0.8
    assert record["source_url"] == "https://freesound.org/s/64760/"
    old = {k: v for k, v in row.items() if k not in ("license", "uploader", "title")}
    record, warnings = item_provenance(hit, old)
    assert record["license_class"] == "unknown"
    assert any("no licence fields" in w for w in warnings)
    record, warnings = item_provenance(hit, None)
    assert record["offset_s"] == 10.0 and any("not in the bank mapping" in w for w in warnings)


def test_attribution_lists_each_clip_once_with_credit_line_and_transformation_note():
    by = _mapping()
    nc = _mapping(clip="1234", offset=0.0, lic="http://creativecommons.org/licenses/by-nc/3.0/")
    cc0 = _mapping(clip="99", lic="http://creativecommons.org/publicdomain/zero/1.0/")
    used = {}
    for name, rows in (("0000.wav", [by, nc]), ("0001.wav", [by, cc0])):
        used[name] = [item_provenance({"row": 0, **r, "score": 0.5}, r)[0] for r in rows]
    text = attribution_markdown("m / retrieval / seed 0", used, ["clip 5: no uploader"])
    assert license_counts([u for v in used.values() for u in v]) == {
        "CC0": 1,
        "CC-BY": 1,
        "CC-BY-NC": 1,
        "Sampling+": 0,
        "unknown": 0,
    }
    table = [line for line in text.splitlines() if line.startswith("| ") and "freesound" in line]
    assert len(table) == 3  # one row per distinct clip
    row_by = next(line for line in table if line.startswith("| 64760 "))
    assert "0000.wav, 0001.wav" in row_by and "rain \\| on the skylight" in row_by
    assert "[CC-BY 3.0](https://creativecommons.org/licenses/by/3.0/)" in row_by
    assert "transformed" in text and "Non-commercial" in text
    credit = [line for line in text.splitlines() if line.startswith('- "')]
    assert len(credit) == 2  # CC-BY and CC-BY-NC need credit, CC0 does not
    assert '"rain | on the skylight" by fieldrec_anna (https://freesound.org/s/64760/)' in (
        credit[1] + credit[0]
    )
    assert "## Metadata warnings" in text and "no uploader" in text
    empty = attribution_markdown("m / prompt / seed 0", {}, [])
    assert "nothing to attribute" in empty
