"""A full disk (issue 19), however the writer reports it — an OSError, safetensors' SafetensorError,
torch.save's RuntimeError: `taia apply --format merged` and `taia train` (mid-checkpoint) stop with one
`taia: error:` line naming what they were writing. apply leaves nothing; train leaves no partial
checkpoint as the newest, and resume=true continues from the one before. Disk full is simulated by
patching the writer (as in tests/test_refusals_verbs.py), and once for real with a file-size limit
(EFBIG from the kernel)."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError

from taia.cli import main
from taia.io.atomic import os_error
from taia.train.checkpoints import checkpoints, problem
from test_errors import fails
from test_train import data_file
from test_train_refusals import BASE

ENOSPC = os.strerror(errno.ENOSPC)
SAFETENSORS_FULL = f"Error while serializing: I/O error: {ENOSPC} (os error {errno.ENOSPC})"
TORCH_FULL = (
    "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: "
    "file write failed"
)


def test_os_error_reads_every_writers_report():
    assert os_error(SafetensorError(SAFETENSORS_FULL)).errno == errno.ENOSPC
    assert os_error(SafetensorError(SAFETENSORS_FULL)).strerror == ENOSPC
    assert "torch.save failed" in os_error(RuntimeError(TORCH_FULL)).strerror
    assert os_error(RuntimeError("shape mismatch")) is None and os_error(ValueError("x")) is None
    plain = OSError(errno.ENOSPC, ENOSPC, "f")
    assert os_error(plain) is plain


# ------------------------------------------------------------------------------ apply --format merged


@pytest.fixture
def no_progress_bars():
    """transformers' loading / writing bars go to stderr too; the test reads only the error line there."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    yield
    logging.enable_progress_bar()


def _merged(llama, out: Path) -> list:
    return ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]


@pytest.mark.parametrize(
    "where", ["transformers.modeling_utils.safe_save_file", "taia.apply.merged.save_file"]
)
def test_merged_apply_on_a_full_disk(llama, tmp_path, capsys, monkeypatch, no_progress_bars, where):
    """The merged weights (save_pretrained) or the filtered adapter PEFT merges from (a temp dir)."""

    def full(*a, **k):
        raise SafetensorError(SAFETENSORS_FULL)

    monkeypatch.setattr(where, full)
    out = tmp_path / "out"
    named = f"cannot write {out}" if "modeling_utils" in where else "cannot write /"
    fails(capsys, _merged(llama, out), out, named, ENOSPC)


def test_merged_apply_past_a_real_file_size_limit(llama, tmp_path, capsys, no_progress_bars):
    """The kernel refuses the write (EFBIG, as ENOSPC would): safetensors' own error, not a patched one."""
    out = tmp_path / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, hard))  # the adapter fits, the merged weights not
    try:
        fails(capsys, _merged(llama, out), out, f"cannot write {out}", os.strerror(errno.EFBIG))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


# ------------------------------------------------------------------------ train, mid-checkpoint


def error_line(err: str) -> str:
    """The one `taia: error:` line, last on stderr (the Trainer's progress bars go there before it)."""
    errors = [x for x in err.splitlines() if x.startswith("taia: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n"), err[-2000:]
    assert "Traceback" not in err
    return errors[0]


def _train_cfg(tmp_path: Path, model: Path, **kw) -> Path:
    path = tmp_path / "cfg.yaml"
    opts = {"model": str(model), "data": [str(data_file(tmp_path))], "out": str(tmp_path / "out"), **BASE}
    path.write_text(yaml.safe_dump({**opts, "max_steps": 4, "save_steps": 2, **kw}))
    return path


def _fail_at_checkpoint_4(monkeypatch, writer: str) -> None:
    """Writes into checkpoint-4 fail the way `writer` reports a full disk, after writing half the file."""
    if writer == "torch.save (OSError)":
        real = torch.save

        def save(obj, f, *a, **k):
            if "checkpoint-4" in str(f) and str(f).endswith("optimizer.pt"):
                Path(f).write_bytes(b"PK\x03\x04 half")
                raise OSError(errno.ENOSPC, ENOSPC, str(f))
            return real(obj, f, *a, **k)

        monkeypatch.setattr(torch, "save", save)
        return
    import peft.peft_model

    real_st = peft.peft_model.safe_save_file

    def save_st(tensors, filename, *a, **k):
        if "checkpoint-4" in str(filename):
            Path(filename).write_bytes(b"\x10\x00")
            raise SafetensorError(SAFETENSORS_FULL) if writer == "safetensors" else RuntimeError(TORCH_FULL)
        return real_st(tensors, filename, *a, **k)

    monkeypatch.setattr(peft.peft_model, "safe_save_file", save_st)


@pytest.mark.parametrize("writer", ["torch.save (OSError)", "safetensors", "torch zip writer"])
def test_train_checkpoint_on_a_full_disk_then_resume(tmp_path, chat_model, capsys, monkeypatch, writer):
    cfg = _train_cfg(tmp_path, chat_model("llama"))
    out, ckpts = tmp_path / "out", tmp_path / "out" / "checkpoints"
    _fail_at_checkpoint_4(monkeypatch, writer)
    named = f"{ckpts / 'checkpoint-4'}" if writer != "torch.save (OSError)" else "optimizer.pt"
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"taia: error: cannot write {ckpts / 'checkpoint-4'}"), line
    assert named in line and "resume=true continues from checkpoint-2" in line
    assert ENOSPC in line or "torch.save failed" in line
    assert [p.name for p in checkpoints(ckpts)] == ["checkpoint-2"]  # the partial one is gone
    assert problem(ckpts / "checkpoint-2") is None and not (out / "taia_train.json").exists()
    monkeypatch.undo()
    assert main(["train", str(cfg), "resume=true"]) == 0
    report = json.loads((out / "taia_train.json").read_text())
    assert report["steps"] == 4 and not ckpts.exists()
