"""A verb's output dir: fresh, resume, refuse or overwrite — one rule for `taia eval`, `taia search`,
`taia train` and `taia run`, decided before any work and worded per verb.

    decide(out, kind, changed, overwrite=..., resume=...)   → "fresh" | "resume" | "overwrite", or a refusal
    prepare(out, kind.config, cfg, decision)                → (overwrite: old dir deleted) dir made, resolved
                                                              config written beside the output

The resolved config file marks a dir as the verb's own: a dir without it that holds anything is someone
else's and is refused, never deleted unasked. An output that is, holds or lies inside one of the verb's
inputs is refused first, whatever overwrite says (`check_apart`: every verb, `taia apply` included). A dir
another run is writing (its `taia.io.lock`) is refused too; `prepare` takes the lock before it touches
anything. `taia apply`'s outputs are whole atomic dirs instead (`taia.io.atomic`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from taia.config import config_yaml, load_mapping
from taia.errors import TaiaError
from taia.io import lock
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
    inputs: Mapping[str, object] | None = None,
) -> Decision:
    """What to do with `out`, reading only; `changed` names the keys of the saved config (a mapping) that
    keep it from being continued with the current one; `inputs` (name → path) are what `out` must keep
    apart from."""
    check_apart(out, inputs or {})
    if out.is_dir():
        lock.check_free(out)
    if overwrite:
        return "overwrite" if out.exists() else "fresh"
    if not out.exists() or not holds_anything(out):
        return "fresh"
    if kind.finished is not None and (out / kind.finished[0]).is_file():
        raise TaiaError(kind.finished[1].format(out=out))
    if kind.needs_resume is not None and not resume:
        raise TaiaError(kind.needs_resume.format(out=out))
    saved = out / kind.config
    if not saved.is_file():
        raise TaiaError(kind.foreign.format(out=out))
    keys = changed(load_mapping(saved, "saved config"))  # a bad or hostile one: one line, never a traceback
    if keys:
        raise TaiaError(kind.changed.format(out=out, keys=", ".join(keys)))
    return "resume"


def prepare(out: Path, config: str, cfg: BaseModel, decision: Decision = "resume") -> None:
    """Make `out` ready to write: locked (inside `taia.io.lock.holding`), an overwritten dir's contents
    deleted, the resolved config `cfg` written beside the output (as `config`, atomically), so a re-run
    can compare against it."""
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire(out)  # before deleting anything: two overwriting runs never both go on
    if decision == "overwrite":
        for child in out.iterdir():
            if child.name == lock.LOCK:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    write_file(out / config, config_yaml(cfg))


def holds_anything(out: Path) -> bool:
    """Whether `out` is a dir with anything in it besides a lock file (a killed run's is free to take)."""
    return out.is_dir() and any(p.name != lock.LOCK for p in out.iterdir())


def check_apart(out: str | Path, inputs: Mapping[str, object], flag: str = "--out") -> None:
    """Refuse an output that is, holds or lies inside a local input (`inputs`: name → a path or a list of
    them; None and hub ids skipped), before anything is touched: overwriting it would delete the input."""
    target = Path(out).expanduser().resolve()
    pairs = [(k, p) for k, v in inputs.items() for p in (v if isinstance(v, (list, tuple)) else [v])]
    for name, value in pairs:
        if value is None or not Path(str(value)).expanduser().exists():
            continue
        src = Path(str(value)).expanduser().resolve()
        if target == src or target in src.parents:
            raise TaiaError(f"{flag} {out} would replace the {name} input {value}")
        if src in target.parents:
            raise TaiaError(f"{flag} {out} lies inside the {name} input {value}; pick an out outside it")


def path_name(name: str) -> str:
    """`name` if it is safe as one path component of an output (a spec, variant or task name becomes a
    file or dir under `--out`), else ValueError: nothing may be written outside `--out`."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{name!r} is used as a file name under the out dir: no '/', '\\', '.' or '..'")
    return name


def check_names(names: Mapping[str, list[str]]) -> None:
    """`path_name` for each name (what → names), as a refusal naming it."""
    for what, items in names.items():
        for name in items:
            try:
                path_name(name)
            except ValueError as e:
                raise TaiaError(f"{what} {e}") from None
