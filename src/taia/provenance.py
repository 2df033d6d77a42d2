"""taia_report.json: what went in, which spec, and exactly what was kept, reverted, scaled or dropped.

Exercised by every `taia apply`; see tests/test_apply_checkpoint.py for its contents.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from taia.io.checkpoint import sha256_files
from taia.spec import TaiaSpec

REPORT = "taia_report.json"
_LIBS = ("taia", "torch", "transformers", "peft", "safetensors", "pydantic")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for lib in _LIBS + extra:
        # An imported module knows its version for free; package metadata costs a few ms per lookup.
        version = getattr(sys.modules.get(lib), "__version__", None)
        try:
            out[lib] = version if isinstance(version, str) else metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def describe_input(path: Path, config_name: str = "config.json", index: str | None = None) -> dict[str, Any]:
    """Path plus hashes of the small files that identify a model (its config, its shard index)."""
    info: dict[str, Any] = {"path": str(path)}
    if (path / config_name).is_file():
        info[f"{config_name}_sha256"] = sha256_files([path / config_name])
    if index and (path / index).is_file():
        info[f"{index}_sha256"] = sha256_files([path / index])
    return info


def build_report(
    kind: str, inputs: dict[str, Any], spec: TaiaSpec, groups: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    notes = {"extrapolated": spec.extrapolated()} if spec.extrapolated() else {}
    return {
        "kind": kind,
        "inputs": inputs,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "groups": groups,
        **extra,
        **notes,  # λ outside [0, 1], by group or override pattern
        "versions": versions(),
    }


def write_report(out: Path, report: dict[str, Any], extra_files: Mapping[str, str] | None = None) -> None:
    """The report, plus any small text files the caller wants inside the same atomic output."""
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    for name, text in (extra_files or {}).items():
        (out / name).write_text(text)
