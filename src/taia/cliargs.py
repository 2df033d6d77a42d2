"""The `taia VERB` options, built from the verb's config model (as mergekit builds its options from its
pydantic model): every field is a flag named after it (`batch_size` → `--batch-size`), typed from its
annotation (bool → switch, Literal → choices, int / float, list of str → `a,b`, nested or mapping → a YAML
value) and helped by its `Field(description=...)`, so a new config field is a new flag. Help shared by
several configs (`--data-dir`, `--allow-pickle`, …) lives once, in `HELP`.

Exercised by `taia VERB --help` and tests/test_cli.py (every config field is in every verb's help).
"""

from __future__ import annotations

import argparse
import types
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

if TYPE_CHECKING:  # pydantic loads with the chosen verb's config, not for `taia --help`
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

HELP = {
    "data_dir": "root of local data files (default: $TAIA_DATA_DIR, else ../shared/data when it exists)",
    "allow_pickle": "load .bin weights (with weights_only=True)",
    "trust_remote_code": "run the model repo's own code (transformers' trust_remote_code)",
    "adapter": "PEFT LoRA (or MoLoRA) adapter dir",
    "finetuned": "fully fine-tuned checkpoint dir",
    "chat_template": "chatml, a .jinja file or a template string (for a tokenizer without a template)",
    "seed": "random seed (sampled subsets, initialisation, data order)",
}
FLAGS = {"json_output": "--json"}  # where the flag is not the field's name
FINE_TUNE = ("adapter", "finetuned")  # never both on one command line


@dataclass(frozen=True)
class Verb:
    """One sub-command: its help line and config model (`module:Class`, imported only when chosen)."""

    help: str
    config: str
    positional: tuple[str, str] = ("[CONFIG.yaml] [key=value]", "config file and overrides")
    exclusive: tuple[str, ...] = ()  # fields given by at most one flag
    arguments: tuple[str, ...] = ()  # fields given as positional arguments instead of flags

    def model(self) -> type[BaseModel]:
        module, _, name = self.config.partition(":")
        cls: type[BaseModel] = getattr(import_module(module), name)
        return cls


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def add_options(p: argparse.ArgumentParser, verb: Verb) -> None:
    """The positionals, then one option per field of the verb's config, in the model's order."""
    if verb.positional[0]:
        p.add_argument("args", nargs="*", metavar=verb.positional[0], help=verb.positional[1])
    group = p.add_mutually_exclusive_group() if verb.exclusive else None
    for name, field in verb.model().model_fields.items():
        kind, text = option_kind(field), help_text(name, field)
        if name in verb.arguments:
            p.add_argument(name, help=text)
        else:
            target = group if group is not None and name in verb.exclusive else p
            kind["action"] = once(kind.get("action", "store"))
            target.add_argument(flag(name), dest=name, default=None, help=text, **kind)


def once(action: str | type[argparse.Action]) -> str | type[argparse.Action]:
    """The action, refusing a second use of its flag (argparse would keep the last one silently); a
    repeatable flag (`append`: train's --data) stays as it is."""
    known: dict[str, type[argparse.Action]] = {
        "store": argparse._StoreAction,
        "store_true": argparse._StoreTrueAction,
    }
    if action == "append":
        return action
    base = known[action] if isinstance(action, str) else action

    class Once(base):  # type: ignore[valid-type,misc]
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
            if getattr(namespace, self.dest, None) is not None:  # every flag's default is None
                parser.error(f"argument {'/'.join(self.option_strings)}: given more than once")
            super().__call__(parser, namespace, values, option_string)

    return Once


def help_text(name: str, field: FieldInfo) -> str:
    """The field's description (or the shared one), with its default; `%` escaped for argparse."""
    from pydantic import BaseModel

    text = field.description or HELP.get(name, "")
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if default not in (None, False, [], {}) and not isinstance(default, BaseModel):
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text = f"{text} (default: {shown})" if text else f"default: {shown}"
    return text.replace("%", "%%")


def option_kind(field: FieldInfo) -> dict[str, Any]:
    """argparse's type / choices / action for a field's annotation (None is left out of a union)."""
    args = [a for a in _members(field.annotation) if a is not type(None)]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if args == [bool]:
        return {"action": argparse.BooleanOptionalAction if field.default is True else "store_true"}
    if args and all(get_origin(a) is Literal for a in args):
        # a field that takes shorthands of its own (train's method: toa, tof) checks its value itself
        return {"choices": [c for a in args for c in get_args(a)]} if extra.get("cli_choices", True) else {}
    if str in args:
        return {}
    if args in ([int], [float]):
        return {"type": args[0]}
    if len(args) == 1 and get_origin(args[0]) is list:
        item = get_args(args[0])[0]
        if item is str:
            return {"metavar": "A,B,..."}  # comma-separated: the config splits it
        return {"action": "append"}  # repeatable, one entry each (train's --data)
    if int in args and any(get_origin(a) is dict for a in args):
        return {"type": count_or_mapping}
    return {"type": yaml_value, "metavar": "YAML"}


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def count_or_mapping(text: str) -> int | dict[str, Any]:
    """`--limit 300`, or a limit per task as a YAML mapping (`--limit '{persona: 100, csqa: 300}'`)."""
    value = _yaml_or_none(text)
    if isinstance(value, (int, dict)) and not isinstance(value, bool):
        return value
    raise argparse.ArgumentTypeError(f"expected N or {{task: N, ...}}, got {text!r}")


def yaml_value(text: str) -> Any:
    """A nested section or mapping given on the command line, e.g. `--lora '{r: 8, alpha: 16}'`."""
    value = _yaml_or_none(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a YAML value, got {text!r}")
    return value


def _yaml_or_none(text: str) -> Any:
    import yaml

    from taia.config import safe_yaml

    try:
        return safe_yaml(text)
    except yaml.YAMLError:
        return None
