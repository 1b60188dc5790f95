"""train/: the paper's Inception-v3, its input pipelines and its trainer."""
from train import keras_env  # noqa: F401
