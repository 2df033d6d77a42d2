"""TaiaSpec: presets, YAML files, λ resolution with layer ranges and overrides, and the plan built from it."""

from __future__ import annotations

import math
import textwrap

import pytest
from pydantic import ValidationError

from conftest import tiny_config
from taia.classify import GROUPS, ModelMap, ParamInfo, model_map
from taia.errors import TaiaError
from taia.plan import Decision, make_plan, summarize
from taia.spec import PRESETS, GroupRule, Override, TaiaSpec, load_spec

CLASSIFIED = [g for g in GROUPS if g != "other"]


def _kept(spec: TaiaSpec) -> set[str]:
    return {g for g in CLASSIFIED if spec.resolve("x", ParamInfo(g, 0)) == 1.0}


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("taia", {"attn"}),
        ("taia-ref", {"attn", "norm", "embed", "head"}),
        ("taif", {"ffn", "experts", "router"}),
        ("vanilla", set(CLASSIFIED)),
        ("base", set()),
    ],
)
def test_presets(name, kept):
    spec = load_spec(name)
    assert spec is PRESETS.get(name)
    assert spec.name == name
    assert _kept(spec) == kept
    # Every classified group is named (explicitly reverted or kept), layer or not.
    assert set(spec.groups) == set(CLASSIFIED)
    for g in CLASSIFIED:
        for layer in (0, 7, None):
            assert spec.resolve("t", ParamInfo(g, layer)) == (1.0 if g in kept else 0.0)
    assert spec.resolve("t", ParamInfo("other", 0)) is None
    assert spec.keeps_anything() == bool(kept)


def test_preset_names():
    assert set(PRESETS.names()) == {"taia", "taia-ref", "taif", "vanilla", "base"}
    for name in PRESETS:
        assert load_spec(name).name == name


def test_unknown_preset_suggests():
    with pytest.raises(TaiaError, match="did you mean") as e:
        load_spec("taai")
    assert "'taia'" in str(e.value)
    assert "spec preset" in str(e.value)


def test_load_spec_passthrough_and_dict():
    spec = PRESETS.get("taif")
    assert load_spec(spec) is spec
    d = load_spec({"groups": {"attn": 0.25}})
    assert d.name == "custom"
    assert d.resolve("t", ParamInfo("attn", 3)) == 0.25
    assert d.resolve("t", ParamInfo("ffn", 3)) == 0.0


def _write(tmp_path, text: str, name: str = "myspec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_file_shorthand_and_layer_range(tmp_path):
    path = _write(
        tmp_path,
        """
        groups:
          attn: 0.5
          ffn: {lambda: 1.0, layers: [0, 0]}
        """,
    )
    spec = load_spec(path)
    assert spec.name == "myspec"  # defaults to the file stem
    assert load_spec(str(path)) == spec
    assert spec.groups["attn"] == GroupRule(lam=0.5)
    assert spec.groups["ffn"] == GroupRule(lam=1.0, layers=(0, 0))
    assert spec.resolve("model.layers.0.mlp.up_proj.weight", ParamInfo("ffn", 0)) == 1.0
    assert spec.resolve("model.layers.1.mlp.up_proj.weight", ParamInfo("ffn", 1)) == 0.0
    assert spec.resolve("ffn.outside.layers", ParamInfo("ffn", None)) == 0.0
    assert spec.resolve("a", ParamInfo("attn", 1)) == 0.5
    assert spec.resolve("a", ParamInfo("attn", None)) == 0.5
    assert spec.resolve("n", ParamInfo("norm", 0)) == 0.0  # unnamed groups: reverted
    assert spec.resolve("o", ParamInfo("other", 0)) is None  # unnamed `other`: unassigned
    assert spec.keeps_anything()


def test_yaml_name_in_file_wins(tmp_path):
    path = _write(tmp_path, "name: early-ffn\ngroups: {ffn: 1}\n")
    assert load_spec(path).name == "early-ffn"


def test_layer_range_inclusive():
    rule = GroupRule(lam=0.7, layers=(2, 4))
    assert [rule.coefficient(i) for i in range(6)] == [0.0, 0.0, 0.7, 0.7, 0.7, 0.0]
    assert rule.coefficient(None) == 0.0


def test_overrides_first_match_wins(tmp_path):
    path = _write(
        tmp_path,
        r"""
        groups:
          attn: 1.0
        overrides:
          - {pattern: 'layers\.1\.self_attn\.q_proj', lambda: 0.25}
          - {pattern: 'q_proj', lambda: 0.75}
          - {pattern: 'mlp\.down_proj', group: attn}
          - {pattern: 'down_proj', lambda: 0.5}
          - {pattern: 'lm_head', group: ffn}
        """,
    )
    spec = load_spec(path)
    assert len(spec.overrides) == 5
    assert spec.resolve("model.layers.1.self_attn.q_proj.weight", ParamInfo("attn", 1)) == 0.25
    assert spec.resolve("model.layers.0.self_attn.q_proj.weight", ParamInfo("attn", 0)) == 0.75
    # Group reassignment stops the override search: the later `down_proj` lambda does not apply.
    assert spec.resolve("model.layers.0.mlp.down_proj.weight", ParamInfo("ffn", 0)) == 1.0
    assert spec.resolve("model.layers.0.mlp.up_proj.weight", ParamInfo("ffn", 0)) == 0.0
    assert spec.resolve("lm_head.weight", ParamInfo("head", None)) == 0.0
    # An unclassified tensor assigned by a lambda override.
    assert spec.resolve("model.layers.0.extra.down_proj", ParamInfo("other", 0)) == 0.5


def test_group_override_keeps_layer_for_ranges():
    spec = TaiaSpec.model_validate(
        {
            "groups": {"attn": {"lambda": 1.0, "layers": [1, 1]}},
            "overrides": [{"pattern": "^mystery", "group": "attn"}],
        }
    )
    assert spec.resolve("mystery.0", ParamInfo("other", 0)) == 0.0
    assert spec.resolve("mystery.1", ParamInfo("other", 1)) == 1.0
    assert spec.resolve("mystery.x", ParamInfo("other", None)) == 0.0


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "groups: {attn: 1}\nlayerz: [0, 1]\n")
    with pytest.raises(TaiaError, match=r"layerz: unknown key") as e:
        load_spec(path)
    assert str(path) in str(e.value)


def test_unknown_key_in_group_rule():
    with pytest.raises(TaiaError, match=r"groups\.attn\.lamda: unknown key"):
        load_spec({"groups": {"attn": {"lamda": 1.0}}})


def test_unknown_group_suggests(tmp_path):
    path = _write(tmp_path, "groups: {atn: 1.0}\n")
    with pytest.raises(TaiaError, match="unknown group 'atn'; did you mean 'attn'"):
        load_spec(path)


def test_bad_regex(tmp_path):
    path = _write(tmp_path, "groups: {attn: 1}\noverrides:\n  - {pattern: 'q_proj(', lambda: 1}\n")
    with pytest.raises(TaiaError, match=r"invalid regex 'q_proj\('"):
        load_spec(path)


@pytest.mark.parametrize(
    "override",
    [{"pattern": "q", "lambda": 1.0, "group": "attn"}, {"pattern": "q"}],
)
def test_override_needs_exactly_one_of_lambda_or_group(override):
    with pytest.raises(TaiaError, match="exactly one of 'lambda' or 'group'"):
        load_spec({"groups": {"attn": 1}, "overrides": [override]})


def test_override_group_must_be_known():
    with pytest.raises(ValidationError):
        Override.model_validate({"pattern": "q", "group": "attention"})


@pytest.mark.parametrize("layers", [[3, 1], [-1, 2]])
def test_bad_layer_range(layers):
    with pytest.raises(TaiaError, match=r"layer range must be \[start, end\]"):
        load_spec({"groups": {"ffn": {"lambda": 1.0, "layers": layers}}})


@pytest.mark.parametrize("value", [".nan", ".inf", "{lambda: .nan}"])
def test_non_finite_lambda(tmp_path, value):
    path = _write(tmp_path, f"groups:\n  attn: {value}\n")
    with pytest.raises(TaiaError, match=r"groups\.attn"):
        load_spec(path)


def test_non_finite_override_lambda():
    with pytest.raises(TaiaError, match=r"overrides\.0\.lambda"):
        load_spec({"overrides": [{"pattern": "q", "lambda": math.nan}]})


def test_missing_spec_file(tmp_path):
    with pytest.raises(TaiaError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_file_must_be_mapping(tmp_path):
    path = _write(tmp_path, "- attn\n- ffn\n")
    with pytest.raises(TaiaError, match="must hold a mapping"):
        load_spec(path)


def test_malformed_yaml_spec_is_a_taia_error(tmp_path):
    path = _write(tmp_path, "groups: {attn: 1\n")
    with pytest.raises(TaiaError):
        load_spec(path)


def test_spec_is_frozen():
    spec = load_spec("taia")
    with pytest.raises(ValidationError):
        spec.name = "changed"  # type: ignore[misc]


# --- the plan --------------------------------------------------------------------------------------


def test_plan_on_llama():
    mm = model_map(tiny_config("llama"))
    plan = make_plan(mm.params, mm, load_spec("taia"))
    assert set(plan) == set(mm.params)
    for name, d in plan.items():
        assert d.info == mm.params[name]
        assert d.lam == (1.0 if d.info.group == "attn" else 0.0)
        assert d.action == ("kept" if d.info.group == "attn" else "reverted")


def test_spec_that_selects_nothing_raises():
    mm = model_map(tiny_config("llama"))
    with pytest.raises(TaiaError, match=r"selects nothing here.*\(experts\)"):
        make_plan(mm.params, mm, load_spec({"name": "moe-only", "groups": {"experts": 1.0}}))
    # The same spec on an MoE model is fine.
    moe = model_map(tiny_config("mixtral"))
    plan = make_plan(moe.params, moe, load_spec({"groups": {"experts": 1.0}}))
    assert {n for n, d in plan.items() if d.lam == 1.0} == {
        n for n, i in moe.params.items() if i.group == "experts"
    }


def test_base_preset_does_not_raise():
    mm = model_map(tiny_config("llama"))
    plan = make_plan(mm.params, mm, load_spec("base"))
    assert plan and all(d.lam == 0.0 and d.action == "reverted" for d in plan.values())


def test_override_matching_nothing_raises():
    mm = model_map(tiny_config("llama"))
    spec = load_spec({"groups": {"attn": 1.0}, "overrides": [{"pattern": r"c_attn", "lambda": 0.5}]})
    with pytest.raises(TaiaError, match=r"pattern 'c_attn' matches no tensor"):
        make_plan(mm.params, mm, spec)


def test_unassigned_tensors_listed_with_more():
    mm = model_map(tiny_config("llama"))
    names = [*mm.params, *(f"extra.{i}" for i in range(7))]
    with pytest.raises(TaiaError, match=r"7 tensor\(s\).*llama.*extra\.0, .*extra\.4 … and 2 more"):
        make_plan(names, mm, load_spec("taia"))


def _toy_map() -> ModelMap:
    modules = {
        "layers.0": ParamInfo("other", 0),
        "layers.0.attn": ParamInfo("attn", 0),
        "layers.0.mlp": ParamInfo("ffn", 0),
        "layers.1": ParamInfo("other", 1),
        "layers.1.attn": ParamInfo("attn", 1),
        "layers.1.mlp": ParamInfo("ffn", 1),
        "emb": ParamInfo("embed"),
        "norm": ParamInfo("norm"),
    }
    return ModelMap(modules=modules, params={}, shapes={}, num_layers=2, model_type="toy")


def test_summarize_counts():
    mm = _toy_map()
    numels = {
        "layers.0.attn.w": 10,
        "layers.0.attn.b": 2,
        "layers.1.attn.w": 10,
        "layers.0.mlp.w": 30,
        "layers.1.mlp.w": 30,
        "emb.weight": 100,
        "norm.weight": 4,
    }
    spec = load_spec(
        {
            "groups": {"attn": 1.0, "ffn": {"lambda": 1.0, "layers": [1, 1]}, "embed": 0.5},
            "overrides": [{"pattern": r"attn\.b$", "lambda": 0.0}],
        }
    )
    plan = make_plan(numels, mm, spec)
    assert plan["layers.0.attn.b"] == Decision(ParamInfo("attn", 0), 0.0)
    assert plan["emb.weight"].action == "scaled"
    summary = summarize(plan, numels)
    assert summary == {
        "attn": {"kept": {"tensors": 2, "params": 20}, "reverted": {"tensors": 1, "params": 2}},
        "ffn": {"reverted": {"tensors": 1, "params": 30}, "kept": {"tensors": 1, "params": 30}},
        "norm": {"reverted": {"tensors": 1, "params": 4}},
        "embed": {"scaled": {"tensors": 1, "params": 100}},
    }
    # Groups come out in GROUPS order.
    assert list(summary) == [g for g in GROUPS if g in summary]
    total = sum(c["params"] for actions in summary.values() for c in actions.values())
    assert total == sum(numels.values())


def test_decision_actions():
    info = ParamInfo("attn", 0)
    assert Decision(info, 1.0).action == "kept"
    assert Decision(info, 0.0).action == "reverted"
    assert Decision(info, 0.5).action == "scaled"
    assert Decision(info, -1.0).action == "scaled"


def test_unknown_keys_suggest_the_right_one():
    with pytest.raises(TaiaError, match=r"groups\.attn\.lamda: unknown key \(did you mean 'lambda'\?\)"):
        load_spec({"groups": {"attn": {"lamda": 1.0}}})
    with pytest.raises(TaiaError, match=r"gruops: unknown key \(did you mean 'groups'\?\)"):
        load_spec({"gruops": {}})


def test_group_override_is_reported_under_the_new_group():
    from conftest import tiny_config
    from taia.classify import model_map

    mm = model_map(tiny_config("llama"))
    spec = load_spec(
        {"groups": {"attn": 1.0}, "overrides": [{"pattern": r"lm_head\.weight$", "group": "attn"}]}
    )
    plan = make_plan(mm.params, mm, spec)
    assert plan["lm_head.weight"].info.group == "attn" and plan["lm_head.weight"].lam == 1.0
