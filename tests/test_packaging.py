"""A non-editable install works: the wheel holds every package data file (task YAMLs, the quickstart
experiment), and `taia` imported from the unpacked wheel, outside the checkout, finds them; the example
configs name a hub copy of every local training file that has one (so they run without ../shared/data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import pinned
from taia.io.rows import data_root, looks_like_hub_id

REPO = Path(__file__).parents[1]
# Qi et al.'s files, pinned to the commit ../shared/data copied them from (the same bytes, checked by sha256).
QI = "https://raw.githubusercontent.com/LLM-Tuning-Safety/LLMs-Finetuning-Safety/8a3b38f11be1c3829e2b0ed379d3661ebc84e7db/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the checkout (a build in place would leave build/ and egg-info behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    build = "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"
    done = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, check=True)
    return src / "dist" / done.stdout.strip().splitlines()[-1]


def package_files() -> list[str]:
    """Every file under src/taia that a wheel must carry, as wheel paths (taia/...)."""
    root = REPO / "src"
    return sorted(
        p.relative_to(root).as_posix()
        for p in (root / "taia").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_wheel_holds_every_package_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = package_files()
    data = [f for f in wanted if not f.endswith(".py")]
    assert "taia/run/quickstart.yaml" in data and "taia/eval/tasks/gsm8k.yaml" in data
    assert len([f for f in data if f.startswith("taia/eval/tasks/")]) >= 10
    assert [f for f in wanted if f not in names] == []
    entry_points = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-')[0]}-0.1.0.dist-info/entry_points.txt")
    assert b"taia = taia.cli:main" in entry_points


def test_unpacked_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    check = (
        "import taia, yaml; from importlib import resources; from taia.eval.tasks import task_names; "
        "from taia.config import build_config; from taia.run import ExperimentConfig; "
        "qs = resources.files('taia.run') / 'quickstart.yaml'; "
        "cfg = build_config(ExperimentConfig, str(qs), {}); "
        "print(taia.__file__); print(','.join(task_names())); print(','.join(cfg.eval_config().tasks))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith(str(site))  # this copy, not the editable checkout
    stems = sorted(p.stem for p in (REPO / "src/taia/eval/tasks").glob("*.yaml"))
    assert out[1].split(",") == stems and out[2]


@pytest.mark.slow
def test_quickstart_from_the_wheel_with_a_data_dir(wheel: Path, tmp_path: Path, chat_model) -> None:
    """`taia quickstart` on a tiny model, from the unpacked wheel, reading its data through TAIA_DATA_DIR."""
    root = data_root()
    if root is None:
        pytest.skip("needs ../shared/data or TAIA_DATA_DIR")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    argv = [sys.executable, "-m", "taia.cli", "quickstart", f"model={chat_model('llama')}", "out=qs",
            "train.data=[{path: alpaca_gpt4/alpaca_en_demo.json, format: alpaca, count: 8}]",
            "train.max_steps=1", "train.batch_size=8", "train.micro_batch_size=4", "eval.limit=1",
            "eval.tasks=[csqa]", "eval.max_new_tokens=2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site), "TAIA_DATA_DIR": str(root)}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "taia quickstart: done in" in done.stdout and (tmp_path / "qs" / "report.md").is_file()
    manifest = (tmp_path / "qs" / "train" / "taia_train.json").read_text()
    assert str(root / "alpaca_gpt4" / "alpaca_en_demo.json") in manifest


def _train_sources(path: Path) -> list[dict]:
    cfg = yaml.safe_load(path.read_text())
    data = (cfg.get("train") or {}).get("data") if "train" in cfg or "eval" in cfg else cfg.get("data")
    return [{"path": d} if isinstance(d, str) else d for d in data or []]


def test_example_training_data_names_a_copy() -> None:
    """Each local training file in the examples (and the quickstart) also names its copy on the hub or the
    web, so they run without ../shared/data; Alpaca-GPT4's demo file is LLaMA-Factory's hub copy."""
    paths = [*(REPO / "examples").rglob("*.yaml"), REPO / "src/taia/run/quickstart.yaml"]
    sources = [(p.name, s) for p in paths for s in _train_sources(p)]
    assert len(sources) >= 14
    local = [(name, s) for name, s in sources if not looks_like_hub_id(s["path"])]
    missing = [(n, s["path"]) for n, s in local if "hub" not in s]
    assert missing == []
    assert all(s["hub"].startswith(QI) for _, s in local if s["path"].startswith("qi2023") and "hub" in s)
    alpaca = [s for _, s in local if s["path"] == "alpaca_gpt4/alpaca_en_demo.json"]
    demo = ("llamafactory/demo_data", "alpaca_en_demo")
    assert alpaca and all((s["hub"], s.get("subset")) == demo for s in alpaca)


def test_ci_and_the_readme_install_the_tested_versions() -> None:
    """One reproducible install: CI and the README's command pass the constraints file, which pins every
    requirement of taia (and of its extras) exactly; CI runs the README's test command."""
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "pins=(-c constraints.txt)" in ci and '"${pins[@]}" "torch==2.13.0" -e ".[dev]"' in ci
    assert 'pip install -c constraints.txt "torch==2.13.0" -e ".[dev]"' in readme
    assert "python -m pytest -q" in readme and "\npython -m pytest -q\n" in ci
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = pinned(REPO / "constraints.txt")
    assert pins["torch"] == "2.13.0"
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    reqs = [Requirement(r) for r in wanted if not r.startswith(("taia", "vllm"))]  # vLLM: GPU-only extra
    unpinned = [r.name for r in reqs if canonicalize_name(r.name) not in pins]
    assert unpinned == []
    assert [str(r) for r in reqs if not r.specifier.contains(pins[canonicalize_name(r.name)])] == []
