"""A verb's output dir: fresh, resume, refuse or overwrite — one rule for `taia eval`, `taia search`,
`taia train` and `taia run`, decided before any work and worded per verb.

    decide(out, kind, changed, overwrite=..., resume=...)   → "fresh" | "resume" | "overwrite", or a refusal
    prepare(out, kind.config, cfg, decision)                → (overwrite: old dir deleted) dir made, resolved
                                                              config written beside the output

The resolved config file marks a dir as the verb's own: a dir without it that holds anything is someone
else's and is refused, never deleted unasked. `taia apply`'s outputs are whole atomic dirs instead
(`taia.io.atomic`). Exercised by tests/test_eval.py, tests/test_search.py, tests/test_train.py and
tests/test_run.py (their refusal messages).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from taia.config import config_yaml, safe_yaml
from taia.errors import TaiaError
from taia.io.atomic import write_file

Decision = Literal["fresh", "resume", "overwrite"]


@dataclass(frozen=True)
class OutputKind:
    """One verb's output dir: its resolved config's file name and its refusals (`{out}`, `{keys}` filled).

    `finished` (a file name) marks an output that is done and only overwrite replaces; `needs_resume`,
    when set, is the refusal for continuing without the resume flag (training continues only when asked:
    a re-run with the same config that resumes by itself is what eval and search want)."""

    config: str
    foreign: str  # a dir that holds something, but not this verb's config
    changed: str  # the saved config differs in {keys}
    finished: tuple[str, str] | None = None  # (marker file, refusal)
    needs_resume: str | None = None


def decide(
    out: Path,
    kind: OutputKind,
    changed: Callable[[dict[str, Any]], list[str]],
    overwrite: bool,
    resume: bool = False,
) -> Decision:
    """What to do with `out`, reading only; `changed` names the keys of the saved config (a mapping) that
    keep it from being continued with the current one."""
    if overwrite:
        return "overwrite" if out.exists() else "fresh"
    if not out.exists() or not any(out.iterdir()):
        return "fresh"
    if kind.finished is not None and (out / kind.finished[0]).is_file():
        raise TaiaError(kind.finished[1].format(out=out))
    if kind.needs_resume is not None and not resume:
        raise TaiaError(kind.needs_resume.format(out=out))
    saved = out / kind.config
    if not saved.is_file():
        raise TaiaError(kind.foreign.format(out=out))
    keys = changed(safe_yaml(saved.read_text()) or {})
    if keys:
        raise TaiaError(kind.changed.format(out=out, keys=", ".join(keys)))
    return "resume"


def prepare(out: Path, config: str, cfg: BaseModel, decision: Decision = "resume") -> None:
    """Make `out` ready to write: an overwritten dir is deleted first; the resolved config `cfg` is
    written beside the output (as `config`, atomically), so a re-run can compare against it."""
    if decision == "overwrite" and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / config, config_yaml(cfg))
