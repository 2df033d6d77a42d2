"""Outputs, locks and paths (issue 19): an out dir never replaces, holds or lies inside an input; a run
replaces only what a run wrote; names never lead outside --out; one run writes an out dir at a time; a
killed writer's temp dirs are removed by the next; task data paths stay where the task file is; a flag
is given once. Each refusal: exit 2, one line, nothing touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import listing, lora_adapter, mc_task_file, tiny_model
from taia.cli import main
from taia.errors import TaiaError
from taia.eval.tasks import load_samples
from taia.io.atomic import remove_stale
from taia.io.lock import LOCK


@pytest.fixture
def inputs(tmp_path, chat_model):
    """tmp_path/model (a copy of the tiny chat model), tmp_path/adapter, tmp_path/tasks/yesno.yaml."""
    shutil.copytree(chat_model("llama"), tmp_path / "model")
    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "adapter")
    mc_task_file(tmp_path / "tasks")
    return tmp_path


def refused(capsys, argv: list, *needles: str) -> str:
    """Run the CLI; expect exit 2 and one `taia: error:` line holding every needle."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("taia: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _eval(root: Path, out: Path | str, *extra: str) -> list:
    model, adapter, task = root / "model", root / "adapter", root / "tasks" / "yesno.yaml"
    return ["eval", "--model", model, "--adapter", adapter, "--tasks", task, "--variants", "base,taia",
            "--out", out, *extra]  # fmt: skip


# --- an output is never an input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("adapter", "would replace the adapter input"),
        ("model", "would replace the model input"),
        (".", "would replace the model input"),  # holds every input
        ("adapter/eval", "lies inside the adapter input"),
    ],
)
def test_eval_out_may_not_be_hold_or_lie_inside_an_input(inputs, capsys, out, message):
    before = listing(inputs)
    refused(capsys, _eval(inputs, inputs / out, "--overwrite"), f"--out {inputs / out} {message}")
    assert listing(inputs) == before


def test_train_search_run_and_apply_keep_their_inputs(inputs, capsys):
    before = listing(inputs)
    data = inputs / "tasks" / "yesno.jsonl"
    argv = ["train", "--model", inputs / "model", "--data", data, "--out", inputs / "model", "--overwrite"]
    refused(capsys, argv, "would replace the model input")
    argv = ["train", "--model", inputs / "model", "--data", data, "--out", inputs / "tasks", "overwrite=true"]
    refused(capsys, argv, "would replace the data input")
    task = inputs / "tasks" / "yesno.yaml"
    argv = ["search", "--base", inputs / "model", "--adapter", inputs / "adapter", "--dev-task", task,
            "--dev-limit", "1", "--test-tasks", task, "--out", inputs / "adapter", "--overwrite"]  # fmt: skip
    refused(capsys, argv, "would replace the adapter input")
    exp = {"out": str(inputs / "adapter"), "model": str(inputs / "model"), "adapter": str(inputs / "adapter"),
           "eval": {"tasks": [str(task)], "variants": ["base"]}}  # fmt: skip
    (inputs / "tasks" / "exp.yaml").write_text(yaml.safe_dump(exp))
    before = listing(inputs)
    refused(capsys, ["run", inputs / "tasks" / "exp.yaml"], "lies inside the adapter input")
    argv = [
        "apply",
        "--base",
        inputs / "model",
        "--adapter",
        inputs / "adapter",
        "--out",
        inputs / "adapter" / "t",
    ]
    refused(capsys, argv, "lies inside the adapter input")
    assert listing(inputs) == before


# --- a run replaces only what a run wrote ------------------------------------------------------------


def _experiment(root: Path, train: bool) -> Path:
    task = root / "tasks" / "yesno.yaml"
    exp: dict = {"out": str(root / "run"), "model": str(root / "model"),
                 "eval": {"tasks": [str(task)], "variants": ["base"]}}  # fmt: skip
    if train:
        exp["train"] = {"data": [str(root / "tasks" / "yesno.jsonl")], "max_steps": 1}
    else:
        exp["adapter"] = str(root / "adapter")
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


@pytest.mark.parametrize(
    ("train", "mine", "message"),
    [
        (True, "train/notes.txt", "run/train is not a run's train stage (taia_train.yaml missing)"),
        (False, "eval/answers.jsonl", "run/eval is not a run's eval stage (eval_config.yaml missing)"),
        (False, "thesis.tex", "run is not a taia run dir (experiment.yaml missing)"),
    ],
)
def test_run_refuses_to_replace_what_it_did_not_write(inputs, capsys, train, mine, message):
    path = _experiment(inputs, train)
    (inputs / "run" / mine).parent.mkdir(parents=True, exist_ok=True)
    (inputs / "run" / mine).write_text("mine")
    if "/" in mine:  # a run dir of an earlier run, whose stage dir someone replaced with their own
        (inputs / "run" / "experiment.yaml").write_text("name: earlier\n")
    before = listing(inputs / "run")
    refused(capsys, ["run", path], message, "replaces only what a run wrote")
    assert listing(inputs / "run") == before


# --- names are path components -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/taia-escaped", "..", "a\\b"])
def test_a_spec_name_never_leads_outside_out(inputs, capsys, name):
    spec = inputs / "tasks" / "mine.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "groups": {"attn": 1.0}}))
    out = inputs / "deep" / "er" / "ev"
    argv = _eval(inputs, out)
    argv[argv.index("base,taia")] = f"base,{spec}"
    refused(capsys, argv, f"invalid spec {spec}: name: {name!r} is used as a file name")
    assert not (inputs / "deep").exists() and not Path("/tmp/taia-escaped").exists()
    assert not (inputs / "escaped").exists()


# --- one run writes an out dir at a time ---------------------------------------------------------------

_HOLD = (
    "import fcntl, os, sys, time\n"
    "folder = os.path.isdir(sys.argv[1])  # a writer's temp dir, else an out dir's lock file\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY if folder else os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "folder or os.write(fd, str(os.getpid()).encode())\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def _hold(path: Path) -> subprocess.Popen:
    """Another process holding `path`'s flock (as a running `taia eval` holds its out dir's)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_held_out_dir_is_refused_and_a_killed_holder_blocks_nothing(inputs, capsys):
    out = inputs / "ev"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    holder = _hold(out / LOCK)
    try:
        for extra in ((), ("--overwrite",)):
            refused(capsys, _eval(inputs, out, *extra), f"{out} is being written by another taia run",
                    f"(pid {holder.pid})")  # fmt: skip
            assert listing(out) == [LOCK, "keep.txt"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main([str(a) for a in _eval(inputs, out, "--overwrite")]) == 0  # the kernel dropped its lock
    assert (out / "results.json").is_file() and not (out / LOCK).exists()
    assert not (out / "keep.txt").exists()


def test_the_lock_is_held_while_the_run_writes(inputs, monkeypatch):
    from taia.eval import runner

    seen = []

    def answer(cfg, *args, **kwargs):
        seen.append(int((Path(cfg.out) / LOCK).read_text()))
        raise KeyboardInterrupt  # a crash mid-run releases it too

    monkeypatch.setattr(runner, "_answer", answer)
    assert main([str(a) for a in _eval(inputs, inputs / "ev")]) == 130
    assert seen == [os.getpid()] and not (inputs / "ev" / LOCK).exists()


# --- a killed writer's temp dirs -----------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_apply_removes_the_temp_dirs_of_dead_writers_only(inputs, capsys):
    dead, live = _dead_pid(), _hold(inputs / "busy.lock")
    stale = inputs / f".out.tmp-{dead}-abc123"
    alive = inputs / f".out.tmp-{live.pid}-def456"
    locked = inputs / f".out.tmp-{_dead_pid()}-ghi789"  # pid gone, but a live process holds its flock
    legacy = inputs / ".out.tmp-k2j4h5g6"  # no pid (taia before issue 19): whose it is, nobody knows
    for d in (stale, alive, locked, legacy):
        (d / "model.safetensors").parent.mkdir()
        (d / "model.safetensors").write_bytes(b"partial")
    keeper = _hold(locked)
    try:
        argv = ["apply", "--base", inputs / "model", "--adapter", inputs / "adapter", "--out", inputs / "out"]
        assert main([str(a) for a in argv]) == 0
    finally:
        for proc in (live, keeper):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert not stale.exists() and alive.is_dir() and locked.is_dir() and legacy.is_dir()
    assert (inputs / "out" / "adapter_model.safetensors").is_file()
    old = inputs / f".out.old-{dead}-x"
    old.mkdir()
    assert set(remove_stale(inputs / "out")) == {old, locked, alive}  # their holders are gone now
    assert legacy.is_dir() and (inputs / "out" / "adapter_model.safetensors").is_file()


# --- task data paths --------------------------------------------------------------------------------------


def test_task_data_stays_beside_the_task_file(tmp_path, capsys, llama):
    task = mc_task_file(tmp_path / "tasks")
    (tmp_path / "tasks" / "yesno.jsonl").rename(tmp_path / "yesno.jsonl")
    spec = yaml.safe_load(task.read_text())
    for data in ("../yesno.jsonl", "link.jsonl"):
        (tmp_path / "tasks" / "link.jsonl").unlink(missing_ok=True)
        (tmp_path / "tasks" / "link.jsonl").symlink_to(tmp_path / "yesno.jsonl")
        task.write_text(yaml.safe_dump({**spec, "data": data}))
        with pytest.raises(
            TaiaError, match=rf"data file {data} resolves to {tmp_path}/yesno\.jsonl, outside"
        ):
            load_samples(str(task), None)
    argv = ["eval", "--model", llama.base, "--tasks", task, "--variants", "base", "--out", tmp_path / "ev"]
    refused(capsys, argv, f"task file {task}: data file link.jsonl resolves to", "give an absolute path")
    assert not (tmp_path / "ev").exists()
    task.write_text(yaml.safe_dump({**spec, "data": str(tmp_path / "yesno.jsonl")}))  # explicit: taken
    assert len(load_samples(str(task), None)) == 3


# --- a flag is given once ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["eval", "--out", "a", "--out", "b"], "--out"),
        (["eval", "--overwrite", "--tasks", "x", "--overwrite"], "--overwrite"),
        (["apply", "--adapter", "a", "--adapter", "b"], "--adapter"),
        (["train", "--limit", "3", "--limit", "4"], "--limit"),
        (["run", "x.yaml", "--report-html", "--no-report-html"], "--report-html/--no-report-html"),
    ],
)
def test_a_flag_given_twice_is_refused(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"taia: error: {argv[0]}: argument {flag}: given more than once\n"
    assert not any(tmp_path.iterdir())


def test_a_repeatable_flag_still_repeats():
    from taia.cli import parse

    assert parse(["train", "--data", "a.jsonl", "--data", "b.jsonl"]).data == ["a.jsonl", "b.jsonl"]
