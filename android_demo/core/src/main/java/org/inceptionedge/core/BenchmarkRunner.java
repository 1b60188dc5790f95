package org.inceptionedge.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The benchmark mode's logic: per delegate, build the classifier (a fallback is recorded, never
 * silent), time init, the first inference, warm-ups and N runs, and optionally on-device accuracy
 * on evaluation images; one record per (delegate, kind).
 */
public final class BenchmarkRunner {
  /** Time source (System.nanoTime on the device; a fake in tests). */
  public interface Clock {
    long nanos();
  }

  /** One evaluation image, already preprocessed, with its label index. */
  public static final class EvalItem {
    public final float[] input;
    public final int label;

    public EvalItem(float[] input, int label) {
      this.input = input;
      this.label = label;
    }
  }

  private final Classifier.Factory factory;
  private final Clock clock;
  private final Map<String, Object> device;

  public BenchmarkRunner(Classifier.Factory factory, Clock clock, Map<String, Object> device) {
    this.factory = factory;
    this.clock = clock;
    this.device = device;
  }

  /** Told after each delegate with every record so far (the app writes them out at once). */
  public interface Sink {
    void recordsSoFar(List<BenchmarkRecord> records);
  }

  /** What peak_memory_mb measures in the app's records (benchmark_model's is a delta). */
  public static final String PEAK_MEMORY_IS = "process peak RSS (VmHWM: Java heap, native "
      + "memory and the mapped model together)";

  /** Peak memory of the process in MB so far (the app: VmHWM), or null when unknown. */
  public interface MemoryProbe {
    Double peakMb();
  }

  public List<BenchmarkRecord> run(List<Delegate> delegates, int threads, int warmup, int runs,
      float[] input, List<EvalItem> eval, Map<String, Object> common) {
    return run(delegates, threads, warmup, runs, input, eval, common, null, () -> null);
  }

  /**
   * Every delegate in turn; one that cannot be built, or that fails while running (an Exception,
   * or a LinkageError such as a missing native library), gives a failed record and the next one
   * still runs. {@code sink} hears the records after each delegate, so a crash of the process
   * later loses nothing measured before it.
   */
  public List<BenchmarkRecord> run(List<Delegate> delegates, int threads, int warmup, int runs,
      float[] input, List<EvalItem> eval, Map<String, Object> common, Sink sink,
      MemoryProbe memory) {
    List<BenchmarkRecord> out = new ArrayList<>();
    for (Delegate d : delegates) {
      BenchmarkRecord lat = base("latency", d, threads, common).put("warmup_runs", warmup);
      int first = out.size();
      out.add(lat);
      long t0 = clock.nanos();
      Classifier c = null;
      try {
        c = factory.create(d, threads);
      } catch (Exception | LinkageError e) {
        lat.fail("failed", d + " could not be initialised: " + e);
      }
      if (c != null) {
        try {
          measure(c, d, lat, t0, warmup, runs, input);
          if (eval != null && !eval.isEmpty()) {
            out.add(accuracy(c, d, threads, eval, common));
          }
        } catch (Exception | LinkageError e) {
          lat.fail("failed", d + " failed while running: " + e);
        } finally {
          c.close();
        }
      }
      Double peak = memory.peakMb();  // the process's peak so far: VmHWM only grows
      for (BenchmarkRecord r : out.subList(first, out.size())) {
        r.put("peak_memory_mb", peak).put("peak_memory_is", PEAK_MEMORY_IS);
      }
      if (sink != null) {
        sink.recordsSoFar(new ArrayList<>(out));
      }
    }
    return out;
  }

  private void measure(Classifier c, Delegate d, BenchmarkRecord lat, long t0, int warmup,
      int runs, float[] input) {
    lat.put("delegate", c.delegate().recordName);
    if (c.fallbackReason() != null) {
      lat.put("requested_delegate", d.recordName).put("fallback", c.fallbackReason());
    }
    if (c.note() != null) {
      lat.put("note", c.note());
    }
    lat.put("init_ms", (clock.nanos() - t0) / 1e6);
    long t = clock.nanos();
    c.classify(input);
    lat.put("first_inference_ms", (clock.nanos() - t) / 1e6);
    for (int i = 0; i < warmup; i++) {
      c.classify(input);
    }
    double[] times = new double[runs];
    double total = 0;
    for (int i = 0; i < runs; i++) {
      t = clock.nanos();
      c.classify(input);
      times[i] = (clock.nanos() - t) / 1e6;
      total += times[i];
    }
    lat.put("runs", runs).put("duration_s", total / 1e3);
    String why = runs > 0 ? LatencyStats.invalidReason(runs, total / 1e3, 0.2) : "no timed runs";
    if (why != null) {
      lat.fail("invalid", why);
    } else {
      lat.put("latency_ms", LatencyStats.of(times));
    }
  }

  private BenchmarkRecord accuracy(Classifier c, Delegate d, int threads, List<EvalItem> eval,
      Map<String, Object> common) {
    int top1 = 0;
    int top5 = 0;
    for (EvalItem item : eval) {
      List<TopK.Entry> top = TopK.of(c.classify(item.input), null, 5);
      if (top.get(0).index == item.label) {
        top1++;
      }
      for (TopK.Entry e : top) {
        if (e.index == item.label) {
          top5++;
          break;
        }
      }
    }
    Map<String, Object> acc = new LinkedHashMap<>();
    acc.put("top1", (double) top1 / eval.size());
    acc.put("top5", (double) top5 / eval.size());
    acc.put("examples", eval.size());
    BenchmarkRecord r = base("accuracy", d, threads, common)
        .put("delegate", c.delegate().recordName).put("accuracy", acc);
    if (c.fallbackReason() != null) {
      r.put("requested_delegate", d.recordName).put("fallback", c.fallbackReason());
    }
    return r;
  }

  private BenchmarkRecord base(String kind, Delegate d, int threads, Map<String, Object> common) {
    BenchmarkRecord r = new BenchmarkRecord(kind).put("delegate", d.recordName)
        .put("threads", threads).put("batch_size", 1).put("device", device);
    for (Map.Entry<String, Object> e : common.entrySet()) {
      r.put(e.getKey(), e.getValue());
    }
    return r;
  }
}
