package org.inceptionedge.core;

/** Where inference runs. recordName is edge_eval's record "delegate" value. */
public enum Delegate {
  CPU("xnnpack"),
  GPU("gpu"),
  /** LiteRT 2.x's NPU accelerator (Qualcomm, MediaTek, Google Tensor) through CompiledModel. */
  NPU("npu"),
  /** Deprecated since Android 15; only where the Interpreter API still offers it. */
  NNAPI("nnapi");

  public final String recordName;

  Delegate(String recordName) {
    this.recordName = recordName;
  }

  public static Delegate parse(String name) {
    try {
      return valueOf(name.trim().toUpperCase(java.util.Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown delegate '" + name + "': choose CPU, GPU, NPU or NNAPI");
    }
  }
}
