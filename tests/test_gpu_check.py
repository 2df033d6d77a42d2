"""benchmarks/gpu_check.py: its wheel list fits a device call, and `--device cpu --tiny` runs the whole
GPU-day path (build → taia train → batched generation → variant switching → merged apply) on CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check


def test_listed_wheels_fit_a_device_call_and_miss_no_requirement():
    wheels = gpu_check.listed_wheels()
    assert {"trl", "datasets", "transformers"} <= {w.split("==")[0] for w in wheels}
    assert all("==" in w for w in wheels)  # pinned: the sizes below are of these exact wheels
    assert 0 < gpu_check.recorded_bytes() <= gpu_check.WHEEL_LIMIT
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
    assert results["image"] == {"wheels_missing_a_requirement": "none", "versions_unmet": "none"}
    assert "| train | tokens_per_second |" in capsys.readouterr().out
