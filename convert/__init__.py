"""convert/: a trained model in; TFLite, Core ML and Edge TPU-ready artifacts + manifest.json out."""
