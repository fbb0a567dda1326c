"""Licences and provenance of bank items (Freesound clips of FSD50K).

FSD50K's ``FSD50K.metadata/{dev,eval}_clips_info_FSD50K.json`` gives every clip a
``license`` (a Creative Commons deed URL such as
``http://creativecommons.org/licenses/by-nc/3.0/``), an ``uploader`` (the Freesound user
name) and a ``title``. :func:`normalize_license` maps the URL (or Freesound's licence
names, "Attribution Noncommercial", "Creative Commons 0", ...) to one of
:data:`LICENSE_CLASSES` plus the version; :func:`item_provenance` is what every report and
``ATTRIBUTION.md`` list per bank item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CC0 = "CC0"
CC_BY = "CC-BY"
CC_BY_NC = "CC-BY-NC"
SAMPLING_PLUS = "Sampling+"
UNKNOWN = "unknown"
LICENSE_CLASSES = (CC0, CC_BY, CC_BY_NC, SAMPLING_PLUS, UNKNOWN)
# Classes whose terms forbid commercial use of the material (Sampling+ allows sampling
# in a new work, commercially too, but not advertising; only NC is flagged).
NON_COMMERCIAL = frozenset({CC_BY_NC})
# Classes whose terms require crediting the author.
NEEDS_ATTRIBUTION = frozenset({CC_BY, CC_BY_NC, SAMPLING_PLUS})

FREESOUND_SOUND_URL = "https://freesound.org/s/{clip_id}/"

_URL_RE = re.compile(
    r"creativecommons\.org/(?P<kind>licenses|publicdomain)/(?P<code>[a-z0-9+\-]+)"
    r"(?:/(?P<version>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_URL_CODES = {
    "zero": CC0,
    "by": CC_BY,
    "by-nc": CC_BY_NC,
    "sampling+": SAMPLING_PLUS,
    "sampling-plus": SAMPLING_PLUS,
}
# Freesound's licence names (API field ``license`` and the site's labels).
_NAMES = {
    "creative commons 0": CC0,
    "cc0": CC0,
    "cc0 1.0": CC0,
    "attribution": CC_BY,
    "cc-by": CC_BY,
    "cc by": CC_BY,
    "attribution noncommercial": CC_BY_NC,
    "attribution non-commercial": CC_BY_NC,
    "cc-by-nc": CC_BY_NC,
    "cc by-nc": CC_BY_NC,
    "sampling+": SAMPLING_PLUS,
    "sampling plus": SAMPLING_PLUS,
}
_DEFAULT_VERSION = {CC0: "1.0", SAMPLING_PLUS: "1.0"}


@dataclass(frozen=True)
class License:
    """A normalised licence: class, version ('' when unknown) and the raw value."""

    cls: str
    version: str
    raw: str

    @property
    def label(self) -> str:
        return f"{self.cls} {self.version}" if self.version and self.cls != UNKNOWN else self.cls

    @property
    def non_commercial(self) -> bool:
        return self.cls in NON_COMMERCIAL

    @property
    def deed_url(self) -> str:
        """The deed URL for the class and version ('' when unknown)."""
        if self.cls == UNKNOWN or not self.version:
            return ""
        path = {
            CC0: "publicdomain/zero",
            CC_BY: "licenses/by",
            CC_BY_NC: "licenses/by-nc",
            SAMPLING_PLUS: "licenses/sampling+",
        }[self.cls]
        return f"https://creativecommons.org/{path}/{self.version}/"


def normalize_license(value) -> License:
    """``'http://creativecommons.org/licenses/by-nc/3.0/'`` -> License('CC-BY-NC', '3.0')."""
    raw = "" if value is None else str(value).strip()
    if not raw:
        return License(UNKNOWN, "", raw)
    match = _URL_RE.search(raw)
    if match:
        cls = _URL_CODES.get(match.group("code").lower())
        if cls is None:
            return License(UNKNOWN, "", raw)
        version = match.group("version") or _DEFAULT_VERSION.get(cls, "")
        return License(cls, version, raw)
    text = " ".join(raw.replace("_", " ").split()).casefold()
    version_match = re.search(r"\s(\d+\.\d+)$", text)
    version = ""
    if version_match and text[: version_match.start()] in _NAMES:
        version = version_match.group(1)
        text = text[: version_match.start()]
    cls = _NAMES.get(text)
    if cls is None:
        return License(UNKNOWN, "", raw)
    return License(cls, version or _DEFAULT_VERSION.get(cls, ""), raw)


def check_classes(classes, source: str) -> tuple[str, ...]:
    """Validate a list of licence class names (config / filter values)."""
    bad = [c for c in classes if c not in LICENSE_CLASSES]
    if bad:
        raise ValueError(
            f"{source}: unknown licence class(es) {', '.join(map(repr, bad))}; "
            f"valid: {', '.join(LICENSE_CLASSES)}"
        )
    return tuple(classes)


def clip_id(row: dict) -> str:
    """The dataset's clip id of a mapping row (FSD50K: the Freesound sound id = fname)."""
    source_id = str(row.get("source_id") or str(row.get("segment_id", "")).split("@")[0])
    return source_id.rsplit("/", 1)[-1]


def source_url(row: dict) -> str:
    """The clip's public page (Freesound for FSD50K rows; '' for other datasets)."""
    if (row.get("dataset") or "") != "fsd50k":
        return ""
    cid = clip_id(row)
    return FREESOUND_SOUND_URL.format(clip_id=cid) if cid.isdigit() else ""


PROVENANCE_FIELDS = (
    "row",
    "segment_id",
    "clip_id",
    "offset_s",
    "score",
    "weight",
    "labels",
    "title",
    "uploader",
    "license",
    "license_class",
    "license_version",
    "license_url",
    "source_url",
)


def item_provenance(hit: dict, mapping_row: dict | None) -> tuple[dict, list[str]]:
    """One used bank item (an items.jsonl ``retrieved`` entry joined with its bank
    mapping row) and the warnings about metadata it lacks."""
    warnings = []
    meta = mapping_row or {}
    segment_id = str(hit.get("segment_id") or meta.get("segment_id") or "")
    if mapping_row is None:
        warnings.append(f"bank row {hit.get('row')} ({segment_id}) not in the bank mapping")
    elif str(meta.get("segment_id", "")) != segment_id:
        warnings.append(
            f"bank row {hit.get('row')}: items.jsonl says {segment_id}, the bank mapping "
            f"says {meta.get('segment_id')} (the bank changed after generation)"
        )
    lic = normalize_license(meta.get("license"))
    if mapping_row is not None and "license" not in meta:
        warnings.append(
            f"{segment_id}: the bank mapping has no licence fields (segments cut before "
            "licences were carried; rerun segment)"
        )
    elif mapping_row is not None and lic.cls == UNKNOWN:
        warnings.append(f"{segment_id}: licence {lic.raw!r} unknown (no clips_info entry?)")
    if mapping_row is not None and (meta.get("dataset") == "fsd50k") and not meta.get("uploader"):
        warnings.append(f"{segment_id}: no uploader recorded")
    offset = meta.get("offset_s")
    if offset is None and "@" in segment_id:
        try:
            offset = float(segment_id.rsplit("@", 1)[1])
        except ValueError:
            offset = None
    row = {
        "row": hit.get("row"),
        "segment_id": segment_id,
        "clip_id": clip_id({**meta, "segment_id": segment_id}),
        "offset_s": offset,
        "score": hit.get("score"),
        "weight": hit.get("weight"),
        "labels": list(hit.get("tags") or meta.get("tags") or []),
        "title": str(meta.get("title") or ""),
        "uploader": str(meta.get("uploader") or ""),
        "license": lic.raw,
        "license_class": lic.cls,
        "license_version": lic.version,
        "license_url": lic.deed_url or lic.raw,
        "source_url": source_url({**meta, "segment_id": segment_id}),
    }
    return row, warnings


def license_counts(used: list[dict]) -> dict[str, int]:
    """Distinct clips per licence class among the used items."""
    seen: dict[str, str] = {}
    for item in used:
        seen.setdefault(item["clip_id"] or item["segment_id"], item["license_class"])
    return {cls: sum(1 for v in seen.values() if v == cls) for cls in LICENSE_CLASSES}


def _md(text) -> str:
    """A Markdown table cell (pipes escaped, one line)."""
    return _line(text).replace("|", "\\|")


def _line(text) -> str:
    return " ".join(str(text).split())


def attribution_markdown(
    run_title: str, used_by_item: dict[str, list[dict]], warnings, model_license=None
) -> str:
    """ATTRIBUTION.md: every distinct source clip the run's outputs were conditioned on,
    and the generator weights' licence where the run recorded one (run_config.json
    ``model_license``)."""
    clips: dict[str, dict] = {}
    for item, used in used_by_item.items():
        for entry in used:
            key = entry["clip_id"] or entry["segment_id"]
            clip = clips.setdefault(key, {**entry, "outputs": [], "windows": set()})
            clip["outputs"].append(item)
            if entry.get("offset_s") is not None:
                clip["windows"].add(float(entry["offset_s"]))
    lines = [f"# Attribution: {run_title}", ""]
    if not clips:
        lines += [
            "The outputs of this run were not conditioned on any bank item (no retrieved "
            "style or tags); nothing to attribute.",
            "",
        ]
    else:
        counts = license_counts([c for c in clips.values()])
        summary = ", ".join(f"{n} {cls}" for cls, n in counts.items() if n)
        lines += [
            f"The audio of this run was generated by a model conditioned on {len(clips)} "
            f"source clip(s) ({summary}). The source material was transformed: clips were "
            "cut into windows, embedded with CLAP and used as a style/tag conditioning "
            "signal; no source audio is contained verbatim in the outputs (see the copy "
            "audit where run).",
            "",
        ]
        if any(c["license_class"] in NON_COMMERCIAL for c in clips.values()):
            lines += [
                "**Non-commercial material:** some source clips are CC BY-NC; outputs "
                "derived from them may not be used commercially.",
                "",
            ]
        lines += [
            "| clip | title | author | source | licence | windows (s) | outputs |",
            "|---|---|---|---|---|---|---|",
        ]
        for key in sorted(clips):
            c = clips[key]
            lic = f"[{c['license_class']} {c['license_version']}]({c['license_url']})"
            if not c["license_url"]:
                lic = _md(c["license_class"])
            windows = ", ".join(f"{w:g}" for w in sorted(c["windows"]))
            outs = ", ".join(sorted(set(map(str, c["outputs"]))))
            lines.append(
                f"| {_md(key)} | {_md(c['title']) or 'n/a'} | {_md(c['uploader']) or 'n/a'} "
                f"| {c['source_url'] or 'n/a'} | {lic} | {windows} | {_md(outs)} |"
            )
        lines += [
            "",
            'Credit line for CC BY / Sampling+ clips: "<title>" by <author> '
            "(<source>), licensed under <licence>; transformed (windowed, embedded and used "
            "as conditioning for generated audio).",
            "",
        ]
        for key in sorted(clips):
            c = clips[key]
            if c["license_class"] in NEEDS_ATTRIBUTION:
                lines.append(
                    f'- "{_line(c["title"]) or key}" by {_line(c["uploader"]) or "unknown"} '
                    f"({c['source_url'] or 'source unknown'}), licensed under "
                    f"{c['license_class']} {c['license_version']}; transformed."
                )
        lines.append("")
    if model_license:
        lic = model_license
        lines += [
            "## Generator weights",
            "",
            f"The model that generated this audio is licensed {lic.get('license', 'unknown')} "
            f"({lic.get('url') or 'no URL recorded'}; {_line(lic.get('source') or 'source not recorded')})"
            + (f": {_line(lic['note'])}." if lic.get("note") else "."),
            "",
        ]
    if warnings:
        lines += ["## Metadata warnings", ""] + [f"- {_md(w)}" for w in warnings] + [""]
    return "\n".join(lines)
