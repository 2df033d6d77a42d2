"""Command configs: YAML file + flags + key=value overrides, validated with unknown keys as errors."""

from __future__ import annotations

import pytest
import yaml

from taia.config import ApplyConfig, InspectConfig, build_config, config_yaml, parse_overrides
from taia.errors import TaiaError


def _file(tmp_path, data) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_merge_order_later_wins(tmp_path):
    file = _file(
        tmp_path, {"base": "file-base", "adapter": "file-adapter", "out": "file-out", "spec": "taif"}
    )
    cfg = build_config(
        ApplyConfig,
        file,
        {"base": None, "out": "flag-out", "spec": "vanilla", "overwrite": False, "format": None},
        ["spec=taia-ref", "overwrite=true", "max_shard_size=1GB"],
    )
    assert cfg.base == "file-base"  # a None flag does not clear the file's value
    assert cfg.adapter == "file-adapter"
    assert cfg.out == "flag-out"  # flag beats file
    assert cfg.spec == "taia-ref"  # override beats flag and file
    assert cfg.overwrite is True
    assert cfg.max_shard_size == "1GB"
    assert cfg.format is None and cfg.resolved_format == "adapter"


def test_false_flag_does_not_clear_file(tmp_path):
    file = _file(tmp_path, {"base": "b", "finetuned": "f", "out": "o", "overwrite": True})
    cfg = build_config(ApplyConfig, file, {"overwrite": False, "allow_pickle": True})
    assert cfg.overwrite is True
    assert cfg.allow_pickle is True


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("yes", True)])
def test_bool_override_parsed(text, expected):
    cfg = build_config(ApplyConfig, None, {"base": "b", "adapter": "a", "out": "o"}, [f"overwrite={text}"])
    assert cfg.overwrite is expected


def test_non_bool_override_rejected():
    with pytest.raises(TaiaError, match="overwrite"):
        build_config(ApplyConfig, None, {"base": "b", "adapter": "a", "out": "o"}, ["overwrite=maybe"])


def test_unknown_key_named(tmp_path):
    with pytest.raises(TaiaError, match=r"invalid ApplyConfig: .*outt: unknown key"):
        build_config(ApplyConfig, None, {"base": "b", "adapter": "a", "out": "o"}, ["outt=x"])
    file = _file(tmp_path, {"base": "b", "adapter": "a", "out": "o", "bogus_option": 1})
    with pytest.raises(TaiaError, match=r"bogus_option: unknown key"):
        build_config(ApplyConfig, file, {})


def test_missing_required_key():
    with pytest.raises(TaiaError, match=r"out: Field required"):
        build_config(ApplyConfig, None, {"base": "b", "adapter": "a"})


def test_adapter_and_finetuned_exclusive():
    with pytest.raises(TaiaError, match="exactly one of adapter"):
        build_config(ApplyConfig, None, {"base": "b", "adapter": "a", "finetuned": "f", "out": "o"})
    with pytest.raises(TaiaError, match="exactly one of adapter"):
        build_config(ApplyConfig, None, {"base": "b", "out": "o"})


def test_format_adapter_needs_adapter():
    with pytest.raises(TaiaError, match="format=adapter needs a LoRA adapter"):
        build_config(ApplyConfig, None, {"base": "b", "finetuned": "f", "out": "o"}, ["format=adapter"])
    with pytest.raises(TaiaError, match="format"):
        build_config(ApplyConfig, None, {"base": "b", "adapter": "a", "out": "o"}, ["format=gguf"])


def test_resolved_format():
    assert ApplyConfig(base="b", adapter="a", out="o").resolved_format == "adapter"
    assert ApplyConfig(base="b", finetuned="f", out="o").resolved_format == "merged"
    assert ApplyConfig(base="b", adapter="a", out="o", format="merged").resolved_format == "merged"
    assert ApplyConfig(base="b", finetuned="f", out="o", format="merged").resolved_format == "merged"


def test_spec_accepts_inline_mapping(tmp_path):
    file = _file(tmp_path, {"base": "b", "adapter": "a", "out": "o", "spec": {"groups": {"attn": 1.0}}})
    cfg = build_config(ApplyConfig, file, {}, ["spec.name=x", "spec.groups.ffn=0.5"])
    assert cfg.spec == {"groups": {"attn": 1.0, "ffn": 0.5}, "name": "x"}


def test_parse_overrides():
    assert parse_overrides([]) == {}
    assert parse_overrides(["a=1", "b=true", "c=x", "d=", "e=1.5", "f=[1, 2]", "g=a=b"]) == {
        "a": 1,
        "b": True,
        "c": "x",
        "d": "",
        "e": 1.5,
        "f": [1, 2],
        "g": "a=b",
    }
    assert parse_overrides(["spec.name=x"]) == {"spec": {"name": "x"}}
    assert parse_overrides(["spec.name=x", "spec.groups.attn=1"]) == {
        "spec": {"name": "x", "groups": {"attn": 1}}
    }
    assert parse_overrides(["a=1", "a=2"]) == {"a": 2}


@pytest.mark.parametrize("item", ["novalue", "=x"])
def test_parse_overrides_rejects(item):
    with pytest.raises(TaiaError, match="expected key=value"):
        parse_overrides([item])


def test_parse_overrides_scalar_then_dotted_is_a_taia_error():
    with pytest.raises(TaiaError):
        parse_overrides(["spec=taia", "spec.name=x"])


def test_parse_overrides_malformed_value_is_a_taia_error():
    with pytest.raises(TaiaError):
        parse_overrides(["spec=["])


def test_config_file_errors(tmp_path):
    with pytest.raises(TaiaError, match="not found"):
        build_config(ApplyConfig, str(tmp_path / "missing.yaml"), {})
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(TaiaError, match="must hold a mapping"):
        build_config(ApplyConfig, str(path), {})


def test_empty_config_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    cfg = build_config(ApplyConfig, str(path), {"base": "b", "adapter": "a", "out": "o"})
    assert cfg.spec == "taia"


def test_resolved_config_round_trip(tmp_path):
    cfg = ApplyConfig(base="b", adapter="a", out="o", spec={"groups": {"attn": 0.5}}, overwrite=True)
    (tmp_path / "resolved.yaml").write_text(config_yaml(cfg))
    again = build_config(ApplyConfig, str(tmp_path / "resolved.yaml"), {})
    assert again == cfg


# --- inspect -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"model": "m"}, {"base": "b", "adapter": "a"}, {"base": "b", "finetuned": "f"}],
)
def test_inspect_valid(fields):
    cfg = build_config(InspectConfig, None, fields)
    for key, value in fields.items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m", "adapter": "a"},
        {"model": "m", "finetuned": "f"},
        {"base": "b"},
        {},
        {"base": "b", "adapter": "a", "finetuned": "f"},
        {"adapter": "a"},
    ],
)
def test_inspect_invalid(fields):
    with pytest.raises(TaiaError, match="give --model M, or --base B"):
        build_config(InspectConfig, None, fields)


def test_inspect_model_with_base_rejected():
    with pytest.raises(TaiaError):
        build_config(InspectConfig, None, {"model": "m", "base": "b"})


def test_inspect_unknown_key():
    with pytest.raises(TaiaError, match=r"invalid InspectConfig: .*jsn: unknown key"):
        build_config(InspectConfig, None, {"model": "m"}, ["jsn=true"])
    cfg = build_config(InspectConfig, None, {"model": "m"}, ["json_output=true"])
    assert cfg.json_output is True
