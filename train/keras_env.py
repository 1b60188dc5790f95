"""Import first: makes ``tf.keras`` the Keras 2 API (tf_keras), which tfmot's QAT requires.

It must run before TensorFlow is imported anywhere in the process; every module of the build side
imports it before ``import tensorflow``.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
