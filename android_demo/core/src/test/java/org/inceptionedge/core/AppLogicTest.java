package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * What the app does around LiteRT, on the JVM: which model it loads, the classification loop and
 * its errors, the benchmark's survival of a failing delegate, memory, the single-run guard, the
 * paths it accepts, and the delegate notes.
 */
class AppLogicTest {
  /** A classifier whose behaviour a test sets: outputs, or a throwable per call. */
  static class Scripted implements Classifier {
    final Delegate d;
    final float[] out;
    final Throwable failOnClassify;
    int closed;

    Scripted(Delegate d, float[] out, Throwable failOnClassify) {
      this.d = d;
      this.out = out;
      this.failOnClassify = failOnClassify;
    }

    @Override
    public float[] classify(float[] input) {
      if (failOnClassify instanceof RuntimeException) {
        throw (RuntimeException) failOnClassify;
      }
      if (failOnClassify instanceof Error) {
        throw (Error) failOnClassify;
      }
      return out;
    }

    @Override
    public Delegate delegate() {
      return d;
    }

    @Override
    public String fallbackReason() {
      return null;
    }

    @Override
    public void close() {
      closed++;
    }
  }

  static final class Heard implements ClassificationSession.Listener {
    final List<String> errors = new ArrayList<>();
    final List<ClassificationSession.Result> results = new ArrayList<>();
    final List<Classifier> ready = new ArrayList<>();

    @Override
    public void onReady(Delegate requested, Classifier running) {
      ready.add(running);
    }

    @Override
    public void onResult(ClassificationSession.Result result) {
      results.add(result);
    }

    @Override
    public void onError(String message) {
      errors.add(message);
    }
  }

  static PreprocessingSpec spec() {
    return new PreprocessingSpec(4, 4, 3, 1.0, 1f / 127.5f, -1f, "bilinear");
  }

  // ---------------------------------------------------------------- the model the app was given
  @Test
  void pointerNamesTheModelToLoad() {
    AppModel m = AppModel.parse("{\"schema_version\": 1, \"model\": \"a_static_wi8_ai8.tflite\","
        + " \"labels\": \"labels.txt\", \"preprocessing\": \"preprocessing.json\","
        + " \"sha256\": \"ab\", \"recipe\": \"static_wi8_ai8\"}");
    assertEquals("a_static_wi8_ai8.tflite", m.model);
    assertEquals("model/a_static_wi8_ai8.tflite", AppModel.asset(m.model));
    assertEquals("static_wi8_ai8", m.recipe);
  }

  @Test
  void pointerThatLeavesItsFolderIsRefused() {
    String[] bad = {
      "{\"schema_version\": 1, \"model\": \"../x.tflite\", \"labels\": \"l\", \"preprocessing\": \"p\"}",
      "{\"schema_version\": 1, \"model\": \"/sdcard/x.tflite\", \"labels\": \"l\", \"preprocessing\": \"p\"}",
      "{\"schema_version\": 1, \"model\": \"m.tflite\", \"labels\": \"..\", \"preprocessing\": \"p\"}",
      "{\"schema_version\": 1, \"model\": \"m.tflite\", \"labels\": \"l\"}",
      "{\"schema_version\": 1, \"model\": \"m.bin\", \"labels\": \"l\", \"preprocessing\": \"p\"}",
      "{\"schema_version\": 2, \"model\": \"m.tflite\", \"labels\": \"l\", \"preprocessing\": \"p\"}",
      "[1, 2]",
      "not json",
    };
    for (String s : bad) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> AppModel.parse(s), s);
      assertTrue(e.getMessage().startsWith("model.json"), e.getMessage());
    }
  }

  // ---------------------------------------------------------------- the classification loop
  @Test
  void sessionTimesEachStepAndReportsTopK() {
    CoreTest.FakeClock clock = new CoreTest.FakeClock();
    Heard h = new Heard();
    Classifier.Factory f = (d, n) -> new Scripted(d, new float[] {0.1f, 0.6f, 0.3f}, null) {
      @Override
      public float[] classify(float[] input) {
        assertEquals(4 * 4 * 3, input.length);
        clock.t += 7_000_000;  // 7 ms of inference
        return super.classify(input);
      }
    };
    ClassificationSession s = new ClassificationSession(f, spec(),
        Arrays.asList("a", "b", "c"), 2, clock, h);
    assertTrue(s.configure(Delegate.CPU, 4));
    int[] px = new int[8 * 8];
    Arrays.fill(px, 0xff336699);
    ClassificationSession.Result r = s.classify(px, 8, 8);
    assertNotNull(r);
    assertEquals(Arrays.asList("b", "c"), Arrays.asList(r.top.get(0).label, r.top.get(1).label));
    assertEquals(7000, r.inferenceUs);
    assertEquals(0, r.preprocessUs);
    assertEquals(Delegate.CPU, r.delegate);
    assertEquals(1, h.results.size());
    assertTrue(h.errors.isEmpty());
  }

  @Test
  void sessionTurnsEveryFailureIntoOneMessage() {
    CoreTest.FakeClock clock = new CoreTest.FakeClock();
    Heard h = new Heard();
    List<Scripted> made = new ArrayList<>();
    Classifier.Factory f = (d, n) -> {
      if (d == Delegate.GPU) {
        throw new UnsatisfiedLinkError("libtensorflowlite_gpu_jni.so not found");
      }
      Scripted c = new Scripted(d, new float[] {0.5f, 0.5f}, d == Delegate.NNAPI
          ? new IllegalArgumentException("Internal error: unsupported op") : null);
      made.add(c);
      return c;
    };
    // labels do not match the two outputs
    ClassificationSession s = new ClassificationSession(f, spec(),
        Arrays.asList("a", "b", "c"), 5, clock, h);
    assertNull(s.classify(new int[16], 4, 4));
    assertTrue(h.errors.get(0).contains("no model is running"), h.errors.toString());
    assertTrue(s.configure(Delegate.CPU, 2));
    assertNull(s.classify(new int[16], 4, 4));
    assertTrue(h.errors.get(1).contains("labels.txt does not match the model"), h.errors.get(1));
    assertNull(s.classify(new int[15], 4, 4));  // a broken frame
    assertTrue(h.errors.get(2).contains("expected 16 pixels"), h.errors.get(2));
    assertTrue(!s.configure(Delegate.GPU, 2));  // a LinkageError does not escape
    assertTrue(h.errors.get(3).contains("UnsatisfiedLinkError"), h.errors.get(3));
    assertEquals(1, made.get(0).closed, "the previous classifier is closed first");
    assertTrue(s.configure(Delegate.NNAPI, 2));
    assertNull(s.classify(new int[16], 4, 4));
    assertTrue(h.errors.get(4).contains("unsupported op"), h.errors.get(4));
    s.close();
    assertEquals(1, made.get(1).closed);
    assertTrue(h.results.isEmpty());
  }

  // ---------------------------------------------------------------- the benchmark survives
  @Test
  void oneFailingDelegateDoesNotLoseTheOthers() {
    CoreTest.FakeClock clock = new CoreTest.FakeClock();
    Classifier.Factory f = (d, n) -> {
      if (d == Delegate.GPU) {
        throw new UnsatisfiedLinkError("no GPU delegate for this ABI");
      }
      return new Scripted(d, new float[] {0.2f, 0.8f}, d == Delegate.NNAPI
          ? new IllegalStateException("NNAPI driver crashed") : null) {
        @Override
        public float[] classify(float[] input) {
          clock.t += 1_000_000;
          return super.classify(input);
        }
      };
    };
    List<Integer> heard = new ArrayList<>();
    double[] peak = {100.0};
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("artifact", "m.tflite");
    List<BenchmarkRecord> recs = new BenchmarkRunner(f, clock, new LinkedHashMap<>()).run(
        Arrays.asList(Delegate.GPU, Delegate.NNAPI, Delegate.CPU), 2, 1, 300, new float[2],
        Arrays.asList(new BenchmarkRunner.EvalItem(new float[2], 1)), common,
        all -> heard.add(all.size()), () -> peak[0] += 10);
    assertEquals(Arrays.asList(1, 2, 4), heard, "records handed out after every delegate");
    assertEquals("failed", recs.get(0).get("status"));
    assertTrue(((String) recs.get(0).get("error")).contains("UnsatisfiedLinkError"));
    assertEquals("failed", recs.get(1).get("status"));
    assertTrue(((String) recs.get(1).get("error")).contains("failed while running"));
    assertEquals("ok", recs.get(2).get("status"));
    assertEquals("accuracy", recs.get(3).get("kind"));
    assertEquals(1.0, (double) ((Map<?, ?>) recs.get(3).get("accuracy")).get("top1"), 0);
    assertEquals(110.0, (double) recs.get(0).get("peak_memory_mb"), 0);
    assertEquals(130.0, (double) recs.get(2).get("peak_memory_mb"), 0);
    assertEquals(130.0, (double) recs.get(3).get("peak_memory_mb"), 0);
  }

  @Test
  void peakMemoryIsVmHwmNotTheJavaHeap() {
    String status = "Name:\torg.inceptionedge.demo\nVmPeak:\t 9000000 kB\nVmHWM:\t  245760 kB\n"
        + "VmRSS:\t  200000 kB\n";
    assertEquals(240.0, MemoryStats.vmHwmMb(status), 1e-9);
    assertNull(MemoryStats.vmHwmMb("Name:\tx\n"));
    assertNull(MemoryStats.vmHwmMb("VmHWM:\t lots kB\n"));
    assertNull(MemoryStats.vmHwmMb(null));
  }

  @Test
  void aSecondBenchmarkIsRefusedWhileOneRuns() {
    SingleRun guard = new SingleRun();
    assertNull(guard.tryStart("r1"));
    String why = guard.tryStart("r2");
    assertNotNull(why);
    assertTrue(why.contains("r1"), why);
    guard.finish();
    assertNull(guard.tryStart("r2"));
  }

  @Test
  void benchmarkPathsStayInTheAppsFolder() {
    String dir = BenchmarkProtocol.DEVICE_DIR;
    assertNull(BenchmarkProtocol.pathProblem("model", dir + "/m.tflite"));
    assertNull(BenchmarkProtocol.pathProblem("eval_dir", dir + "/eval"));
    for (String p : new String[] {"/data/data/other.app/db", dir + "/../../other/x", dir,
        dir + "x/m.tflite", dir + "//m", dir + "/./m", "", null}) {
      assertNotNull(BenchmarkProtocol.pathProblem("output", p), String.valueOf(p));
    }
  }

  // ---------------------------------------------------------------- delegates and images
  @Test
  void nnapiIsKeptButSaysItIsDeprecatedFromAndroid15() {
    DelegatePolicy.Decision old = DelegatePolicy.choose(Delegate.NNAPI,
        new DelegatePolicy.DeviceSupport(true, 33));
    assertEquals(Delegate.NNAPI, old.chosen);
    assertNull(old.note);
    DelegatePolicy.Decision v15 = DelegatePolicy.choose(Delegate.NNAPI,
        new DelegatePolicy.DeviceSupport(true, 35));
    assertEquals(Delegate.NNAPI, v15.chosen);
    assertTrue(v15.note.contains("deprecated from Android 15"));
    assertTrue(DelegatePolicy.needsGpuCheck(Delegate.GPU));
    assertTrue(!DelegatePolicy.needsGpuCheck(Delegate.CPU));
    // an UnsatisfiedLinkError falls back like an exception; the CPU itself failing does not
    DelegatePolicy.Decision fb = DelegatePolicy.afterFailure(Delegate.GPU,
        new UnsatisfiedLinkError("dlopen failed"));
    assertEquals(Delegate.CPU, fb.chosen);
    assertTrue(fb.fallbackReason.contains("UnsatisfiedLinkError"));
    assertThrows(IllegalStateException.class,
        () -> DelegatePolicy.afterFailure(Delegate.CPU, new UnsatisfiedLinkError("x")));
  }

  @Test
  void largePhotosAreSubsampledOnDecode() {
    assertEquals(1, Preprocessor.sampleSize(1080, 1920, 2048));
    assertEquals(2, Preprocessor.sampleSize(4000, 3000, 2048));  // 12 MP
    assertEquals(4, Preprocessor.sampleSize(8192, 6144, 2048));  // 50 MP
    assertThrows(IllegalArgumentException.class, () -> Preprocessor.sampleSize(0, 10, 2048));
  }

  @Test
  void greyModelsReadColourAsOpenCvDoes() {
    int[] px = {0xffff0000, 0xff00ff00, 0xff0000ff, 0xff808080};
    int[] g = Preprocessor.grey(px);
    // OpenCV 4: cvtColor(RGB2GRAY) of pure red, green, blue and mid-grey
    assertEquals(76, g[0] & 0xff);
    assertEquals(150, g[1] & 0xff);
    assertEquals(29, g[2] & 0xff);
    assertEquals(128, g[3] & 0xff);
    assertEquals(g[0] & 0xff, (g[0] >> 16) & 0xff);
  }
}
