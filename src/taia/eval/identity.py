"""What produced a stored answer, as one short hash per row: `identity` in OUT/samples/<variant>/<task>.jsonl.

A resumed `taia eval` reuses a stored answer only when its identity is the one the run would give it now,
and answers it again otherwise. The identity covers
- the variant: its spec as resolved (the λ per group, layer ranges, overrides; not its name or file), and
  the weights it is made of: the base's, plus the fine-tune's when the spec keeps any of it (`base` is the
  base model whatever fine-tune is loaded), each by `weights_digest`;
- the request as sent: the rendered prompt (chat template applied) and the generation budget, or a choice
  request's context, option texts and normalisation.
So an edited spec file kept under its name, an edited question or option, or a fine-tune replaced in place
each give new identities. A `loracl` row is its chosen variant's row, identity included
(`taia.eval.loracl.stale` says when one must be routed again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

from taia.eval.protocol import Choice, Generation
from taia.spec import TaiaSpec

_WHOLE = 16 << 20  # files up to this size are hashed whole: an adapter, configs, tokenizer files
_WINDOW = 64 << 10  # bytes read at each sample point of a bigger file
_POINTS = 16  # evenly spaced sample points per bigger file (first and last byte included)
_SKIPPED = (".md", ".jsonl", ".log", ".png", ".html", ".csv")  # notes and logs beside weights: not read


def weights_digest(folder: Path) -> str:
    """A fingerprint of the files a model dir is loaded from (its top-level files but notes and logs),
    cheap on a checkpoint of many GB: every file's name and size; a file up to 16 MiB (an adapter, configs,
    tokenizers) hashed whole; a bigger one (a checkpoint shard) by its safetensors header (every tensor's
    name, dtype, shape and offsets) and 16 evenly spaced 64 KiB windows of its bytes. Retraining moves
    nearly every weight, so a fine-tune rewritten in place changes the windows; only an edit confined to
    bytes no window reads (a few tensors of a big shard) could go unseen."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_SKIPPED)):
        size = path.stat().st_size
        h.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as f:
            if size <= _WHOLE:
                h.update(f.read())
                continue
            if path.suffix == ".safetensors":
                (length,) = struct.unpack("<Q", f.read(8))
                h.update(f.read(min(length, _WHOLE)))
            for point in range(_POINTS):
                f.seek((size - _WINDOW) * point // (_POINTS - 1))
                h.update(f.read(_WINDOW))
    return h.hexdigest()


def variant_digest(spec: TaiaSpec, base: str, finetune: str | None) -> str:
    """The variant a spec makes of these weights (digests from `weights_digest`); its name is not part."""
    resolved = spec.model_dump(mode="json", by_alias=True, exclude={"name", "description"})
    made_of = [base, finetune if spec.keeps_anything() else None]
    return _hash(json.dumps([resolved, made_of], sort_keys=True))


def of(variant: str, request: Generation | Choice) -> str:
    """The identity of the answer `variant` (a `variant_digest`) gives to `request`."""
    sent = {"type": type(request).__name__, **dataclasses.asdict(request)}
    return _hash(variant + "\n" + json.dumps(sent, sort_keys=True, ensure_ascii=False))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]  # 64 bits: per sample, collisions are moot
