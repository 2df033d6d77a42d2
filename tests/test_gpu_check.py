"""benchmarks/gpu_check.py: its wheel list fits a device call, and `--device cpu --tiny` runs the whole
GPU-day path (build → taia train → batched generation → variant switching → merged apply) on CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check

from conftest import pinned

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def test_listed_wheels_fit_a_device_call_and_are_the_tested_versions():
    wheels = gpu_check.listed_wheels()
    assert {"trl", "datasets", "transformers"} <= {w.split("==")[0] for w in wheels}
    assert all("==" in w for w in wheels)  # pinned: the sizes below are of these exact wheels
    assert 0 < gpu_check.recorded_bytes() <= gpu_check.WHEEL_LIMIT
    # the wheels carried to the GPU are the versions CI tests (constraints.txt), not whatever is newest
    tested, listed = pinned(CONSTRAINTS), pinned(gpu_check.WHEELS)
    assert {n: v for n, v in listed.items() if tested.get(n) != v} == {}


def _fake_env(requires: dict[str, list[str]], versions: dict[str, str]):
    def req(name: str) -> list[str]:
        return requires.get(gpu_check._norm(name), [])

    return req, lambda name: versions.get(gpu_check._norm(name))


def test_image_check_names_a_missing_requirement_and_an_unmet_version():
    # an environment of the tested versions (constraints.txt), the GPU image's packages at some version
    versions = {gpu_check._norm(n): "1" for n in gpu_check.IMAGE_HAS} | pinned(CONSTRAINTS)
    req, ver = _fake_env({}, versions)
    clean = {"wheels_missing_a_requirement": "none", "versions_unmet": "none"}
    assert gpu_check.image_check(req, ver) == clean
    req, ver = _fake_env({"transformers": ["kernels>=0.4", "tokenizers>=2"]}, versions)
    got = gpu_check.image_check(req, ver)
    assert got["wheels_missing_a_requirement"] == "kernels"
    unmet = got["versions_unmet"]
    assert f"tokenizers {versions['tokenizers']} (needs >=2)" in unmet and "kernels None" in unmet


def test_this_environment_fits_the_image_where_it_holds_the_listed_versions():
    # installed metadata tells the listed wheels' requirements only where the installed version is the
    # listed one (the constraints install); a newer upstream release says nothing about the list
    if other := gpu_check.listed_not_installed():
        pytest.skip("not the listed versions: " + "; ".join(other))
    assert gpu_check.image_check() == {"wheels_missing_a_requirement": "none", "versions_unmet": "none"}


def test_wheel_bytes_refuses_more_than_64_mib(tmp_path):
    (tmp_path / "a.whl").write_bytes(b"x" * 10)
    assert gpu_check.wheel_bytes(tmp_path) == 10
    with open(tmp_path / "big.whl", "wb") as f:
        f.truncate(gpu_check.WHEEL_LIMIT)  # sparse: no disk used
    with pytest.raises(SystemExit, match="64 MiB"):
        gpu_check.wheel_bytes(tmp_path)


@pytest.mark.slow
def test_tiny_cpu_run_covers_every_part(tmp_path, capsys):
    results = gpu_check.main(
        ["--device", "cpu", "--tiny", "--steps", "4", "--json", str(tmp_path / "r.json")]
    )
    assert results is not None and (tmp_path / "r.json").is_file()
    assert results["train"]["steps"] == 4 and results["train"]["tokens_per_second"] > 0
    assert results["generation"]["speedup"] > 0 and results["generation"]["identical"].endswith("/4")
    assert results["variants"]["same_outputs"] == "4/4"  # in-place switching = reload + apply_model
    assert results["apply_merged"]["attn_tensors_kept"] > 0
    if not gpu_check.listed_not_installed():
        assert results["image"] == {"wheels_missing_a_requirement": "none", "versions_unmet": "none"}
    assert "| train | tokens_per_second |" in capsys.readouterr().out
