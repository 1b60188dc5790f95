"""The recipe table and its naming grammar agree."""
import pytest

from contract.recipes import NAME_RE, RECIPES, RecipeError, get_recipe, parse_recipes


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_name_follows_the_grammar_and_says_what_it_does(name):
    r = RECIPES[name]
    assert NAME_RE.match(name) and get_recipe(name) is r
    if name.startswith("static_wi8_ai"):
        assert r.weights == "int8" and r.activations == f"int{name.split('_ai')[1][:2].rstrip('_')}"
        assert r.calibrate
        assert r.io == ({"int8io": "int8", "uint8io": "uint8"}.get(name.split("_")[-1], "float32"))
    elif name == "dynamic_wi8_afp32":
        assert (r.weights, r.activations, r.calibrate) == ("int8", "float32", False)
    else:
        assert r.weights == {"fp32": "float32", "fp16": "float16"}[name]
    assert r.description


def test_selective_names_parse():
    r = get_recipe("static_wi8_ai8+float:mixed7,mixed3")
    assert r.float_blocks == ("mixed3", "mixed7") and r.activations == "int8"
    assert r.name == "static_wi8_ai8+float:mixed3,mixed7"
    assert [x.name for x in parse_recipes(["fp32,fp16", "static_wi8_ai8+float:mixed3,mixed7"])] \
        == ["fp32", "fp16", "static_wi8_ai8+float:mixed3,mixed7"]
    with pytest.raises(RecipeError, match="float activations"):
        get_recipe("dynamic_wi8_afp32+float:mixed3")
    # the stem and the head are blocks too (what flip attribution names), in network order
    assert get_recipe("static_wi8_ai8+float:head,mixed10,stem").name == \
        "static_wi8_ai8+float:stem,mixed10,head"


@pytest.mark.parametrize("bad", ["int4", "static_wi8_ai8+float:tail", "fp16+", "coreml_int3",
                                 "int4_edgetpu"])
def test_unknown_names_name_the_grammar_and_list_the_valid_ones(bad):
    from contract.recipes import parse

    with pytest.raises(RecipeError) as e:
        parse(bad)
    msg = str(e.value)
    assert "grammar" in msg and "<recipe>+float:<block>" in msg, msg
    assert "TFLite: fp32, fp16, dynamic_wi8_afp32" in msg and "coreml_fp16" in msg, msg


def test_the_edge_tpu_suffix_takes_whole_int8_recipes_only():
    from contract.recipes import parse

    assert parse("static_wi8_ai8_uint8io_edgetpu").target == "edgetpu"
    with pytest.raises(RecipeError, match="whole-int8 recipes only"):
        parse("fp16_edgetpu")
