package com.google.ai.edge.litert;
public final class CompiledModel implements AutoCloseable {
  public static final class CpuOptions {
    public CpuOptions(Integer numThreads, Integer xnnPackFlags, String xnnPackWeightCachePath) {}
  }
  public static final class Options {
    public Options(Accelerator... accelerators) {}
    public void setCpuOptions(CpuOptions o) {}
    public CpuOptions getCpuOptions() { return null; }
  }
  public static CompiledModel create(String filePath, Options o, Environment env) throws LiteRtException { return null; }
  public static CompiledModel create(android.content.res.AssetManager a, String name, Options o, Environment env) throws LiteRtException { return null; }
  public java.util.List<TensorBuffer> createInputBuffers() throws LiteRtException { return null; }
  public java.util.List<TensorBuffer> createOutputBuffers() throws LiteRtException { return null; }
  public void run(java.util.List<TensorBuffer> in, java.util.List<TensorBuffer> out) throws LiteRtException {}
  public final void close() {}
}
