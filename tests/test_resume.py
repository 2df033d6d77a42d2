"""`taia train resume=true` on damaged checkpoints (issue 19). The newest checkpoint left incomplete (a file
missing or truncated: a crash, a full disk) is named on stderr, removed, and the run continues from the
last complete one — to the same weights as an uninterrupted run. With no complete checkpoint, or a pickle
that weights_only loading refuses (its code never runs), resume is one `taia: error:` line naming the
file, and the run dir is left as it was."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from taia.cli import main
from taia.train.checkpoints import checkpoints, problem
from test_disk_full import error_line
from test_train_refusals import BASE

RUN = {**BASE, "max_steps": 4, "save_steps": 2}


class _Stop(Exception):
    pass


def _cfg_file(root: Path, model: Path, data: Path, out: Path) -> Path:
    path = root / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({"model": str(model), "data": [str(data)], "out": str(out), **RUN}))
    return path


@pytest.fixture(scope="module")
def runs(chat_model, tmp_path_factory):
    """An uninterrupted run and one stopped right after checkpoint-4 (read-only: tests copy it)."""
    from transformers import TrainerCallback

    from taia.train import trainer as trainer_mod
    from test_train import data_file

    root = tmp_path_factory.mktemp("resume")
    data = data_file(root)
    assert main(["train", str(_cfg_file(root, chat_model("llama"), data, root / "whole"))]) == 0

    class StopAfter4(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 4:
                raise _Stop

    make = trainer_mod.make_trainer
    trainer_mod.make_trainer = lambda *a: _add(make(*a), StopAfter4())
    try:
        with pytest.raises(_Stop):
            main(["train", str(_cfg_file(root, chat_model("llama"), data, root / "cut"))])
    finally:
        trainer_mod.make_trainer = make
    assert [p.name for p in checkpoints(root / "cut" / "checkpoints")] == ["checkpoint-4", "checkpoint-2"]
    return {"root": root, "data": data, "model": chat_model("llama")}


def _add(trainer, callback):
    trainer.add_callback(callback)
    return trainer


def interrupted(runs, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the interrupted run in tmp_path (its saved config names the copy) and its config file."""
    out = tmp_path / "cut"
    shutil.copytree(runs["root"] / "cut", out)
    cfg = _cfg_file(tmp_path, runs["model"], runs["data"], out)
    saved = yaml.safe_load((out / "taia_train.yaml").read_text())
    (out / "taia_train.yaml").write_text(yaml.safe_dump({**saved, "out": str(out)}))
    return out, cfg


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated optimizer.pt": ("optimizer.pt", truncate, "optimizer.pt is truncated or corrupt"),
    "truncated adapter": ("adapter_model.safetensors", truncate, "truncated"),
    "truncated rng_state.pth": ("rng_state.pth", truncate, "rng_state.pth is truncated or corrupt"),
    "truncated trainer_state.json": ("trainer_state.json", truncate, "trainer_state.json is truncated"),
    "no trainer_state.json": ("trainer_state.json", Path.unlink, "trainer_state.json is missing"),
    "no scheduler.pt": ("scheduler.pt", Path.unlink, "scheduler.pt is missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_falls_back_to_the_last_complete_checkpoint(runs, tmp_path, capsys, damage):
    name, harm, said = DAMAGE[damage]
    out, cfg = interrupted(runs, tmp_path)
    harm(out / "checkpoints" / "checkpoint-4" / name)
    capsys.readouterr()
    assert main(["train", str(cfg), "resume=true"]) == 0
    err = capsys.readouterr().err
    notes = [x for x in err.splitlines() if x.startswith("taia: resuming from")]
    assert len(notes) == 1 and "checkpoint-2: checkpoint-4 incomplete" in notes[0] and said in notes[0]
    assert str(out / "checkpoints" / "checkpoint-4" / name) in notes[0] and "removed" in notes[0]
    assert json.loads((out / "taia_train.json").read_text())["steps"] == 4
    whole = load_file(str(runs["root"] / "whole" / "adapter_model.safetensors"))
    resumed = load_file(str(out / "adapter_model.safetensors"))
    assert whole.keys() == resumed.keys() and all(
        torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole
    )


def test_resume_refuses_when_no_checkpoint_is_complete(runs, tmp_path, capsys):
    out, cfg = interrupted(runs, tmp_path)
    for step in (2, 4):
        truncate(out / "checkpoints" / f"checkpoint-{step}" / "optimizer.pt")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    assert main(["train", str(cfg), "resume=true"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"taia: error: cannot resume from {out / 'checkpoints'}: no complete checkpoint")
    assert str(out / "checkpoints" / "checkpoint-4" / "optimizer.pt") in line and "overwrite=true" in line
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing removed, nothing added


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.mark.parametrize("file", ["optimizer.pt", "rng_state.pth"])
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_resume_refuses_a_pickle_that_would_run_code(runs, tmp_path, capsys, file, container):
    out, cfg = interrupted(runs, tmp_path)
    marker, target = tmp_path / "ran", out / "checkpoints" / "checkpoint-4" / file
    if container == "torch.save":
        torch.save({"state": _Payload(marker)}, target)
    else:
        target.write_bytes(pickle.dumps(_Payload(marker)))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    assert main(["train", str(cfg), "resume=true"]) == 2
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert f"{target} holds pickled objects that weights_only loading refuses" in line, line
    assert "unsupported" in line.lower() and "it was not loaded" in line
    assert container == "raw pickle" or "unsupported GLOBAL posix.system" in line
    assert "pwned" not in captured.out
    assert not marker.exists()  # the payload never ran
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_complete_means_taia_extras_too(runs, tmp_path):
    """MoLoRA experts and regularize θ0 / F are taia's own files in each checkpoint: resume needs them."""
    ckpt = runs["root"] / "cut" / "checkpoints" / "checkpoint-4"
    assert problem(ckpt) is None
    assert problem(ckpt, ("molora.safetensors",)) == f"{ckpt / 'molora.safetensors'} is missing"
    copy = shutil.copytree(ckpt, tmp_path / "checkpoint-4")
    (copy / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-1.safetensors"}})
    )
    assert (
        problem(copy) == f"{copy / 'model-1.safetensors'} is missing (listed in model.safetensors.index.json)"
    )
