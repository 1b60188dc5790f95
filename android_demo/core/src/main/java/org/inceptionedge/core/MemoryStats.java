package org.inceptionedge.core;

/**
 * Peak memory as the host's records give it: the process's peak resident set (Linux VmHWM in
 * /proc/self/status), native allocations included, not the Java heap.
 */
public final class MemoryStats {
  private MemoryStats() {}

  /** VmHWM in MB (1 MB = 1024 kB, as the host's ru_maxrss figure) from /proc/self/status text. */
  public static Double vmHwmMb(String procStatus) {
    if (procStatus == null) {
      return null;
    }
    for (String line : procStatus.split("\n")) {
      if (line.startsWith("VmHWM:")) {
        String[] parts = line.substring(6).trim().split("\\s+");
        try {
          double v = Double.parseDouble(parts[0]);
          String unit = parts.length > 1 ? parts[1] : "kB";
          if ("kB".equals(unit)) {
            return v / 1024.0;
          }
          if ("mB".equals(unit) || "MB".equals(unit)) {
            return v;
          }
        } catch (NumberFormatException e) {
          return null;
        }
        return null;
      }
    }
    return null;
  }
}
