"""The stand-in phone's inference (tests/standin/StandInPhone.java pipes to it): one model on
the host's LiteRT, or - the "GPU computes in float16" fault - the float reference computed in
float16 end to end by TensorFlow (weights and activations; $FAKE_FP16_KERAS names the export's
model.keras, whose weights the fp32 .tflite carries).

Protocol on stdin/stdout, big-endian: int32 n, n float32 (the preprocessed [H, W, 3] input) ->
int32 classes, classes float32 scores. Ends at end of input.
"""
import os
import struct
import sys

import numpy as np


def _float16_model(path):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tf_keras as keras

    m = keras.models.load_model(path, compile=False)
    keras.mixed_precision.set_global_policy("float16")
    cfg = m.get_config()

    def half(o):
        if isinstance(o, dict):
            return {k: ("float16" if k == "dtype" and v in ("float32", None) else half(v))
                    for k, v in o.items()}
        if isinstance(o, list):
            return [half(v) for v in o]
        return o
    m16 = m.__class__.from_config(half(cfg))
    m16.set_weights([w.astype(np.float16) for w in m.get_weights()])
    return lambda x: np.asarray(m16(x.astype(np.float16), training=False), np.float32)


def main():
    model, precision = sys.argv[1], sys.argv[2]
    if precision == "float16":
        run = _float16_model(os.environ["FAKE_FP16_KERAS"])
        shape = None
    else:
        from contract.litert import TFLiteModel

        m = TFLiteModel(model, num_threads=1)
        run = m.predict
        shape = None
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = src.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack(">i", head)
        x = np.frombuffer(src.read(4 * n), ">f4").astype(np.float32)
        side = int(round((n / 3) ** 0.5)) if shape is None else shape
        y = run(x.reshape(1, side, side, 3))[0].astype(">f4")
        dst.write(struct.pack(">i", y.size) + y.tobytes())
        dst.flush()


if __name__ == "__main__":
    main()
