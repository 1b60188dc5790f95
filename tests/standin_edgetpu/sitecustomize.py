"""A stand-in Edge TPU delegate for tests (on PYTHONPATH, active when $STANDIN_EDGETPU_LOG is
set): LiteRT's ``load_delegate`` of an Edge TPU library returns a stand-in, and an interpreter
built with it runs the (stand-in compiler's) model on the host's kernels and writes the model's
path to $STANDIN_EDGETPU_LOG - the record that the Edge TPU was asked for that file. Any other
library loads as usual; without the variable nothing changes."""
import os

if os.environ.get("STANDIN_EDGETPU_LOG"):
    try:
        from ai_edge_litert import interpreter as _rt
    except ImportError:  # a board's tflite_runtime
        from tflite_runtime import interpreter as _rt

    class StandInEdgeTpu:
        def __init__(self, library):
            self.library = library

    _load = _rt.load_delegate

    def load_delegate(library, options=None):
        if "edgetpu" in os.path.basename(str(library)):
            return StandInEdgeTpu(library)
        return _load(library, options)

    _Interpreter = _rt.Interpreter

    class Interpreter(_Interpreter):
        def __init__(self, model_path=None, *a, experimental_delegates=None, **kw):
            mine = [d for d in experimental_delegates or [] if isinstance(d, StandInEdgeTpu)]
            rest = [d for d in experimental_delegates or [] if not isinstance(d, StandInEdgeTpu)]
            if mine:
                with open(os.environ["STANDIN_EDGETPU_LOG"], "a") as f:
                    f.write(f"{model_path}\n")
            super().__init__(model_path, *a, experimental_delegates=rest or None, **kw)

    _rt.load_delegate = load_delegate
    _rt.Interpreter = Interpreter
