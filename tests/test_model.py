"""The model builder against the paper and against Keras' InceptionV3."""
import numpy as np
import pytest

from train.model import (BLOCK_NAMES, ModelConfig, Regime, build_inception_v3,
                         count_multiply_adds, load_keras_weights)


@pytest.fixture(scope="module")
def full_model():
    return build_inception_v3(ModelConfig())  # 1000 classes, 299 px, no aux


def test_parameter_count_equals_keras(full_model):
    assert full_model.count_params() == 23_851_784


def test_multiply_adds_at_299(full_model):
    # the paper quotes ~5 G; Keras' graph (with the 5x5 branches) counts ~5.71 G
    macs = count_multiply_adds(full_model)
    assert 5.6e9 < macs < 5.8e9, macs


def test_grid_sizes_and_block_names(full_model):
    ep = full_model.end_points
    assert tuple(ep) == BLOCK_NAMES
    assert [tuple(ep[n].shape[1:]) for n in ("mixed0", "mixed2", "mixed3", "mixed7", "mixed8",
                                             "mixed10")] == [
        (35, 35, 256), (35, 35, 288), (17, 17, 768), (17, 17, 768), (8, 8, 1280), (8, 8, 2048)]
    for n in BLOCK_NAMES:
        assert full_model.get_layer(n) is not None


@pytest.mark.parametrize("regime,size,grids", [
    ("r299", 299, (35, 17, 8)),
    ("r151", 151, (35, 17, 8)),
    ("r79", 79, (36, 17, 8)),
    ("r299", 75, (7, 3, 1)),
])
def test_regimes_build(regime, size, grids):
    m = build_inception_v3(regime=regime, input_size=size, depth_multiplier=0.1, min_depth=4,
                           num_classes=5)
    got = tuple(int(m.end_points[n].shape[1]) for n in ("mixed2", "mixed7", "mixed10"))
    assert got == grids
    assert m.output_shape == (None, 5)


def test_minimum_input_is_enforced():
    with pytest.raises(ValueError, match="input_size must be >= 75.*Received: input_size=74"):
        build_inception_v3(input_size=74)
    with pytest.raises(ValueError, match="num_classes"):
        build_inception_v3(num_classes=1)


def test_depth_multiplier_and_min_depth():
    m = build_inception_v3(input_size=75, depth_multiplier=0.25, min_depth=8, num_classes=10)
    assert int(m.end_points["mixed0"].shape[-1]) == 16 + 16 + 24 + 8  # 1x1, 5x5, double-3x3, pool branches / 4
    assert m.count_params() < 23_851_784 / 10


def test_aux_head_is_a_second_output_and_stripped_for_inference():
    from train.model import inference_model

    m = build_inception_v3(input_size=75, depth_multiplier=0.1, min_depth=4, num_classes=7,
                           aux_logits=True, training_heads=True)
    assert [o.shape[-1] for o in m.outputs] == [7, 7]
    assert any(l.name.startswith("aux_bn") for l in m.layers)  # BN-auxiliary
    inf = inference_model(m)
    assert len(inf.outputs) == 1 and not any(l.name.startswith("aux") for l in inf.layers)


def test_weights_from_keras_inceptionv3_give_identical_outputs(full_model):
    import keras  # Keras 3's applications, beside our tf_keras model

    ref = keras.applications.InceptionV3(weights=None)
    full_model.set_weights(ref.get_weights())
    x = np.random.RandomState(0).uniform(-1, 1, (2, 299, 299, 3)).astype("float32")
    a = full_model(x, training=False).numpy()
    b = np.asarray(ref(x, training=False))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_local_keras_weight_file_loads(tmp_path, full_model):
    """The published file is tf.keras' legacy HDF5; make one locally with tf_keras."""
    import tf_keras

    ref = tf_keras.applications.InceptionV3(weights=None)
    path = str(tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5")
    ref.save_weights(path)
    load_keras_weights(full_model, path)
    x = np.random.RandomState(1).uniform(-1, 1, (1, 299, 299, 3)).astype("float32")
    np.testing.assert_allclose(full_model(x).numpy(), ref(x).numpy(), rtol=0, atol=1e-6)

    notop = tf_keras.applications.InceptionV3(weights=None, include_top=False)
    p2 = str(tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")
    notop.save_weights(p2)
    m10 = build_inception_v3(num_classes=10)
    load_keras_weights(m10, p2)
    first = [l for l in m10.layers if l.weights][0]
    np.testing.assert_array_equal(first.get_weights()[0], notop.layers[1].get_weights()[0])

    # the full file into a 10-class model (a fine-tune): everything but the new head
    m10b = build_inception_v3(num_classes=10)
    assert load_keras_weights(m10b, path) == ["logits"]
    first = [l for l in m10b.layers if l.weights][0]
    np.testing.assert_array_equal(first.get_weights()[0], ref.layers[1].get_weights()[0])
    with pytest.raises(ValueError, match="depth_multiplier=1.0"):
        load_keras_weights(build_inception_v3(depth_multiplier=0.5, input_size=75), path)
    with pytest.raises(FileNotFoundError):
        load_keras_weights(full_model, str(tmp_path / "missing.h5"))
