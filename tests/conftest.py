"""Tiny random-weight models built in-process (no network), saved once per session.

`tiny_config(model_type)` gives a 2-layer config of any covered architecture; the `saved` fixtures write
a base checkpoint, a "full fine-tune" of it (every tensor perturbed), and a PEFT LoRA adapter with
random non-zero B matrices on every linear layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_COMMON = dict(
    vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip
_EXTRA: dict[str, dict] = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 8},
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8},
    "gemma3_text": {"head_dim": 8},
    "phi3": {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
    "gpt_neox": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 32,
    },
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "head_dim": 8},
}  # fmt: skip
MODEL_TYPES = [*_EXTRA, "gpt2"]


def tiny_config(model_type: str):
    from transformers import AutoConfig

    if model_type == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64)
    return AutoConfig.for_model(model_type, **_COMMON, **_EXTRA[model_type])


def tiny_model(model_type: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type))
    return model.eval()


def perturbed(model, seed: int = 1, scale: float = 0.05):
    """A "full fine-tune": every tensor moved by seeded noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


def lora_adapter(model, target_modules="all-linear", seed: int = 2, r: int = 4):
    """A PEFT LoRA model on `model` whose B matrices are random (so every module has a real update)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=target_modules, lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return peft_model.eval()


class Saved:
    """Paths of one architecture's saved base, full fine-tune and LoRA adapter."""

    def __init__(self, root: Path, model_type: str) -> None:
        self.model_type = model_type
        self.base = root / "base"
        self.finetuned = root / "finetuned"
        self.adapter = root / "adapter"
        base = tiny_model(model_type)
        base.save_pretrained(self.base)
        perturbed(tiny_model(model_type)).save_pretrained(self.finetuned)
        lora_adapter(tiny_model(model_type)).save_pretrained(self.adapter)


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """saved(model_type) → Saved paths, built once per architecture per session."""
    cache: dict[str, Saved] = {}

    def get(model_type: str) -> Saved:
        if model_type not in cache:
            cache[model_type] = Saved(tmp_path_factory.mktemp(model_type), model_type)
        return cache[model_type]

    return get


@pytest.fixture(scope="session")
def llama(saved) -> Saved:
    return saved("llama")


def logits(model, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    ids = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        return model(input_ids=ids).logits


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat_tokenizer(template: str | None = CHATML):
    """A character-level tokenizer (100 ids, fits the tiny vocab of 128) with a ChatML template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + [chr(i) for i in range(32, 127)] + ["\n"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    out.chat_template = template
    return out


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory):
    """chat_model(model_type) → dir of a tiny random model with the character-level ChatML tokenizer."""
    cache: dict[str, Path] = {}

    def get(model_type: str = "llama") -> Path:
        if model_type not in cache:
            path = tmp_path_factory.mktemp(f"chat-{model_type}")
            tiny_model(model_type).save_pretrained(path)
            chat_tokenizer().save_pretrained(path)
            cache[model_type] = path
        return cache[model_type]

    return get


def mc_task_file(folder: Path, name: str = "yesno") -> Path:
    """A custom multiple-choice task file with 3 rows beside it (`folder/NAME.yaml` + `NAME.jsonl`)."""
    import json

    import yaml

    rows = [
        {"q": f"Question {i}?", "choices": ["no", "yes"], "label": i % 2, "uid": str(i)} for i in range(3)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"question": "q", "options": "choices", "answer": "label", "id": "uid"}
    spec = {"data": f"{name}.jsonl", "kind": "mc", "fields": fields}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / f"{name}.yaml"


def listing(folder: Path) -> list[str]:
    """Every path under `folder`, relative, sorted (what a refusal must leave as it was)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def pinned(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements / constraints file, by canonical package name."""
    from packaging.utils import canonicalize_name

    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(n): v for n, v in (line.split("==") for line in lines if "==" in line)}
