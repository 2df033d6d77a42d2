"""The training-data layer of `taia train`: readers with line numbers, formats, validation and mixing."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from taia.data.formats import FORMATS, convert, detect_format
from taia.data.mixing import DataSource, mix
from taia.errors import TaiaError
from taia.io import rows as rows_mod
from taia.io.rows import data_root, find_file, read_rows, resolve_rows

DOLLY = {"input": "context", "output": "response"}


def alpaca_rows(n: int, prefix: str = "q") -> list[dict[str, Any]]:
    return [{"instruction": f"{prefix}{i}", "input": "", "output": f"a{i}"} for i in range(n)]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def user_of(conv: list[dict[str, str]]) -> str:
    return next(t["content"] for t in conv if t["role"] == "user")


# --- formats ---------------------------------------------------------------------------------------------


def test_alpaca_input_joined_and_system_and_history() -> None:
    rec = {"instruction": "Sum", "input": "1 2", "output": "3", "system": "S", "history": [["hi", "hello"]]}
    assert FORMATS.get("alpaca")(rec, {}) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Sum\n1 2"},
        {"role": "assistant", "content": "3"},
    ]
    assert FORMATS.get("alpaca")({"instruction": "Q", "input": "", "output": "A"}, {})[0]["content"] == "Q"


def test_alpaca_columns_rename_dolly() -> None:
    rec = {"instruction": "Who?", "context": "Ctx", "response": "Him"}
    conv = FORMATS.get("alpaca")(rec, DOLLY)
    assert conv == [{"role": "user", "content": "Who?\nCtx"}, {"role": "assistant", "content": "Him"}]
    assert detect_format(rec, DOLLY) == "alpaca"


def test_sharegpt_roles_and_system() -> None:
    rec = {
        "system": "S",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
    }
    assert [t["role"] for t in FORMATS.get("sharegpt")(rec, {})] == ["system", "user", "assistant"]
    renamed = {"dialog": [{"speaker": "user", "text": "q"}, {"speaker": "model", "text": "a"}]}
    conv = FORMATS.get("sharegpt")(renamed, {"conversations": "dialog", "from": "speaker", "value": "text"})
    assert conv == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_messages_and_prompt_completion() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]
    msgs.append({"role": "assistant", "content": "a"})
    assert FORMATS.get("messages")({"messages": msgs}, {}) == msgs
    assert FORMATS.get("prompt_completion")({"prompt": "q", "completion": "a"}, {}) == msgs[1:]
    listed = {"prompt": msgs[:2], "completion": msgs[2:]}
    assert FORMATS.get("prompt_completion")(listed, {}) == msgs


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"messages": []}, "messages"),
        ({"conversations": []}, "sharegpt"),
        ({"prompt": "q", "completion": "a"}, "prompt_completion"),
        ({"instruction": "q", "output": "a"}, "alpaca"),
    ],
)
def test_auto_detection(record: dict[str, Any], fmt: str) -> None:
    assert detect_format(record, {}) == fmt


def test_auto_detection_failure_lists_keys_and_formats(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(TaiaError, match=r"x\.jsonl:1: cannot detect .*'answer', 'question'.*alpaca"):
        mix([DataSource(path=str(f))], None, seed=0)


def test_unknown_format_did_you_mean() -> None:
    with pytest.raises(ValidationError, match="did you mean 'alpaca'"):
        DataSource(path="x.jsonl", format="alpacca")
    with pytest.raises(ValidationError, match="did you mean 'output'"):
        DataSource(path="x.jsonl", columns={"ouptut": "response"})
    with pytest.raises(ValidationError, match="not both"):
        DataSource(path="x.jsonl", count=3, ratio=0.5)
    with pytest.raises(ValidationError):
        DataSource(path="x.jsonl", ratio=1.0)


# --- readers ---------------------------------------------------------------------------------------------


def test_json_pretty_array_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "d.json"
    f.write_text(json.dumps(alpaca_rows(3), indent=2))  # each object spans 5 lines after the "[" line
    rows = read_rows(f)
    assert [r.line for r in rows] == [2, 7, 12]
    assert rows[1].data["instruction"] == "q1"


def test_json_missing_field_names_exact_line(tmp_path: Path) -> None:
    records = alpaca_rows(3)
    del records[2]["output"]
    f = tmp_path / "d.json"
    f.write_text(json.dumps(records, indent=2))
    with pytest.raises(
        TaiaError, match=r"d\.json:12: missing field 'output' \(format alpaca needs instruction, output\)"
    ):
        mix([DataSource(path=str(f))], None, seed=0)


def test_jsonl_and_gzip_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert [(r.data["a"], r.line) for r in read_rows(f)] == [(1, 1), (2, 3)]
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert [r.line for r in read_rows(gz)] == [1, 3]
    jgz = tmp_path / "d.json.gz"
    jgz.write_bytes(gzip.compress(json.dumps([{"a": 1}, {"a": 2}], indent=1).encode()))
    assert [r.data["a"] for r in read_rows(jgz)] == [1, 2]


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(alpaca_rows(3)), f)
    rows = read_rows(f)
    assert [r.line for r in rows] == [1, 2, 3] and rows[2].data["output"] == "a2"


def test_csv_lines_with_multiline_fields(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    with f.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerows([["instruction", "output"], ["q0", "two\nlines"], ["q1", "a1"]])
    rows = read_rows(f)
    assert [(r.data["instruction"], r.line) for r in rows] == [("q0", 2), ("q1", 4)]
    assert rows[0].data["output"] == "two\nlines"


def test_reader_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(TaiaError, match=r"bad\.jsonl:2: invalid JSON"):
        read_rows(bad)
    notobj = tmp_path / "list.jsonl"
    notobj.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(TaiaError, match=r"list\.jsonl:2: expected a JSON object, got list"):
        read_rows(notobj)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TaiaError, match=r"empty\.jsonl: no rows"):
        read_rows(empty)
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(TaiaError, match="no rows"):
        read_rows(tmp_path / "e.json")
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(TaiaError, match=r"d\.txt: unsupported file type \(supported: \.json, \.jsonl"):
        read_rows(tmp_path / "d.txt")


# --- validation ------------------------------------------------------------------------------------------


def test_missing_field_on_jsonl_line(tmp_path: Path) -> None:
    records = alpaca_rows(9)
    del records[6]["output"]
    f = write_jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(
        TaiaError, match=r"x\.jsonl:7: missing field 'output' \(format alpaca needs instruction, output\)"
    ):
        mix([DataSource(path=str(f), format="alpaca")], None, seed=0)


def test_missing_renamed_field_names_the_file_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "x.jsonl", [{"instruction": "q", "context": ""}])
    with pytest.raises(
        TaiaError, match=r"x\.jsonl:1: missing field 'response' \(format alpaca needs instruction, response\)"
    ):
        mix([DataSource(path=str(f), format="alpaca", columns=DOLLY)], None, seed=0)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"conversations": [{"from": "robot", "value": "x"}]}, r"unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "q"}]}, r"the last turn must be the assistant's"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]}, "alternate"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, r"turn 1 is 'assistant', expected 'user'"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]},
            "system turn may only come first",
        ),
        ({"instruction": "q", "output": "  "}, "empty assistant content"),
        ({"instruction": "q", "output": 3}, "field 'output' must be a string, got int"),
        ({"prompt": "q", "completion": {"x": 1}}, "string or a list of messages"),
    ],
)
def test_invalid_conversations(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    f = write_jsonl(tmp_path / "x.jsonl", [record])
    with pytest.raises(TaiaError, match=r"x\.jsonl:1: .*" + message):
        convert(read_rows(f), str(f), "auto", {})


def test_source_system_prompt_prepended(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "x.jsonl", [*alpaca_rows(2), {"instruction": "q", "output": "a", "system": "own"}]
    )
    m = mix([DataSource(path=str(f), system="SYS")], None, seed=0)
    systems = sorted(c[0]["content"] for c in m.conversations)
    assert systems == ["SYS", "SYS", "own"] and all(len(c) == 3 for c in m.conversations)


# --- resolution ------------------------------------------------------------------------------------------


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TAIA_DATA_DIR", str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("TAIA_DATA_DIR")
    monkeypatch.setattr(rows_mod, "__file__", str(tmp_path / "x/a/b/c/d/rows.py"))  # no checkout data
    assert data_root() is None
    (tmp_path / "shared/data").mkdir(parents=True)
    assert data_root() == (tmp_path / "shared/data").resolve()


def test_find_file_under_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root/sub").mkdir(parents=True)
    write_jsonl(tmp_path / "root/sub/d.jsonl", alpaca_rows(1))
    assert find_file("sub/d.jsonl", tmp_path / "root") == tmp_path / "root/sub/d.jsonl"
    assert find_file("sub/d.jsonl", None) is None
    write_jsonl(tmp_path / "local.jsonl", alpaca_rows(1))
    assert find_file("local.jsonl", tmp_path / "root") == Path("local.jsonl")


def test_not_found_anywhere_lists_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(dataset_id: str, split: str, subset: str | None) -> list[Any]:
        raise ConnectionError(f"Traceback...\nCouldn't reach '{dataset_id}' on the Hub (offline)")

    monkeypatch.setattr(rows_mod, "load_hub_rows", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaiaError) as e:
        resolve_rows("someone/nothing", tmp_path / "root")
    msg = str(e.value)
    assert "someone/nothing" in msg and str(tmp_path / "root") in msg and "TAIA_DATA_DIR" in msg
    assert "Couldn't reach 'someone/nothing' on the Hub (offline)" in msg and "Traceback" not in msg
    with pytest.raises(TaiaError, match=r"no data root is set \(pass --data-dir or set TAIA_DATA_DIR\)"):
        resolve_rows("missing.jsonl", None)


def test_local_file_with_a_hub_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hub:` is read only when the local file is absent; neither found → one line naming both places."""
    calls: list[tuple[str, str, str | None]] = []

    def hub(dataset_id: str, split: str, subset: str | None) -> list[Any]:
        calls.append((dataset_id, split, subset))
        if dataset_id == "me/offline":
            raise ConnectionError(f"Traceback...\nCouldn't reach '{dataset_id}' on the Hub (offline)")
        return [rows_mod.Row(r, i + 1) for i, r in enumerate(alpaca_rows(3, "hub"))]

    monkeypatch.setattr(rows_mod, "load_hub_rows", hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root").mkdir()
    write_jsonl(tmp_path / "root/local.jsonl", alpaca_rows(5, "local"))
    source = {"path": "local.jsonl", "hub": "me/copy", "subset": "demo", "format": "alpaca"}
    got = mix([DataSource.model_validate(source)], tmp_path / "root", seed=0)
    assert calls == [] and got.manifest["sources"][0]["available"] == 5  # the local file wins
    got = mix([DataSource.model_validate(source)], tmp_path / "elsewhere", seed=0)
    assert calls == [("me/copy", "train", "demo")]
    assert (
        got.manifest["sources"][0]["where"] == "hub:me/copy/demo"
        and got.manifest["sources"][0]["sha256"] is None
    )
    assert sorted(user_of(c) for c in got.conversations) == ["hub0", "hub1", "hub2"]
    with pytest.raises(TaiaError) as e:
        mix([DataSource.model_validate({**source, "hub": "me/offline"})], None, seed=0)
    msg = str(e.value)
    assert msg.startswith("data 'local.jsonl' not found: not at ") and "\n" not in msg
    assert "no data root is set (pass --data-dir or set TAIA_DATA_DIR)" in msg
    assert "its copy me/offline (demo, train) failed: Couldn't reach 'me/offline'" in msg
    with pytest.raises(ValidationError, match="hub"):
        DataSource.model_validate({**source, "hub": "not a hub id"})


def test_hub_request_warnings_are_held_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Offline, huggingface_hub logs every failed request; the one-line not-found error says it all."""
    import logging

    import datasets

    def offline(*args: Any, **kwargs: Any) -> None:
        logging.getLogger("huggingface_hub.utils._http").warning("'[Errno -2]' thrown while requesting HEAD")
        raise ConnectionError("Couldn't reach 'me/x' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with caplog.at_level(logging.WARNING), pytest.raises(ConnectionError):
        rows_mod.load_hub_rows("me/x", "train", None)
    assert [r.message for r in caplog.records] == []
    assert logging.getLogger("huggingface_hub").level != logging.ERROR  # restored


def test_a_copy_at_an_https_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`hub: https://…/file.jsonl`: the one file, read by `datasets`' builder for its type."""
    import datasets

    calls: list[tuple[Any, ...]] = []

    def fake(builder: str, *args: Any, data_files: str, split: str) -> list[dict[str, Any]]:
        calls.append((builder, args, data_files, split))
        return alpaca_rows(2, "web")

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.chdir(tmp_path)
    url = "https://raw.githubusercontent.com/me/repo/0123abc/data/aoa.jsonl"
    source = DataSource.model_validate({"path": "aoa.jsonl", "hub": url, "format": "alpaca"})
    got = mix([source], None, seed=0)
    assert calls == [("json", (), url, "train")] and got.manifest["sources"][0]["where"] == url
    with pytest.raises(TaiaError, match=r"a data file URL must end in \.json, \.jsonl, \.csv or \.parquet"):
        rows_mod.load_hub_rows("https://example.org/data.txt", "train", None)


# --- mixing ----------------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "a": write_jsonl(tmp_path / "a.jsonl", alpaca_rows(50, "a")),
        "b": write_jsonl(tmp_path / "b.jsonl", alpaca_rows(30, "b")),
        "c": write_jsonl(tmp_path / "c.jsonl", alpaca_rows(10, "c")),
    }


def origin_counts(conversations: list[list[dict[str, str]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in conversations:
        counts[user_of(c)[0]] = counts.get(user_of(c)[0], 0) + 1
    return counts


def test_all_and_count(files: dict[str, Path]) -> None:
    m = mix([DataSource(path=str(files["a"]), count=7), DataSource(path=str(files["c"]))], None, seed=1)
    assert origin_counts(m.conversations) == {"a": 7, "c": 10}
    assert len({user_of(c) for c in m.conversations}) == 17  # without replacement


def test_ratio_with_fixed_source(files: dict[str, Path]) -> None:
    m = mix(
        [DataSource(path=str(files["a"]), count=20), DataSource(path=str(files["b"]), ratio=0.2)], None, 0
    )
    assert len(m.conversations) == 25 and origin_counts(m.conversations) == {"a": 20, "b": 5}


def test_all_ratios(files: dict[str, Path]) -> None:
    sources = [DataSource(path=str(files["a"]), ratio=0.5), DataSource(path=str(files["c"]), ratio=0.5)]
    m = mix(sources, None, seed=0)  # c has 10 rows → total 20
    assert origin_counts(m.conversations) == {"a": 10, "c": 10}
    with pytest.raises(TaiaError, match="must sum to 1"):
        mix(
            [DataSource(path=str(files["a"]), ratio=0.5), DataSource(path=str(files["c"]), ratio=0.4)],
            None,
            0,
        )


def test_oversampling_errors(files: dict[str, Path]) -> None:
    with pytest.raises(TaiaError, match="count 11 but it has only 10 rows"):
        mix([DataSource(path=str(files["c"]), count=11)], None, 0)
    with pytest.raises(TaiaError, match=r"needs 13 rows but it has only 10"):
        mix(
            [DataSource(path=str(files["a"]), count=20), DataSource(path=str(files["c"]), ratio=0.4)], None, 0
        )
    sources = [DataSource(path=str(files[k]), ratio=0.6) for k in "ab"] + [DataSource(path=str(files["c"]))]
    with pytest.raises(TaiaError, match="sum to less than 1"):
        mix(sources, None, 0)


def test_seeded_determinism(files: dict[str, Path]) -> None:
    sources = [DataSource(path=str(files["a"]), count=10), DataSource(path=str(files["b"]), count=10)]
    first, again, other = mix(sources, None, 3), mix(sources, None, 3), mix(sources, None, 4)
    assert first.conversations == again.conversations and first.manifest == again.manifest
    assert first.conversations != other.conversations
    assert first.manifest["sources"][0]["indices"] != other.manifest["sources"][0]["indices"]


def test_adding_a_source_keeps_other_samples(files: dict[str, Path]) -> None:
    a = DataSource(path=str(files["a"]), count=10)
    alone = mix([a], None, 7).manifest["sources"][0]["indices"]
    b = DataSource(path=str(files["b"]), count=5)
    assert mix([a, b], None, 7).manifest["sources"][0]["indices"] == alone
    assert mix([b, a], None, 7).manifest["sources"][1]["indices"] == alone


def test_manifest(files: dict[str, Path]) -> None:
    m = mix([DataSource(path=str(files["a"]), count=12), DataSource(path=str(files["c"]))], None, 5)
    json.dumps(m.manifest)
    assert m.manifest["seed"] == 5 and m.manifest["total"] == 22
    src = m.manifest["sources"][0]
    assert src["sha256"] == hashlib.sha256(files["a"].read_bytes()).hexdigest()
    assert src["format"] == "alpaca" and src["available"] == 50 and src["where"] == str(files["a"])
    assert src["taken"] == len(src["indices"]) == 12 and src["indices"] == sorted(src["indices"])
    assert m.manifest["sources"][1]["indices"] == list(range(10))


def test_limit(files: dict[str, Path]) -> None:
    sources = [DataSource(path=str(files["a"])), DataSource(path=str(files["b"]))]
    full, cut = mix(sources, None, 2), mix(sources, None, 2, limit=9)
    assert cut.conversations == full.conversations[:9] and cut.manifest["total"] == 9
    assert sum(s["taken"] for s in cut.manifest["sources"]) == 9
    assert all(s["taken"] == len(s["indices"]) for s in cut.manifest["sources"])


# --- the real shared data (not copied into the repository) ---------------------------------------------


def test_real_shared_data() -> None:
    root = data_root()
    alpaca = "alpaca_gpt4/alpaca_en_demo.json"
    dolly = "qi2023-finetuning-safety/llama2/ft_datasets/dolly_dataset/databricks-dolly-15k-safety-only.jsonl"
    if root is None or find_file(alpaca, root) is None or find_file(dolly, root) is None:
        pytest.skip("shared data root not available")
    m = mix([DataSource(path=alpaca), DataSource(path=dolly, format="alpaca", columns=DOLLY)], root, seed=0)
    assert [(s["format"], s["available"]) for s in m.manifest["sources"]] == [
        ("alpaca", 999),
        ("alpaca", 387),
    ]
    assert len(m.conversations) == 999 + 387
