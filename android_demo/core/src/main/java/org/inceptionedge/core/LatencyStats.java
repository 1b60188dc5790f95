package org.inceptionedge.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * min / p50 / p90 / p99 / mean / std of timed runs, with numpy's default (linear) percentile and
 * population std, so device numbers compare with edge_eval's host numbers.
 */
public final class LatencyStats {
  /** A result needs at least this many runs to be reported (edge_eval.bench.MIN_VALID_RUNS). */
  public static final int MIN_VALID_RUNS = 10;

  private LatencyStats() {}

  public static double percentile(double[] sorted, double q) {
    if (sorted.length == 0) {
      throw new IllegalArgumentException("no timings");
    }
    double pos = q / 100.0 * (sorted.length - 1);
    int lo = (int) Math.floor(pos);
    int hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  /** The record's latency_ms object. */
  public static Map<String, Object> of(double[] timesMs) {
    double[] t = timesMs.clone();
    Arrays.sort(t);
    double sum = 0;
    for (double v : t) {
      sum += v;
    }
    double mean = sum / t.length;
    double ss = 0;
    for (double v : t) {
      ss += (v - mean) * (v - mean);
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("min", t[0]);
    m.put("p50", percentile(t, 50));
    m.put("p90", percentile(t, 90));
    m.put("p99", percentile(t, 99));
    m.put("mean", mean);
    m.put("std", Math.sqrt(ss / t.length));
    m.put("max", t[t.length - 1]);
    return m;
  }

  /** null when valid, else why not (mirrors edge_eval.bench.validity). */
  public static String invalidReason(int runs, double seconds, double minSeconds) {
    if (runs < MIN_VALID_RUNS || seconds < minSeconds) {
      return String.format(java.util.Locale.ROOT,
          "only %d timed runs in %.3f s (a valid result needs >= %d runs and >= %s s)", runs,
          seconds, MIN_VALID_RUNS, minSeconds);
    }
    return null;
  }
}
