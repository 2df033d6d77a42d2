"""Hugging Face inputs: configs, local dirs or hub ids, PEFT adapter dirs.

Local paths always work offline; hub ids go through huggingface_hub as usual. Exercised by
`taia apply --base B --adapter A --out O` and tests/test_apply_adapter.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from taia.errors import TaiaError
from taia.io.checkpoint import DTYPE_NAMES, FLOAT_DTYPES, load_pickle, read_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SAFE = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
CONFIG_ONLY = ["config.json"]  # allow_patterns when only a hub model's config is needed
# Files that describe how to use a model (not its weights); copied next to merged outputs.
AUX_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
)  # fmt: skip


def copy_aux(src: Path, dst: Path, skip: frozenset[str] = frozenset()) -> None:
    """Copy the config / tokenizer / chat-template files that exist in `src` (minus `skip`) to `dst`."""
    for name in AUX_FILES:
        if name not in skip and (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def resolve_dir(path_or_id: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local directory for a path, a named model (`smollm2-135m-instruct`) or a hub id (org/name)."""
    from taia.models import is_model_name, materialize

    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if is_model_name(str(path_or_id)):
        return materialize(str(path_or_id))
    if path.exists() or str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") != 1:
        raise TaiaError(f"{path_or_id} is not a directory (expected a local model dir or a hub id org/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id), allow_patterns=allow_patterns))
    except Exception as e:  # noqa: BLE001 — network, auth and 404 errors all end the same way
        # A typo in a local path looks like `owner/name` too: say both, in one line, with the hub's reason.
        raise TaiaError(
            f"{path_or_id} is neither a local path nor reachable on the hub ({type(e).__name__}: "
            f"{_first_sentence(str(e))})"
        ) from None


def _first_sentence(text: str) -> str:
    """The hub's errors run to several lines of advice; the first sentence says what happened."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line.split(". ")[0].rstrip(".")[:200]


def load_kwargs(allow_pickle: bool, trust_remote_code: bool) -> dict[str, Any]:
    """The pickle rule and remote-code choice, spelled out for every `from_pretrained` of weights:
    safetensors only unless pickle is allowed, and pickle only through weights_only=True."""
    return {
        "use_safetensors": None if allow_pickle else True,
        "weights_only": True,
        "trust_remote_code": trust_remote_code,
    }


def load_config(path_or_id: str | Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    from taia.models import is_model_name

    path = Path(path_or_id).expanduser()
    if is_model_name(str(path_or_id)):
        path = resolve_dir(path_or_id)
    if path.is_dir() and not (path / "config.json").is_file():
        raise TaiaError(f"{path} has no config.json (is it a model directory?)")
    try:
        return AutoConfig.from_pretrained(
            str(path if path.is_dir() else path_or_id), trust_remote_code=trust_remote_code
        )
    except Exception as e:  # noqa: BLE001
        raise TaiaError(f"cannot load a model config from {path_or_id}: {e}") from None


def load_adapter(root: Path, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a PEFT adapter dir: its config dict and its tensors (safetensors, or pickle if allowed)."""
    cfg_path = root / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise TaiaError(f"{root} is not a PEFT adapter dir (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise TaiaError(f"{cfg_path} is not valid JSON: {e}") from None
    if (root / ADAPTER_SAFE).is_file():
        refs, _ = read_header(root / ADAPTER_SAFE)  # the format's rules, before safetensors' own
        check_adapter_tensors(root / ADAPTER_SAFE, ((k, r.dtype, r.shape) for k, r in refs.items()))
        return config, load_file(str(root / ADAPTER_SAFE))
    if (root / ADAPTER_PICKLE).is_file():
        if not allow_pickle:
            raise TaiaError(
                f"{root} has only a pickle adapter ({ADAPTER_PICKLE}), which can run code when loaded; "
                "pass --allow-pickle to load it with weights_only=True"
            )
        tensors = load_pickle(root / ADAPTER_PICKLE)
        described = ((k, DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for k, t in tensors.items())
        check_adapter_tensors(root / ADAPTER_PICKLE, described)
        return config, tensors
    raise TaiaError(f"missing weights file in adapter dir {root} (expected {ADAPTER_SAFE})")


_MATRICES = frozenset({"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"})


def check_adapter_tensors(path: Path, tensors: Iterable[tuple[str, str, tuple[int, ...]]]) -> None:
    """Every adapter tensor is floating point (an integer one would be merged as a weight of 1e9), and
    every LoRA A/B is a matrix (a 1-D one gives an adapter PEFT cannot load); from (name, dtype, shape)."""
    for name, dtype, shape in tensors:
        if dtype not in FLOAT_DTYPES:
            raise TaiaError(
                f"{path}: adapter tensor {name} is {dtype}; adapter weights must be floating point"
            )
        if _MATRICES.intersection(name.split(".")) and len(shape) != 2:
            raise TaiaError(f"{path}: {name} has shape {list(shape)}; a LoRA A/B tensor must be 2-D")
