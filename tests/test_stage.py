"""taia.io.stage: the one output-dir rule of eval, search, train and run (fresh / resume / refuse /
overwrite), worded per verb."""

from __future__ import annotations

import pytest
import yaml
from pydantic import BaseModel

from taia.errors import TaiaError
from taia.io.stage import OutputKind, decide, prepare

KIND = OutputKind(config="cfg.yaml", foreign="{out} is not ours", changed="{out} differs in {keys}")
TRAIN_LIKE = OutputKind(
    config="cfg.yaml",
    foreign="{out} is not ours",
    changed="{out} differs in {keys}",
    finished=("done.json", "{out} is finished"),
    needs_resume="{out} needs resume",
)


class Cfg(BaseModel):
    a: int = 1
    b: str = "x"


def _changed(cfg: Cfg):
    return lambda old: sorted(k for k, v in cfg.model_dump().items() if old.get(k) != v)


def test_fresh_then_resume_then_refuse(tmp_path):
    out = tmp_path / "out"
    assert decide(out, KIND, _changed(Cfg()), overwrite=False) == "fresh"
    prepare(out, KIND.config, Cfg(), "fresh")
    assert yaml.safe_load((out / "cfg.yaml").read_text()) == {"a": 1, "b": "x"}
    assert decide(out, KIND, _changed(Cfg()), overwrite=False) == "resume"
    with pytest.raises(TaiaError, match=r"out differs in a, b$"):
        decide(out, KIND, _changed(Cfg(a=2, b="y")), overwrite=False)


def test_overwrite_deletes_only_when_prepared(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.txt").write_text("keep me until prepare")
    assert decide(out, KIND, _changed(Cfg()), overwrite=True) == "overwrite"
    assert (out / "other.txt").exists()  # deciding reads only
    prepare(out, KIND.config, Cfg(), "overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["cfg.yaml"]


def test_foreign_and_empty_dirs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert decide(out, KIND, _changed(Cfg()), overwrite=False) == "fresh"  # empty: as good as new
    (out / "x").write_text("")
    with pytest.raises(TaiaError, match="is not ours"):
        decide(out, KIND, _changed(Cfg()), overwrite=False)


def test_finished_and_explicit_resume(tmp_path):
    out = tmp_path / "out"
    prepare(out, TRAIN_LIKE.config, Cfg(), "fresh")
    with pytest.raises(TaiaError, match="needs resume"):
        decide(out, TRAIN_LIKE, _changed(Cfg()), overwrite=False)
    assert decide(out, TRAIN_LIKE, _changed(Cfg()), overwrite=False, resume=True) == "resume"
    (out / "done.json").write_text("{}")
    with pytest.raises(TaiaError, match="is finished"):
        decide(out, TRAIN_LIKE, _changed(Cfg()), overwrite=False, resume=True)
    assert decide(out, TRAIN_LIKE, _changed(Cfg()), overwrite=True) == "overwrite"
