package org.tensorflow.lite;
public interface Tensor {
  DataType dataType();
  QuantizationParams quantizationParams();
  int[] shape();
  int numBytes();
  final class QuantizationParams {
    public float getScale() { return 0; }
    public int getZeroPoint() { return 0; }
  }
}
