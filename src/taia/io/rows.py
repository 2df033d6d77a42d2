"""Raw records from local data files (or the Hugging Face Hub), each with the line it starts on.

Line numbers exist so that a bad record is reported as `file:line`, before any training starts. The data
root (`--data-dir`, `TAIA_DATA_DIR`, or a `../shared/data` checkout) lets configs name files relative to
a shared data directory. Exercised by `taia train cfg.yaml` (via `taia.data.mixing.mix`) and
tests/test_data.py; evaluation reads its task files through the same functions.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taia.errors import TaiaError

ENV_DATA_DIR = "TAIA_DATA_DIR"
SUPPORTED = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".parquet", ".csv")
# Hub ids are `owner/name`; anything ending in a data-file extension is a local file that is missing.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_FILE_SUFFIXES = {".json", ".jsonl", ".gz", ".parquet", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".arrow"}
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class Row:
    """One raw record and the 1-based line of the file it starts on (row index + 1 for parquet/hub)."""

    data: dict[str, Any]
    line: int


def data_root(explicit: str | Path | None = None) -> Path | None:
    """`--data-dir` > $TAIA_DATA_DIR > ../shared/data (from cwd, then from the checkout) > None."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    for candidate in (Path.cwd() / "../shared/data", Path(__file__).resolve().parents[3] / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def find_file(path: str, root: Path | None) -> Path | None:
    """The path as given (absolute or relative to cwd) if it exists, else under the data root, else None."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    if root is not None and not given.is_absolute() and (root / given).exists():
        return root / given
    return None


def read_rows(path: Path) -> list[Row]:
    """Every record of a .json (array, or JSON lines), .jsonl, .json(l).gz, .parquet or .csv file."""
    name = path.name.lower()
    if path.is_dir():
        raise TaiaError(f"{path}: is a directory; give a data file ({', '.join(SUPPORTED)})")
    try:
        if name.endswith((".json", ".json.gz")):
            rows = _json_text(path, _read_text(path))
        elif name.endswith((".jsonl", ".jsonl.gz")):
            rows = _jsonl(path, _read_text(path).splitlines())
        elif name.endswith(".parquet"):
            rows = _parquet(path)
        elif name.endswith(".csv"):
            rows = _csv(path)
        else:
            raise TaiaError(f"{path}: unsupported file type (supported: {', '.join(SUPPORTED)})")
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise TaiaError(f"{path}: cannot read: {e}") from None
    if not rows:
        raise TaiaError(f"{path}: no rows")
    return rows


def _read_text(path: Path) -> str:
    # utf-8-sig: files saved by Windows editors start with a BOM that json would reject.
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8-sig") as f:
            return f.read()
    return path.read_text(encoding="utf-8-sig")


def _record(path: Path, line: int, obj: Any) -> Row:
    if not isinstance(obj, dict):
        raise TaiaError(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}")
    return Row(obj, line)


def _json_text(path: Path, text: str) -> list[Row]:
    """A top-level array, decoded one element at a time so each keeps its line; else JSON lines."""
    at = _skip(text, 0)
    if not text.startswith("[", at):
        # HF `datasets` accepts JSON lines under a .json name; so do we.
        return _jsonl(path, text.splitlines())
    decoder, rows = json.JSONDecoder(), list[Row]()
    pos, line, counted = at + 1, 1, 0
    while True:
        at = _skip(text, pos)
        if not rows and text.startswith("]", at):
            pos = at + 1
            break
        line, counted = line + text.count("\n", counted, at), at  # incremental: O(file) in total
        try:
            obj, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as e:
            raise TaiaError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        rows.append(_record(path, line, obj))
        pos, sep = _separator(path, text, end)
        if sep == "]":
            break
    at = _skip(text, pos)
    if at < len(text):
        raise TaiaError(f"{path}:{_line_at(text, at)}: unexpected content after the top-level array")
    return rows


def _skip(text: str, pos: int) -> int:
    """Index of the first non-whitespace character at or after `pos` (JSON's notion of whitespace)."""
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _line_at(text: str, pos: int) -> int:
    return 1 + text.count("\n", 0, pos)


def _separator(path: Path, text: str, end: int) -> tuple[int, str]:
    """Position just past the `,` or `]` that follows an array element, and which one it was."""
    at = _skip(text, end)
    sep = text[at : at + 1]
    if sep not in (",", "]"):
        raise TaiaError(
            f"{path}:{_line_at(text, at)}: invalid JSON (expected ',' or ']' after an array element)"
        )
    return at + 1, sep


def _jsonl(path: Path, lines: Iterable[str]) -> list[Row]:
    rows = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue  # blank lines (often a trailing one) are not records
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise TaiaError(f"{path}:{number}: invalid JSON ({e.msg})") from None
        rows.append(_record(path, number, obj))
    return rows


def _parquet(path: Path) -> list[Row]:
    import pyarrow as pa  # lazy: only parquet needs it
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except pa.ArrowException as e:
        raise TaiaError(f"{path}: cannot read parquet: {e}") from None
    return [Row(r, i + 1) for i, r in enumerate(records)]


def _csv(path: Path) -> list[Row]:
    """Rows keyed by the header; each keeps the physical line it starts on (quoted fields span lines)."""
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header, end = next(reader, []), reader.line_num
            for record in reader:
                start, end = end + 1, reader.line_num
                if not record:
                    continue  # csv.reader yields [] for a blank line
                if len(record) != len(header):
                    raise TaiaError(f"{path}:{start}: {len(record)} fields but the header has {len(header)}")
                rows.append(Row(dict(zip(header, record, strict=True)), start))
        except csv.Error as e:
            raise TaiaError(f"{path}:{reader.line_num}: invalid CSV ({e})") from None
    return rows


def load_hub_rows(dataset_id: str, split: str, subset: str | None) -> list[Row]:
    """A Hugging Face Hub dataset split, or the one data file at an https URL (a file's copy on the web,
    e.g. a pinned GitHub raw URL), as rows numbered from 1 (needs network or the HF cache)."""
    from datasets import load_dataset  # lazy: heavy, and only hub sources need it

    # Offline, huggingface_hub logs each failed request before raising; the error alone is enough (taia's
    # not-found message quotes its last line), so its warnings are held back while loading.
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        if dataset_id.startswith("https://"):
            ds = load_dataset(_url_builder(dataset_id), data_files=dataset_id, split="train")
        else:
            ds = load_dataset(dataset_id, subset, split=split)
    finally:
        hub_log.setLevel(level)
    rows = [Row(dict(r), i + 1) for i, r in enumerate(ds)]
    if not rows:
        raise TaiaError(f"hub:{dataset_id}: no rows in split {split!r}")
    return rows


def _url_builder(url: str) -> str:
    """The `datasets` builder that reads the file at `url`, from its name."""
    name = url.split("?", 1)[0].lower()
    for suffix, builder in ((".jsonl", "json"), (".json", "json"), (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return builder
    raise TaiaError(f"{url}: a data file URL must end in .json, .jsonl, .csv or .parquet")


def _hub_name(hub_id: str, split: str, subset: str | None) -> str:
    return hub_id if hub_id.startswith("https://") else f"{hub_id} ({subset or 'default'}, {split})"


def looks_like_hub_id(path: str) -> bool:
    return bool(_HUB_ID.fullmatch(path)) and Path(path).suffix.lower() not in _FILE_SUFFIXES


def resolve_rows(
    path: str, root: Path | None, split: str = "train", subset: str | None = None, hub: str | None = None
) -> tuple[list[Row], str]:
    """Rows of a local file (as given, or under the data root), else of a hub dataset, and where they came
    from. The hub dataset (its `split` and `subset`) is `hub` (an id or https URL: a local file's copy)
    when given, else `path` itself when it is a hub id. Neither found: one line saying every place looked
    and how to point elsewhere."""
    found = find_file(path, root)
    if found is not None:
        return read_rows(found), str(found)
    if hub is None and looks_like_hub_id(path):
        hub = path
    if hub is None:
        why = "not a hub dataset id (owner/name), and no hub: copy is named"
    else:
        try:
            rows = load_hub_rows(hub, split, subset)
            web = hub.startswith("https://")
            return rows, hub if web else f"hub:{hub}" + (f"/{subset}" if subset else "")
        except TaiaError:
            raise
        except Exception as e:  # noqa: BLE001  # datasets raises many types; the user needs only the message
            lines = str(e).strip().splitlines()
            copy = "its copy " if hub != path else "on the Hugging Face Hub "
            why = f"{copy}{_hub_name(hub, split, subset)} failed: "
            why += lines[-1] if lines else type(e).__name__
    raise TaiaError(
        f"data {path!r} not found: not at {Path(path).expanduser().absolute()}, {_under_root(root)}; {why}"
    )


def _under_root(root: Path | None) -> str:
    how = f"pass --data-dir or set {ENV_DATA_DIR}"
    if root is None:
        return f"no data root is set ({how})"
    state = "" if root.is_dir() else ", which does not exist"
    return f"not under the data root {root}{state} ({how} to change it)"
