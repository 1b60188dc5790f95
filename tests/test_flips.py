"""Flip attribution (edge_eval.flips): a block whose weights were deliberately broken takes the
flips it causes; an artifact that is the float model has none and says so; the unexplained kinds
are counted, not forced into a block; the report shows a bar per block."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

INT8 = "tiny_test_static_wi8_ai8.tflite"
FP32 = "tiny_test_fp32.tflite"


def _broken_copy(art: str, dst: str, block: str) -> str:
    """The artifact folder copied, with a new int8 artifact whose ``block`` convolutions have
    their filters in reverse order (weights, bias and per-channel scales together: each conv
    computes its channels in the wrong order, so the block's output is scrambled, not merely
    scaled - a scaled block saturates into one answer for every image, which leaves the images
    of that class unflipped)."""
    from contract.tflite_file import pack
    from edge_eval.profile import cut_points, graph
    from edge_eval.flips import _key

    shutil.copytree(art, dst)
    data = open(os.path.join(dst, INT8), "rb").read()
    m, g, names = graph(data)
    cuts = [(i, _key(g, i)) for i in cut_points(g)]
    k = next(j for j, (_, key) in enumerate(cuts) if key == block)
    first, last = cuts[k - 1][0] + 1, cuts[k][0]
    convs = [i for i in range(first, last + 1) if names[i] == "CONV_2D"]
    assert len(convs) >= 6, convs  # mixed5: 1x1, 1x7/7x1 towers and the pool branch
    for i in convs:
        for t in g.operators[i].inputs[1:3]:  # the filter and the bias
            tensor = g.tensors[t]
            data = np.asarray(m.buffers[tensor.buffer].data, np.uint8)
            rows = data.reshape(int(tensor.shape[0]), -1)[::-1]
            m.buffers[tensor.buffer].data = np.ascontiguousarray(rows).reshape(-1)
            q = tensor.quantization
            q.scale = list(q.scale)[::-1]
            q.zeroPoint = list(q.zeroPoint)[::-1]
    name = f"tiny_test_static_wi8_ai8_broken_{block}.tflite"
    out = pack(m)
    with open(os.path.join(dst, name), "wb") as f:
        f.write(out)
    manifest = json.load(open(os.path.join(dst, "manifest.json")))
    entry = dict(next(a for a in manifest["artifacts"] if a["file"] == INT8), file=name,
                 sha256=hashlib.sha256(out).hexdigest(), bytes=len(out))
    manifest["artifacts"].append(entry)
    json.dump(manifest, open(os.path.join(dst, "manifest.json"), "w"))
    return name


def test_a_broken_block_takes_its_flips_and_the_report_shows_it(converted, tmp_path):
    from edge_eval import flips, report

    art, _ = converted
    folder = str(tmp_path / "art")
    name = _broken_copy(art, folder, "mixed5")
    out = str(tmp_path / "out")
    said = []
    res = flips.flips(folder, name, out, data_source="fashion_mnist", images=300, fix=0,
                      log=lambda *a, **k: said.append(" ".join(map(str, a))))
    # the int8 artifact computes float probabilities, then quantizes them for its output
    assert res["boundaries"] == ["stem"] + [f"mixed{i}" for i in range(11)] + ["head"]
    assert res["flips"] >= 20, res["ranking"]  # the break flips many images
    top = res["ranking"][0]
    assert top["block"] == "mixed5" and top["share"] >= 0.9, res["ranking"]
    # every flipped image is accounted for, by identity, with the answers either side
    assert sum(r["flips"] for r in res["ranking"]) == res["flips"] == len(res["images"])
    assert all(im["reference"] != im["artifact"] for im in res["images"]
               if im["block"] != flips.NOT_REPRODUCED)
    assert len({im["id"] for im in res["images"]}) == res["flips"]
    saved = json.load(open(os.path.join(out, "flips", name + ".json")))
    assert saved["ranking"] == res["ranking"]
    md = report.flips_section(out)
    assert "## Why images flip" in md and "| mixed5 |" in md and "█" * 20 in md


def test_the_float_model_itself_has_no_flips_and_says_so(converted, tmp_path):
    from edge_eval import flips, report

    art, _ = converted
    out = str(tmp_path / "out")
    res = flips.flips(art, FP32, out, data_source="fashion_mnist", images=200, fix=1,
                      log=lambda *a, **k: None)
    assert res["flips"] == 0 and res["ranking"] == [] and "fix" not in res
    assert "nothing to attribute" in report.flips_section(out)


def test_attribution_counts_what_no_block_explains():
    """The rule itself: the first boundary whose hybrid answer differs; the head when none
    does; an image the artifact does not flip here, or that the float graph flips as well, is
    counted apart."""
    from edge_eval.flips import FLOAT_FLIPS, HEAD, NOT_REPRODUCED, OUTPUT, attribute, ranking

    ref = np.array([1, 1, 1, 1, 1, 1])
    art = np.array([2, 2, 2, 1, 2, 2])   # image 3: the records' runtime flipped it, not this one
    flt = np.array([1, 1, 1, 1, 3, 1])   # image 4: the fp32 .tflite disagrees too
    hybrids = [("stem", np.array([1, 1, 1, 1, 1, 1])),
               ("mixed0", np.array([2, 1, 1, 1, 1, 1])),
               ("mixed1", np.array([2, 2, 1, 1, 1, 1])),  # image 0 flipped already at mixed0
               ("mixed2", np.array([1, 2, 1, 1, 1, 2]))]  # image 5 flips at mixed2
    got = attribute(ref, art, flt, hybrids)
    assert got == ["mixed0", "mixed1", HEAD, NOT_REPRODUCED, FLOAT_FLIPS, "mixed2"]
    rank = ranking(got)
    assert [r["block"] for r in rank] == [HEAD, "mixed0", "mixed1", "mixed2", NOT_REPRODUCED,
                                          FLOAT_FLIPS]
    assert [r["share"] for r in rank[:4]] == [0.25] * 4 and rank[4]["share"] is None
    # with the head a boundary (the artifact's own float probabilities), what no boundary
    # flips is the output's quantization
    got = attribute(ref, art, flt, hybrids + [(HEAD, np.array([1, 2, 1, 1, 1, 2]))])
    assert got == ["mixed0", "mixed1", OUTPUT, NOT_REPRODUCED, FLOAT_FLIPS, "mixed2"]


def test_a_name_that_is_not_a_tflite_artifact_is_one_message(converted, tmp_path):
    from edge_eval.__main__ import main

    art, _ = converted
    assert main(["flips", art, "--artifact", "nope.tflite", "--out", str(tmp_path)]) == 2
    assert not os.path.exists(os.path.join(str(tmp_path), "flips"))


@pytest.mark.slow
def test_the_fix_keeps_the_top_block_float_and_is_measured(converted, tmp_path):
    """--fix converts ``static_wi8_ai8+float:<top block>`` beside its fully int8 twin (the
    artifact's calibration images) and measures both on the set."""
    from edge_eval import flips

    art, _ = converted
    folder = str(tmp_path / "art")
    name = _broken_copy(art, folder, "mixed5")
    res = flips.flips(folder, name, str(tmp_path / "out"), data_source="fashion_mnist",
                      images=300, fix=1, calib_images=32, log=lambda *a, **k: None)
    fix = res["fix"]
    assert fix["status"] == "ok", fix
    assert fix["recipe"] == "static_wi8_ai8+float:mixed5"
    assert fix["twin_artifact_agreement"] < 1.0  # the broken copy is not the twin
    # the broken artifact's flips are nearly all gone once mixed5 is float (and not broken)
    assert fix["recovered"] >= 0.9 * fix["artifact_flips"] > 0
    assert fix["fix_flips"] <= fix["twin_flips"] + 3
    assert 1.0 < fix["size_ratio"] < 1.6 and fix["latency_ratio"] > 0


def test_a_damaged_flips_file_is_one_line_in_the_report(tmp_path):
    from edge_eval import report

    (tmp_path / "flips").mkdir()
    (tmp_path / "flips" / "a.json").write_text(json.dumps(
        {"artifact": "a.tflite", "flips": 3, "ranking": [{"block": "stem"}]}))
    (tmp_path / "flips" / "b.json").write_text("{not json")
    md = report.flips_section(str(tmp_path))
    assert "(a flips file that does not read: a.tflite)" in md and "b.json" not in md
