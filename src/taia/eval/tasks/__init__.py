"""The task registry: YAML definitions (`*.yaml` beside this file), task files, and loading their samples.

Each YAML names its scoring kind, its local files (relative to the data root) and a hub fallback, and the hook
in `hooks.py` that turns rows into `Sample`s. Tasks split into per-file subsets (BBH subtasks, MMLU subjects)
list them under `subsets:` and write `{subset}` in their file and hub config names; one subset alone is the
task `name:subset` (e.g. `bbh:date_understanding`, `mmlu:anatomy`), whose samples keep the ids they have in
the whole task. A task reference ending in `.yaml` is a user's own task file (`custom.py`), keyed in results
by its `name:` (`task_key`). Exercised by `taia eval --tasks gsm8k,csqa,bbh:navigate,my_task.yaml` and
tests/test_tasks.py, tests/test_custom_tasks.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from taia.config import safe_yaml
from taia.errors import TaiaError
from taia.eval.task import Sample, Task
from taia.eval.tasks.custom import is_task_file, load_task_file
from taia.eval.tasks.hooks import HOOKS, READERS, Source
from taia.eval.tasks.schema import DataSource, HubSource, TaskSpec
from taia.io.rows import Row, load_hub_rows, read_rows
from taia.registry import Registry, did_you_mean

__all__ = [
    "TASKS", "DataSource", "HubSource", "TaskSpec", "get_task", "load_samples", "subset_names",
    "task_family", "task_key", "task_keys", "task_names",
]  # fmt: skip


def _load_specs() -> Registry[TaskSpec]:
    registry: Registry[TaskSpec] = Registry("task")
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            spec = TaskSpec.model_validate(safe_yaml(entry.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValidationError) as e:
            raise TaiaError(f"task definition {entry.name}: {e}") from None
        HOOKS.get(spec.hook)  # fail at import on a typo, with "did you mean"
        if spec.data.reader:
            READERS.get(spec.data.reader)
        for name in (spec.name, *spec.aliases):
            registry.add(name, spec)
    return registry


TASKS = _load_specs()  # canonical names and aliases (csqa → commonsenseqa)


def task_names() -> list[str]:
    """Canonical task names (no aliases, no `name:subset` forms), sorted."""
    return sorted(name for name in TASKS if TASKS.get(name).name == name)


def subset_names(task_name: str) -> list[str]:
    """The per-file subsets of a task (BBH subtasks, MMLU subjects); [] for tasks without them."""
    return list(TASKS.get(task_name.partition(":")[0]).subsets)


def _resolve(task_name: str) -> tuple[TaskSpec, str | None]:
    if is_task_file(task_name):
        whole = task_name.lower().endswith((".yaml", ".yml"))  # else `file.yaml:subset`
        file, colon, subset = (task_name, "", "") if whole else task_name.rpartition(":")
        spec: TaskSpec = load_task_file(Path(file).expanduser(), list(TASKS))
    else:
        base, colon, subset = task_name.partition(":")
        spec = TASKS.get(base)
    if not colon:
        return spec, None
    if not spec.subsets:
        raise TaiaError(f"task {spec.name!r} has no subsets; use {spec.name!r} without ':{subset}'")
    if subset not in spec.subsets:
        raise did_you_mean(subset, spec.subsets, f"{spec.name} subset")
    return spec, subset


def get_task(name: str) -> Task:
    """The task called `name` (an alias, `task:subset` for one BBH subtask / MMLU subject, or a task file)."""
    spec, subset = _resolve(name)
    return spec.task(subset)


def task_key(ref: str) -> str:
    """What results are keyed by: the reference as given, except a task file's `name:` (not its path).
    Unknown names and malformed task files fail here."""
    task = get_task(ref)
    return task.name if is_task_file(ref) else ref


def task_keys(refs: list[str]) -> dict[str, str]:
    """Each reference's key; two references with one key (two files named alike) are refused."""
    keys: dict[str, str] = {}
    for ref in refs:
        key = task_key(ref)
        clash = next((r for r, k in keys.items() if k == key), None)
        if clash is not None:
            raise TaiaError(f"tasks {clash!r} and {ref!r} are both named {key!r}; rename one (its name:)")
        keys[ref] = key
    return keys


def task_family(ref: str) -> str:
    """A task's canonical name without its subset: `bbh:navigate` and `bbh` share sample ids."""
    return _resolve(ref)[0].name


def load_samples(
    task_name: str,
    root: Path | None,
    limit: int | None = None,
    seed: int = 0,
    exclude: frozenset[str] = frozenset(),
    keep: Callable[[Sample], bool] | None = None,
) -> list[Sample]:
    """A task's samples, from its files under `root` (the data root) or else from its hub dataset.

    `limit` keeps a seeded random subset in file order (see `_subsample`); the same seed gives the same one.
    Samples whose id is in `exclude` are dropped first (`taia search` carves its dev split out this way),
    and so are those `keep` rejects (persona: its training prompts), in one read of the data.
    """
    spec, subset = _resolve(task_name)
    subsets: list[str | None] = [subset] if subset else list(spec.subsets) or [None]
    samples: list[Sample] = []
    for rows, src in _sources(spec, subsets, spec.files_root(root)):
        samples.extend(spec.samples(rows, src))
    samples = [s for s in samples if s.id not in exclude and (keep is None or keep(s))]
    if limit is not None:
        samples = _subsample(samples, limit, seed, spec.aggregate == "macro")
    return samples


def _sources(spec: TaskSpec, subsets: list[str | None], root: Path | None) -> list[tuple[list[Row], Source]]:
    """(rows, source) per file: all local, or else all from the hub; a partial local copy is an error."""
    wanted = [(f.format(subset=s) if s else f, s) for s in subsets for f in spec.data.files]
    found = [(root / rel, s) for rel, s in wanted if root is not None and (root / rel).is_file()]
    if found and len(found) < len(wanted):
        missing = [rel for rel, _ in wanted if root is None or not (root / rel).is_file()]
        raise TaiaError(
            f"task {spec.name!r}: {len(missing)} of its {len(wanted)} files are missing "
            f"{spec.where(root)}: {_some(missing)}"
        )
    if found:
        for (rel, _), (path, _) in zip(wanted, found, strict=True):  # all found: the same order
            spec.check_file(rel, path)
        read = READERS.get(spec.data.reader) if spec.data.reader else read_rows
        return [(read(path), Source(spec.name, str(path), s)) for path, s in found]
    return [_hub_source(spec, s, [rel for rel, _ in wanted], root) for s in subsets]


def _hub_source(
    spec: TaskSpec, subset: str | None, looked_for: list[str], root: Path | None
) -> tuple[list[Row], Source]:
    hub = spec.data.hub
    config = hub.subset if hub else None
    if config and subset:
        config = config.format(subset=subset)
    if hub is None:
        reason = "it has no hub fallback"
    else:
        try:
            rows = load_hub_rows(hub.id, hub.split, config)
        except TaiaError:
            raise
        except Exception as e:  # noqa: BLE001  # datasets raises many types; the user needs only the message
            lines = str(e).strip().splitlines()
            reason = f"the hub fallback {hub.id} ({config or 'default'}, {hub.split}) failed: "
            reason += lines[-1] if lines else type(e).__name__
        else:
            renamed = [Row(_rename(r.data, hub.rename), r.line) for r in rows]
            return renamed, Source(spec.name, f"hub:{hub.id}" + (f"/{config}" if config else ""), subset)
    where = spec.where(root)
    raise TaiaError(f"task {spec.name!r}: data not found: looked for {_some(looked_for)} {where}; {reason}")


def _rename(data: dict, rename: dict[str, str]) -> dict:
    out = dict(data)
    for local, hub in rename.items():
        if hub in out:
            out[local] = out.pop(hub)
    return out


def _some(paths: list[str], most: int = 3) -> str:
    more = f" … ({len(paths)} files)" if len(paths) > most else ""
    return ", ".join(paths[:most]) + more


def _subsample(samples: list[Sample], limit: int, seed: int, stratified: bool) -> list[Sample]:
    """`limit` samples drawn with `random.Random(seed)`, returned in their original order.

    Micro tasks: a seeded shuffle's first `limit` (so a larger limit keeps every smaller limit's samples).
    Macro tasks: stratified by subset, each keeping its share of `limit` (largest-remainder rounding, so the
    quotas sum to `limit`; with fewer than one per subset, the largest subsets get one), drawn per subset
    with a generator seeded by `seed` and the subset name.
    """
    if limit < 1:
        raise TaiaError(f"limit must be at least 1, got {limit}")
    if limit >= len(samples):
        return samples
    if not stratified:
        order = list(range(len(samples)))
        random.Random(seed).shuffle(order)
        return [samples[i] for i in sorted(order[:limit])]
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(sample.subset or "", []).append(i)
    keep: list[int] = []
    for name, quota in _quotas({k: len(v) for k, v in groups.items()}, limit).items():
        order = list(groups[name])
        random.Random(f"{seed}:{name}").shuffle(order)
        keep.extend(order[:quota])
    return [samples[i] for i in sorted(keep)]


def _quotas(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Largest-remainder apportionment of `limit` over groups in proportion to their sizes."""
    total = sum(sizes.values())
    exact = {name: limit * n / total for name, n in sizes.items()}
    quotas = {name: int(x) for name, x in exact.items()}
    by_remainder = sorted(sizes, key=lambda name: (-(exact[name] - quotas[name]), -sizes[name], name))
    for name in by_remainder[: limit - sum(quotas.values())]:
        quotas[name] += 1
    return quotas
