package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The on-device evaluation loop against a stand-in classifier: rows, ids, strict accelerators. */
class EvaluationLoopTest {
  /** Three 4x4 "images": the pixel value is the class (0, 1, 2), the file bytes name them. */
  static final class Pushed implements EvaluationLoop.Images {
    int loaded;

    public int size() {
      return 3;
    }

    public int index(int k) {
      return 10 + k;
    }

    public int label(int k) {
      return k;
    }

    public byte[] bytes(int k) {
      loaded++;
      return ("png of image " + k).getBytes(StandardCharsets.UTF_8);
    }
  }

  static final EvaluationLoop.Decoder DECODE = encoded -> {
    int v = encoded[encoded.length - 1] - '0';
    int[] argb = new int[16];
    java.util.Arrays.fill(argb, 0xff000000 | (v * 80) << 16 | (v * 80) << 8 | (v * 80));
    return new EvaluationLoop.Decoded(argb, 4, 4);
  };

  /** Puts its mass on the class the input's mean says (0, 1 or 2 of 4 classes). */
  static final class Stand implements Classifier {
    final Delegate runs;
    final Boolean fully;
    final String reason;

    Stand(Delegate runs, Boolean fully, String reason) {
      this.runs = runs;
      this.fully = fully;
      this.reason = reason;
    }

    public float[] classify(float[] input) {
      double mean = 0;
      for (float x : input) {
        mean += x / input.length;
      }
      int c = (int) Math.round((mean + 1.0) / 2.0 * 255.0 / 80.0);
      float[] p = {0.05f, 0.05f, 0.05f, 0.05f};
      p[Math.min(c, 3)] = 0.85f;
      return p;
    }

    public Delegate delegate() {
      return runs;
    }

    public String fallbackReason() {
      return reason;
    }

    public Boolean fullyAccelerated() {
      return fully;
    }

    public void close() {}
  }

  static Map<String, Object> header() {
    Map<String, Object> h = new LinkedHashMap<>();
    h.put("artifact", "m.tflite");
    h.put("runtime", "litert");
    h.put("split", "test");
    h.put("created", "2026-12-06T00:00:00+00:00");
    return h;
  }

  static Preprocessor pre() {
    return new Preprocessor(new PreprocessingSpec(4, 4, 3, 1.0, 2f / 255f, -1f, "bilinear"));
  }

  @Test
  void everyImageIsOneRowWithTheHostsIdentity() throws Exception {
    StringWriter out = new StringWriter();
    Pushed images = new Pushed();
    EvaluationLoop.Result r = EvaluationLoop.run((d, t) -> new Stand(d, true, null),
        Delegate.GPU, 4, pre(), images, DECODE, header(), out);
    assertEquals(3, r.rows);
    assertFalse(r.flagged());
    List<Map<String, Object>> rows = PredictionWriter.readRows(out.toString());
    @SuppressWarnings("unchecked")
    Map<String, Object> acc = (Map<String, Object>) rows.get(0).get("accelerator");
    assertEquals("gpu", acc.get("requested"));
    assertEquals("gpu", acc.get("used"));
    assertEquals(Boolean.TRUE, acc.get("fully_accelerated"));
    assertEquals(4L, rows.get(0).get("classes"));
    for (int k = 0; k < 3; k++) {
      Map<String, Object> row = rows.get(k + 1);
      assertEquals((long) (10 + k), row.get("i"));
      assertEquals((long) k, row.get("y"));
      assertEquals((long) k, ((List<?>) row.get("k")).get(0));  // the stand-in is right
      assertEquals(PredictionWriter.imageId(images.bytes(k)), row.get("id"));
    }
  }

  @Test
  void aSilentFallbackIsFlaggedNotRelabelled() throws Exception {
    StringWriter out = new StringWriter();
    EvaluationLoop.Result r = EvaluationLoop.run((d, t) -> new Stand(Delegate.CPU, null, null),
        Delegate.GPU, 4, pre(), new Pushed(), DECODE, header(), out);
    assertTrue(r.flagged());
    @SuppressWarnings("unchecked")
    Map<String, Object> acc = (Map<String, Object>) PredictionWriter.readRows(out.toString())
        .get(0).get("accelerator");
    assertEquals("gpu", acc.get("requested"));
    assertEquals("xnnpack", acc.get("used"));
    assertEquals(Boolean.FALSE, acc.get("fully_accelerated"));
    assertEquals("the runtime ran xnnpack instead of gpu", acc.get("fallback_reason"));
  }

  @Test
  void aPartlyDelegatedModelSaysWhy() throws Exception {
    StringWriter out = new StringWriter();
    EvaluationLoop.Result r = EvaluationLoop.run(
        (d, t) -> new Stand(d, false, "AVERAGE_POOL_2D x9 on the CPU"), Delegate.NPU, 4, pre(),
        new Pushed(), DECODE, header(), out);
    assertTrue(r.flagged());
    assertEquals("AVERAGE_POOL_2D x9 on the CPU", r.fallbackReason);
  }

  @Test
  void imagesAreReadOneAtATime() throws Exception {
    Pushed images = new Pushed();
    EvaluationLoop.run((d, t) -> new Stand(d, true, null), Delegate.CPU, 1, pre(), images, DECODE,
        header(), new StringWriter());
    assertEquals(3, images.loaded);  // one read per image: decoded and hashed from it
  }
}
