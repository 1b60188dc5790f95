package org.tensorflow.lite;
public final class Interpreter implements AutoCloseable {
  public static class Options { public Options setNumThreads(int n) { return this; } }
  public Interpreter(java.nio.ByteBuffer model, Options o) {}
  public Tensor getInputTensor(int i) { return null; }
  public Tensor getOutputTensor(int i) { return null; }
  public void close() {}
}
