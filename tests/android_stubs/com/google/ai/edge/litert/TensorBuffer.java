package com.google.ai.edge.litert;
public final class TensorBuffer implements AutoCloseable {
  public void writeFloat(float[] d) throws LiteRtException {}
  public void writeInt8(byte[] d) throws LiteRtException {}
  public float[] readFloat() throws LiteRtException { return null; }
  public byte[] readInt8() throws LiteRtException { return null; }
  public final void close() {}
}
