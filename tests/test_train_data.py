"""Label masks of the rows SFTTrainer really trains on cover exactly the assistant tokens, for every data
format and every masking route; bad data, models and templates fail before training with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CHATML, chat_tokenizer
from taia.cli import main
from taia.data.mixing import DataSource, mix
from taia.errors import TaiaError
from taia.train import TrainConfig
from taia.train.chat import prepare
from taia.train.model import load_base
from taia.train.trainer import make_trainer

MARKED = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>\\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MULTI = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
FORMATS = {
    "alpaca": {"instruction": "Add", "input": "2 and 3", "output": "5"},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey."}]},
    "messages": {"messages": MULTI[:3]},
    "prompt_completion": {"prompt": "Capital of France?", "completion": "Paris"},
}


def expected_mask(conv: list[dict[str, str]]) -> list[int]:
    """Per token of the ChatML rendering (one token per character, one per special): 1 on the
    assistant's content and its closing `<|im_end|>\\n`, 0 elsewhere."""
    mask: list[int] = []
    for m in conv:
        mask += [0] * (1 + len(m["role"]) + 1)  # <|im_start|> role \n
        mask += [int(m["role"] == "assistant")] * (len(m["content"]) + 2)  # content <|im_end|> \n
    return mask


def trained_rows(tmp_path: Path, model_dir: Path, convs, tokenizer):
    cfg = TrainConfig(model=str(model_dir), data=["unused.jsonl"], out=str(tmp_path / "o"), max_length=512)
    prepared = prepare(convs, tokenizer)
    trainer = make_trainer(cfg, tmp_path / "o", load_base(model_dir), tokenizer, prepared)
    return prepared, list(trainer.train_dataset)


def write(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_single_turn_formats_mask_exactly_the_answer(tmp_path, chat_model, fmt):
    src = DataSource(path=str(write(tmp_path, f"{fmt}.jsonl", [FORMATS[fmt]] * 3)), format=fmt)
    convs = mix([src], None, seed=0).conversations
    prepared, rows = trained_rows(tmp_path, chat_model("llama"), convs, chat_tokenizer())
    assert prepared.masking.startswith("completion-only")
    for conv, row in zip(convs, rows, strict=True):
        assert [int(x != -100) for x in row["labels"]] == expected_mask(conv)


@pytest.mark.parametrize(("template", "route"), [(CHATML, "prefix-rendered"), (MARKED, "TRL generation")])
def test_multi_turn_masks_every_assistant_turn(tmp_path, chat_model, template, route):
    prepared, rows = trained_rows(
        tmp_path, chat_model("llama"), [MULTI, MULTI[1:3]], chat_tokenizer(template)
    )
    assert route in prepared.masking
    for conv, row in zip([MULTI, MULTI[1:3]], rows, strict=True):
        assert [int(x != -100) for x in row["labels"]] == expected_mask(conv)
        assert sum(x != -100 for x in row["labels"]) == len("Hello!") + 2 + (len("4") + 2) * (len(conv) > 3)


def test_non_prefix_preserving_template_is_refused(chat_model):
    # Renders only the last turn: earlier turns change once later ones exist.
    last_only = (
        "{{ '<|im_start|>' + messages[-1]['role'] + '\\n' + messages[-1]['content'] + '<|im_end|>\\n' }}"
    )
    with pytest.raises(TaiaError, match="prefix-preserving"):
        prepare([MULTI], chat_tokenizer(last_only))


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["train", *argv])
    return code, capsys.readouterr().err


def test_bad_inputs_fail_with_one_line(tmp_path, chat_model, capsys):
    good = write(tmp_path, "good.jsonl", [FORMATS["alpaca"]])
    bad = write(tmp_path, "bad.jsonl", [FORMATS["alpaca"], {"instruction": "x"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    base = ["--model", str(chat_model("llama")), "--out", str(tmp_path / "o")]
    cases = [
        (["--data", str(bad), *base], f"{bad}:2: missing field 'output'"),
        (["--data", str(empty), *base], "no rows"),
        (["--data", str(good), "--model", "smollm2-135m-instruc", "--out", "x"], "did you mean"),
        (["--data", str(good), *base, "data.0.format=alpacca"], "did you mean 'alpaca'"),
        (["--data", str(good), *base, "--method", "tofu"], "method"),
        (["--data", str(good), *base, "trainer_args.learnin_rate=1"], "did you mean"),
        (["--data", str(good), *base, "trainer_args.learning_rate=1"], "set by taia"),
        (["--data", str(good), *base, "scheduler=cosin"], "did you mean 'cosine'"),
        (["--data", str(good), *base, "batch_size=6", "micro_batch_size=4"], "not a multiple"),
    ]
    for argv, message in cases:
        code, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "o" / "taia_train.json").exists()


def test_tokenizer_without_chat_template(tmp_path, chat_model, capsys):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for f in chat_model("llama").iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    chat_tokenizer(None).save_pretrained(model_dir)
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    data = write(tmp_path, "d.jsonl", [FORMATS["alpaca"]])
    argv = ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"), "--max-steps", "1"]
    code, err = run_cli(capsys, *argv, "batch_size=1")
    assert code == 2 and "has no chat template; set chat_template=chatml" in err
    code, _ = run_cli(capsys, *argv, "batch_size=1", "chat_template=chatml", "overwrite=true")
    assert code == 0 and (tmp_path / "o" / "taia_train.json").is_file()


def test_config_shorthands_and_defaults():
    cfg = TrainConfig(data="d.json", out="o", method="toa")
    assert (cfg.method, cfg.only, cfg.variant, cfg.learning_rate) == ("lora", "attn", "TOA (LoRA)", 2e-4)
    assert [d.path for d in cfg.data] == ["d.json"]
    full = TrainConfig(data=["d.json"], out="o", method="full", only="ffn")
    assert (full.variant, full.learning_rate) == ("TOF (full)", 5e-5)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.epochs, cfg.warmup) == (16, 32, 0.05, 1, 0.03)
    assert (cfg.batch_size, cfg.max_length, cfg.scheduler) == (128, 3072, "cosine")
    with pytest.raises(ValueError, match="contradicts"):
        TrainConfig(data="d.json", out="o", method="tof", only="attn")
    with pytest.raises(ValueError, match="pick one"):
        TrainConfig(data="d.json", out="o", resume=True, overwrite=True)


def test_example_configs_validate_and_the_mix_resolves():
    from taia.config import build_config
    from taia.io.rows import data_root

    examples = sorted((Path(__file__).parents[1] / "examples" / "train").glob("*.yaml"))
    assert len(examples) >= 4
    configs = {p.stem: build_config(TrainConfig, str(p), {}) for p in examples}
    root = data_root()
    if root is None or not (root / "alpaca_gpt4").is_dir():
        pytest.skip("needs ../shared/data for the mix")
    mixture = mix(configs["ood-mix"].data, root, seed=configs["ood-mix"].seed)
    assert [s["taken"] for s in mixture.manifest["sources"]] == [300, 100]
