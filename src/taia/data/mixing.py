"""Training data: a seeded mix of sources, each read and converted to validated conversations.

Exercised by `taia train cfg.yaml` and tests/test_data.py. Every record of every source is converted and
validated up front (taia/data/formats.py: the formats and what a valid conversation is), so a bad record
stops the run before training with `file:line: what is wrong`.

Mixing (how to write the paper's Fig. 1 "20k in-domain + x % out-of-distribution"):

    data:
      - {path: alpaca_gpt4/alpaca_en_demo.json, count: 20000}   # exactly 20k rows, sampled
      - {path: ood.jsonl, ratio: 0.2}                           # 20 % of the final mix (here 5k rows)
      - extra.jsonl                                             # no count/ratio: every row

A local file may name its copy on the Hugging Face Hub (`hub: owner/name`, with `subset:` / `split:`) or on
the web (`hub: https://…/file.jsonl`), read when the file is found neither as given nor under the data root.

A source without count or ratio contributes all its rows; `count: n` samples n rows without replacement.
Ratio sources share the final mix: with `fixed` rows from the other sources, the mix has
total = fixed / (1 - sum(ratios)) rows and each ratio source gives round_half_up(ratio × total). If every
source has a ratio they must sum to 1 and the total is the largest one no source would oversample for.
Asking a source for more rows than it has is an error (never silent oversampling).
Each source is sampled with its own RNG, seeded by (seed, path, how many earlier sources share the path),
as a prefix of a seeded permutation: adding or reordering other sources never changes its sample, and a
larger count only adds rows. The mix is then shuffled with `random.Random(seed)`; `limit` keeps its first
`limit` conversations (a quick-run knob). The manifest records, per source, the resolved file and sha256,
the resolved format and the sorted indices of the rows actually in the (limited) mix.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.data.formats import CANONICAL_FIELDS, FORMATS, Conversation, convert
from taia.errors import TaiaError
from taia.io.rows import resolve_rows
from taia.registry import did_you_mean


class DataSource(BaseModel):
    """One entry of `data:` in a train config (see the module docstring for count/ratio semantics)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)  # local file (as given, or under the data root) or a hub dataset id
    hub: str | None = Field(None, pattern=r"^([\w.-]+/[\w.-]+|https://\S+)$")  # `path`'s copy, if absent
    format: str = "auto"
    columns: dict[str, str] = Field(default_factory=dict)  # canonical field -> field name in the file
    count: int | None = Field(None, gt=0)
    ratio: float | None = Field(None, gt=0, lt=1)
    system: str | None = None  # prepended to every conversation that has no system turn
    split: str = "train"  # of the hub dataset (`path` as a hub id, or `hub`)
    subset: str | None = None  # of the hub dataset (its config name)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(str(did_you_mean(v, FORMATS.names(), "data format")))
        return v

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name not in CANONICAL_FIELDS:
                raise ValueError(str(did_you_mean(name, list(CANONICAL_FIELDS), "column")))
        return v

    @model_validator(mode="after")
    def _one_size(self) -> DataSource:
        if self.count is not None and self.ratio is not None:
            raise ValueError(f"source {self.path!r}: give count or ratio, not both")
        return self


@dataclass
class Mixture:
    """The shuffled conversations to train on, and a JSON-serialisable record of how they were drawn."""

    conversations: list[Conversation]
    manifest: dict[str, Any]


@dataclass
class _Loaded:
    source: DataSource
    where: str
    sha256: str | None
    format: str
    convs: list[Conversation]


def _load(source: DataSource, root: Path | None) -> _Loaded:
    rows, where = resolve_rows(source.path, root, source.split, source.subset, source.hub)
    fmt, convs = convert(rows, where, source.format, source.columns)
    if source.system:
        turn = {"role": "system", "content": source.system}
        convs = [c if c[0]["role"] == "system" else [dict(turn), *c] for c in convs]  # no shared dicts
    local = Path(where)
    return _Loaded(source, where, _sha256(local) if local.is_file() else None, fmt, convs)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)  # 1e-9: 0.2 * 25 may come out as 4.999…


def _sizes(loaded: list[_Loaded]) -> list[int]:
    """How many rows each source contributes (count, all, or its share of the total)."""
    takes, fixed = [0] * len(loaded), 0
    for i, item in enumerate(loaded):
        if item.source.ratio is None:
            takes[i] = len(item.convs) if item.source.count is None else item.source.count
            if takes[i] > len(item.convs):
                raise TaiaError(
                    f"data {item.source.path!r}: count {takes[i]} but it has only {len(item.convs)} rows"
                )
            fixed += takes[i]
    ratios = {i: item.source.ratio for i, item in enumerate(loaded) if item.source.ratio is not None}
    if ratios:
        total = _ratio_total(loaded, ratios, fixed)
        for i, ratio in ratios.items():
            takes[i] = _half_up(ratio * total)
            if takes[i] > len(loaded[i].convs):
                raise TaiaError(
                    f"data {loaded[i].source.path!r}: ratio {ratio:g} of a total of {total:g} needs "
                    f"{takes[i]} rows but it has only {len(loaded[i].convs)} (lower the ratio or the counts)"
                )
    return takes


def _ratio_total(loaded: list[_Loaded], ratios: dict[int, float], fixed: int) -> float:
    """The size of the final mix that the ratios are shares of."""
    share = sum(ratios.values())
    if len(ratios) < len(loaded):
        if share >= 1:
            raise TaiaError(
                f"the ratios sum to {share:g}, but they are shares of a mix that also holds {fixed} rows "
                "from sources with a count (or all their rows); they must sum to less than 1"
            )
        return fixed / (1 - share)
    if abs(share - 1) > 1e-6:
        raise TaiaError(f"every source has a ratio, so the ratios must sum to 1 (they sum to {share:g})")
    # The largest total for which no source is asked for more rows than it has.
    return min(math.floor(len(loaded[i].convs) / r + 1e-9) for i, r in ratios.items())


def _sample(item: _Loaded, take: int, seed: int, occurrence: int) -> list[int]:
    """`take` row indices: a prefix of a permutation seeded by this source alone."""
    if take == len(item.convs) and item.source.count is None and item.source.ratio is None:
        return list(range(take))
    order = list(range(len(item.convs)))
    random.Random(f"{seed}:{item.source.path}:{occurrence}").shuffle(order)
    return order[:take]


def mix(sources: list[DataSource], root: Path | None, seed: int, limit: int | None = None) -> Mixture:
    """Load, convert and validate every source, then draw and shuffle the seeded mix."""
    if not sources:
        raise TaiaError("no data sources given")
    loaded = [_load(s, root) for s in sources]
    seen: dict[str, int] = {}
    picked = []
    for item, take in zip(loaded, _sizes(loaded), strict=True):
        occurrence = seen[item.source.path] = seen.get(item.source.path, -1) + 1
        picked.append(_sample(item, take, seed, occurrence))
    items = [(i, j) for i, indices in enumerate(picked) for j in indices]
    random.Random(seed).shuffle(items)
    items = items[:limit] if limit is not None else items
    if not items:
        raise TaiaError("the data mix is empty (every source contributes 0 rows)")
    manifest = _manifest(loaded, items, seed, limit)
    return Mixture([loaded[i].convs[j] for i, j in items], manifest)


def _manifest(
    loaded: list[_Loaded], items: list[tuple[int, int]], seed: int, limit: int | None
) -> dict[str, Any]:
    """What was drawn (after `limit`): enough to rebuild the mix and to check the files are unchanged."""
    chosen: list[list[int]] = [[] for _ in loaded]
    for i, j in items:
        chosen[i].append(j)
    sources = [
        {
            "path": item.source.path, "where": item.where, "sha256": item.sha256, "format": item.format,
            "available": len(item.convs), "taken": len(chosen[i]), "indices": sorted(chosen[i]),
        }
        for i, item in enumerate(loaded)
    ]  # fmt: skip
    return {"seed": seed, "total": len(items), "limit": limit, "sources": sources}
