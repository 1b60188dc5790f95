"""quantize/: post-training quantization recipes, calibration, QAT (an option of train/'s loop)."""
