"""edge_eval/: accuracy, drift and latency of every artifact convert/ wrote, on the host and on
devices, with reports. The run side (worker, bench, preprocess, stats, records) imports no
TensorFlow."""
