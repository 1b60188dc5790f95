package com.google.ai.edge.litert;
public final class Environment implements AutoCloseable {
  public enum Option { CompilerPluginLibraryDir, DispatchLibraryDir }
  public static Environment create(java.util.Map<Option, String> options) throws LiteRtException { return null; }
  public static Environment create() throws LiteRtException { return null; }
  public java.util.Set<Accelerator> getAvailableAccelerators() throws LiteRtException { return null; }
  public final void close() {}
}
