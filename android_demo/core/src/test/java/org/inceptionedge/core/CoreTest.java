package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Top-k, labels, the delegate fallback policy, latency statistics and the benchmark runner. */
class CoreTest {
  @Test
  void topKOrdersByScoreAndBreaksTiesByIndex() {
    float[] s = {0.1f, 0.4f, 0.05f, 0.4f, 0.05f};
    List<TopK.Entry> top = TopK.of(s, Labels.parse("a\nb\nc\nd\ne\n"), 3);
    assertEquals(Arrays.asList(1, 3, 0), Arrays.asList(top.get(0).index, top.get(1).index,
        top.get(2).index));
    assertEquals("b", top.get(0).label);
    assertEquals(5, TopK.of(s, null, 10).size());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> TopK.of(s, Labels.parse("a\nb\n"), 1));
    assertTrue(e.getMessage().contains("5 outputs but 2 labels"));
  }

  @Test
  void dequantizeUint8Output() {
    float[] p = TopK.dequantize(new byte[] {0, (byte) 255, (byte) 128}, 1 / 256f, 0, false);
    assertEquals(0f, p[0]);
    assertEquals(255 / 256f, p[1], 1e-7);
    assertEquals(0.5f, p[2], 1e-7);
  }

  @Test
  void fallbackIsNeverSilent() {
    DelegatePolicy.DeviceSupport noGpu = new DelegatePolicy.DeviceSupport(false, 34);
    DelegatePolicy.Decision d = DelegatePolicy.choose(Delegate.GPU, noGpu);
    assertTrue(d.fellBack());
    assertEquals(Delegate.CPU, d.chosen);
    assertTrue(d.fallbackReason.contains("GPU delegate does not support"));
    DelegatePolicy.Decision old = DelegatePolicy.choose(Delegate.NNAPI,
        new DelegatePolicy.DeviceSupport(true, 26));
    assertTrue(old.fellBack() && old.fallbackReason.contains("API 27"));
    DelegatePolicy.Decision ok = DelegatePolicy.choose(Delegate.GPU,
        new DelegatePolicy.DeviceSupport(true, 34));
    assertFalse(ok.fellBack());
    assertNull(ok.fallbackReason);
    DelegatePolicy.Decision failed = DelegatePolicy.afterFailure(Delegate.NNAPI,
        new RuntimeException("ANEURALNETWORKS_BAD_DATA"));
    assertEquals(Delegate.CPU, failed.chosen);
    assertTrue(failed.fallbackReason.contains("ANEURALNETWORKS_BAD_DATA"));
    assertThrows(IllegalStateException.class,
        () -> DelegatePolicy.afterFailure(Delegate.CPU, new RuntimeException("x")));
    assertEquals(Delegate.NNAPI, Delegate.parse("nnapi"));
    assertThrows(IllegalArgumentException.class, () -> Delegate.parse("tpu"));
  }

  @Test
  void latencyStatsMatchNumpy() {
    // numpy: np.percentile([5, 1, 4, 2, 3, 10], [50, 90, 99]) = 3.5, 7.5, 9.75; std (ddof 0)
    Map<String, Object> m = LatencyStats.of(new double[] {5, 1, 4, 2, 3, 10});
    assertEquals(1.0, (double) m.get("min"));
    assertEquals(3.5, (double) m.get("p50"), 1e-12);
    assertEquals(7.5, (double) m.get("p90"), 1e-12);
    assertEquals(9.75, (double) m.get("p99"), 1e-12);
    assertEquals(25.0 / 6, (double) m.get("mean"), 1e-12);
    assertEquals(Math.sqrt(((5 - 25.0 / 6) * (5 - 25.0 / 6) + (1 - 25.0 / 6) * (1 - 25.0 / 6)
        + (4 - 25.0 / 6) * (4 - 25.0 / 6) + (2 - 25.0 / 6) * (2 - 25.0 / 6)
        + (3 - 25.0 / 6) * (3 - 25.0 / 6) + (10 - 25.0 / 6) * (10 - 25.0 / 6)) / 6),
        (double) m.get("std"), 1e-12);
    assertNull(LatencyStats.invalidReason(50, 1.0, 0.2));
    assertTrue(LatencyStats.invalidReason(3, 1.0, 0.2).contains("only 3 timed runs"));
  }

  @Test
  void jsonRoundTrip() {
    Map<String, Object> m = Json.parseObject(
        "{\"a\": [1, 2.5, -3e-2, true, null], \"b\": {\"c\": \"x\\\"y\\n\"}}");
    assertEquals(Json.parseObject(Json.write(m)), m);
    assertEquals(1L, ((List<?>) m.get("a")).get(0));
    assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\": }"));
  }

  /** A classifier that takes a fixed 2 ms per inference on a fake clock. */
  static final class FakeClock implements BenchmarkRunner.Clock {
    long t;

    @Override
    public long nanos() {
      return t;
    }
  }

  @Test
  void benchmarkRunnerRecordsLatencyAccuracyAndFallback() {
    FakeClock clock = new FakeClock();
    Classifier.Factory factory = (requested, threads) -> {
      DelegatePolicy.Decision d = DelegatePolicy.choose(requested,
          new DelegatePolicy.DeviceSupport(false, 34));
      clock.t += 5_000_000;
      return new Classifier() {
        @Override
        public float[] classify(float[] input) {
          clock.t += 2_000_000;
          return new float[] {0.1f, 0.7f, 0.2f};
        }

        @Override
        public Delegate delegate() {
          return d.chosen;
        }

        @Override
        public String fallbackReason() {
          return d.fallbackReason;
        }

        @Override
        public void close() {}
      };
    };
    Map<String, Object> device = new LinkedHashMap<>();
    device.put("kind", "android");
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("artifact", "m.tflite");
    List<BenchmarkRunner.EvalItem> eval = Arrays.asList(
        new BenchmarkRunner.EvalItem(new float[3], 1), new BenchmarkRunner.EvalItem(new float[3], 2));
    List<BenchmarkRecord> recs = new BenchmarkRunner(factory, clock, device).run(
        Arrays.asList(Delegate.CPU, Delegate.GPU), 4, 3, 200, new float[3], eval, common);
    assertEquals(4, recs.size());
    BenchmarkRecord cpu = recs.get(0);
    assertEquals("ok", cpu.get("status"));
    assertEquals(2.0, (double) ((Map<?, ?>) cpu.get("latency_ms")).get("p50"), 1e-9);
    assertEquals(5.0, (double) cpu.get("init_ms"), 1e-9);
    Map<?, ?> acc = (Map<?, ?>) recs.get(1).get("accuracy");
    assertEquals(0.5, (double) acc.get("top1"), 1e-12);
    assertEquals(1.0, (double) acc.get("top5"), 1e-12);
    BenchmarkRecord gpu = recs.get(2);
    assertEquals("xnnpack", gpu.get("delegate"));
    assertEquals("gpu", gpu.get("requested_delegate"));
    assertTrue(((String) gpu.get("fallback")).contains("GPU delegate does not support"));
    List<BenchmarkRecord> few = new BenchmarkRunner(factory, clock, device).run(
        Arrays.asList(Delegate.CPU), 1, 0, 3, new float[3], null, common);
    assertEquals("invalid", few.get(0).get("status"));
    assertNull(few.get(0).get("latency_ms"));
  }
}
