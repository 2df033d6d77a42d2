"""The schema of a task YAML: what a built-in task file (`taia/eval/tasks/*.yaml`) may say.

`TaskSpec` is one such file; `taia.eval.tasks.custom.CustomTaskSpec` extends it for a user's own task file
(a field map instead of a Python hook, data beside the file). Exercised by `taia eval --tasks gsm8k` and
tests/test_tasks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from taia.eval.task import Kind, Sample, Task
from taia.eval.tasks.hooks import HOOKS, Source
from taia.io.rows import ENV_DATA_DIR, Row

__all__ = ["DataSource", "HubSource", "TaskSpec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """The Hugging Face dataset used when the local files are absent."""

    id: str
    subset: str | None = None  # the config name; may contain `{subset}`
    split: str
    rename: dict[str, str] = {}  # local field name -> hub field name, applied to hub rows before the hook


class DataSource(_Strict):
    files: list[str]  # relative to the data root; may contain `{subset}`
    reader: str | None = None  # a `hooks.READERS` name for files `read_rows` cannot parse
    hub: HubSource | None = None


class TaskSpec(_Strict):
    """One task YAML, as written."""

    name: str
    kind: Kind
    description: str
    data: DataSource
    hook: str
    max_new_tokens: int
    aggregate: Literal["micro", "macro"] = "micro"
    aliases: list[str] = []
    subsets: list[str] = []

    def task(self, subset: str | None = None) -> Task:
        if subset is None:
            return Task(self.name, self.kind, self.description, self.max_new_tokens, self.aggregate)
        description = f"{self.description} Only the {subset!r} subset."
        return Task(f"{self.name}:{subset}", self.kind, description, self.max_new_tokens, "micro")

    def samples(self, rows: list[Row], src: Source) -> list[Sample]:
        """The rows of one file (or hub split) as samples, by the task's hook."""
        return HOOKS.get(self.hook)(rows, src)

    def files_root(self, data_root: Path | None) -> Path | None:
        """The folder `data.files` are relative to: the data root for built-in tasks."""
        return data_root

    def check_file(self, rel: str, path: Path) -> None:
        """Refuse a data file the task may not read (a user's task file: `CustomTaskSpec`)."""

    def where(self, root: Path | None) -> str:
        """Where the files were looked for, and how to point elsewhere (for the not-found error)."""
        how = f"pass --data-dir or set {ENV_DATA_DIR}"
        if root is None:
            return f"(no data root is set: {how})"
        state = "" if root.is_dir() else ", which does not exist"
        return f"under the data root {root}{state} ({how} to change it)"
