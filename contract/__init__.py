"""contract/: what the build side (train, quantize, convert) and the run side (edge_eval, a board,
the app) share, with no TensorFlow: the preprocessing spec and labels rule, the TFRecord reader,
the manifest (read, verify, lock, atomic writes, provenance), result records and their schema,
the LiteRT / tflite-runtime interpreter shim, work-file ownership and child-process helpers.
A board installs this package and edge_eval/ (pip install .[run])."""
