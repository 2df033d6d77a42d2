"""Chat templates shared by training and evaluation: the `chat_template` option (`chatml`, a .jinja file or a
template string) and the ChatML template it names. Exercised by `taia train chat_template=chatml` and
`taia eval` on a tokenizer without a template; tests: tests/test_train_data.py (a tokenizer without one,
refused, then given chatml), and every `taia eval` test, whose tokenizer passes through `set_chat_template`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taia.errors import TaiaError

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def set_chat_template(tokenizer: Any, option: str | None, source: str) -> None:
    """Apply the `chat_template` option (`chatml`, a .jinja file, or a template); require one in the end."""
    if option == "chatml":
        tokenizer.chat_template = CHATML
    elif option is not None and Path(option).is_file():
        tokenizer.chat_template = Path(option).read_text()
    elif option is not None and ("{%" in option or "{{" in option):
        tokenizer.chat_template = option
    elif option is not None:
        raise TaiaError(f"chat_template {option!r} is not a file, a Jinja template, or 'chatml'")
    if not tokenizer.chat_template:
        raise TaiaError(
            f"the tokenizer of {source} has no chat template; set chat_template=chatml, "
            "chat_template=PATH.jinja, or a Jinja template string"
        )
