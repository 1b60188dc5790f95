"""TFLite metadata: every converted .tflite carries its labels and normalization, and reads back."""
import os

import numpy as np
import pytest

from conftest import needs_fmnist
from convert import metadata


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
