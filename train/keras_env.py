"""Import first: makes ``tf.keras`` the Keras 2 API (tf_keras), which tfmot's QAT requires, and
lets the processes of one job share a GPU (memory growth).

It must run before TensorFlow is imported anywhere in the process; every module of the build side
imports it before ``import tensorflow``.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# a GPU shared by the job's TensorFlow processes (QAT beside convert, two evaluation workers):
# each takes the memory it uses instead of all of it at start-up, which would leave the second
# process out of memory. TensorFlow reads this when it first touches the GPU.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
