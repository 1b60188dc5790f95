"""TFLite metadata: every converted .tflite carries its labels and normalization, and reads back."""
import os

import numpy as np
import pytest

from conftest import needs_fmnist
from contract import tflite_file as metadata  # the metadata half


@needs_fmnist
def test_every_tflite_artifact_carries_metadata(converted):
    art, manifest = converted
    labels = open(os.path.join(art, "labels.txt")).read().splitlines()
    pre = manifest["preprocessing"]
    for a in manifest["artifacts"]:
        if a["target"] != "tflite":
            continue
        data = open(os.path.join(art, a["file"]), "rb").read()
        md = metadata.read_metadata(data)
        assert md["name"] == f"tiny_test_{a['recipe']}" and md["min_parser_version"] == "1.0.0"
        (inp,), (out,) = md["inputs"], md["outputs"]
        assert inp["content"] == "image" and inp["color_space"] == "RGB"
        assert inp["size"] == pre["input_size"][::-1]
        assert inp["normalization"] == {"mean": pytest.approx(pre["mean"]),
                                        "std": pytest.approx(pre["std"])}
        assert inp["stats"] == {"max": [1.0], "min": [-1.0]}
        assert out["associated_files"] == [{"name": "labels.txt", "type": 2, "description":
                                            "Labels for the classes the model outputs."}]
        assert md["packed_files"]["labels.txt"].decode().splitlines() == labels
        assert a["metadata"]["labels"] == 10


@needs_fmnist
def test_metadata_changes_nothing_the_interpreter_computes_and_replaces_itself(converted):
    from contract.litert import TFLiteModel
    from contract.preprocessing import PreprocessingSpec

    art, manifest = converted
    a = next(a for a in manifest["artifacts"] if a["recipe"] == "static_wi8_ai8_uint8io")
    data = open(os.path.join(art, a["file"]), "rb").read()
    bare = metadata.strip_zip(data)
    assert len(bare) < len(data)
    spec = PreprocessingSpec.from_dict(manifest["preprocessing"])
    again = metadata.add_metadata(data, spec, ["a", "b"], "n2", "d", "2", "x", "y")
    md = metadata.read_metadata(again)
    assert md["name"] == "n2" and md["packed_files"] == {"labels.txt": b"a\nb\n"}
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(metadata.strip_zip(again), 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    assert names.count("TFLITE_METADATA") == 1  # replaced, not added twice
    x = np.random.RandomState(0).uniform(-1, 1, (4, 75, 75, 3)).astype(np.float32)
    p1 = TFLiteModel(model_content=data, num_threads=1).predict(x)
    p2 = TFLiteModel(model_content=again, num_threads=1).predict(x)
    np.testing.assert_array_equal(p1, p2)


@needs_fmnist
def test_every_artifact_has_aligned_buffers_and_the_check_catches_the_converters_layout(converted):
    """Zero-copy: every buffer of every artifact starts on a 16-byte boundary (the self-check
    records it); TF's own layout (1-byte vectors, rebuilt here the way its writer packs) fails
    the same check, and align() fixes it without changing a computed number or the metadata."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from contract.litert import TFLiteModel
    from contract import tflite_file as layout

    art, manifest = converted
    tfl = [a for a in manifest["artifacts"] if a["target"] == "tflite"]
    assert len(tfl) == 7
    for a in tfl:
        data = open(os.path.join(art, a["file"]), "rb").read()
        assert layout.misaligned(metadata.strip_zip(data)) == [], a["file"]
        assert a["check"]["unaligned_buffers"] == 0
    data = open(os.path.join(art, tfl[0]["file"]), "rb").read()
    m = schema.ModelT.InitFromPackedBuf(bytearray(metadata.strip_zip(data)), 0)
    b = flatbuffers.Builder(len(data))
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    loose = bytes(b.Output()) + data[len(metadata.strip_zip(data)):]
    bad = layout.misaligned(metadata.strip_zip(loose))
    assert len(bad) > 10  # most of the weight buffers
    fixed = layout.align(loose)
    assert layout.misaligned(metadata.strip_zip(fixed)) == []
    assert metadata.read_metadata(fixed) == metadata.read_metadata(data)
    x = np.random.RandomState(1).uniform(-1, 1, (2, 75, 75, 3)).astype(np.float32)
    np.testing.assert_array_equal(TFLiteModel(model_content=fixed).predict(x),
                                  TFLiteModel(model_content=data).predict(x))
