"""convert/: a trained model in; TFLite (and later Core ML, Edge TPU) artifacts + manifest.json out."""
