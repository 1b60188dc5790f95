package org.inceptionedge.core;

/** Where inference runs. recordName is edge_eval's record "delegate" value. */
public enum Delegate {
  CPU("xnnpack"),
  GPU("gpu"),
  NNAPI("nnapi");

  public final String recordName;

  Delegate(String recordName) {
    this.recordName = recordName;
  }

  public static Delegate parse(String name) {
    try {
      return valueOf(name.trim().toUpperCase(java.util.Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown delegate '" + name + "': choose CPU, GPU or NNAPI");
    }
  }
}
