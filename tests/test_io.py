"""The streaming shard writer: coalesced copies and aligned data, read back by safetensors itself."""

from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from taia.io.checkpoint import _runs, read_header, write_shard


def test_writer_coalesces_adjacent_ranges_and_aligns_data(tmp_path):
    src = {f"t{i}": torch.randn(3, 5 + i) for i in range(4)}
    save_file(src, str(tmp_path / "src.safetensors"))
    refs, _ = read_header(tmp_path / "src.safetensors")
    ordered = sorted(refs, key=lambda k: refs[k].start)
    computed = torch.arange(6, dtype=torch.float32)
    items = [(n, refs[n]) for n in ordered[:2]] + [("new", computed)] + [(n, refs[n]) for n in ordered[2:]]
    assert len(list(_runs(items))) == 3  # two merged runs around the computed tensor

    data_start = min(r.start for r in refs.values())
    write_shard(tmp_path / "out.safetensors", items, align_with=data_start)
    out_refs, _ = read_header(tmp_path / "out.safetensors")
    assert min(r.start for r in out_refs.values()) % 4096 == data_start % 4096
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("new"), computed)
        for name, t in src.items():
            assert torch.equal(f.get_tensor(name), t)
