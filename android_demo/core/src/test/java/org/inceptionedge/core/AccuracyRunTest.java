package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The accuracy mode end to end on the JVM: pushed folder in, predictions file + record out. */
class AccuracyRunTest {
  @TempDir
  Path tmp;

  File pushed(String csv) throws IOException {
    File dir = tmp.resolve("eval").toFile();
    dir.mkdirs();
    for (int k = 0; k < 3; k++) {
      Files.write(new File(dir, "img" + k + ".png").toPath(),
          ("png of image " + k).getBytes(StandardCharsets.UTF_8));
    }
    Files.write(new File(dir, BenchmarkProtocol.IMAGES_FILE).toPath(),
        csv.getBytes(StandardCharsets.UTF_8));
    return dir;
  }

  static Map<String, Object> pushedHeader() {
    Map<String, Object> h = new LinkedHashMap<>();
    h.put("artifact", "m_fp16.tflite");
    h.put("sha256", "ab12");
    h.put("recipe", "fp16");
    h.put("split", "test");
    h.put("source", "fashion_mnist");
    h.put("note", "the test split");
    h.put("ignored", "not a header field");
    return h;
  }

  static Map<String, Object> common() {
    Map<String, Object> c = new LinkedHashMap<>();
    c.put("run_id", "r1");
    c.put("created", "2026-12-06T00:00:00Z");
    return c;
  }

  BenchmarkRecord run(Classifier.Factory f, File eval, File preds) {
    Map<String, Object> device = new LinkedHashMap<>();
    device.put("kind", "android");
    return AccuracyRun.run(f, Delegate.NPU, 4, EvaluationLoopTest.pre(), eval,
        EvaluationLoopTest.DECODE, pushedHeader(), "litert 2.3.0", device, preds, common(),
        () -> 123.0);
  }

  @Test
  void writesThePredictionsAndARecordOfWhatRan() throws Exception {
    File eval = pushed("img0.png,0,7\nimg1.png,1,8\nimg2.png,2,9\n");
    File preds = tmp.resolve("p.jsonl").toFile();
    BenchmarkRecord r = run((d, t) -> new EvaluationLoopTest.Stand(Delegate.NPU, false,
        "3 of 300 ops on the CPU"), eval, preds);
    assertEquals("ok", r.get("status"));
    assertEquals("accuracy", r.get("kind"));
    assertEquals("npu", r.get("delegate"));
    assertEquals("m_fp16.tflite", r.get("artifact"));
    assertEquals(3L, r.get("runs"));
    assertEquals(Boolean.TRUE, r.get("flagged"));  // not fully accelerated
    assertEquals(123.0, r.get("peak_memory_mb"));
    assertEquals("p.jsonl", r.get("predictions"));
    List<Map<String, Object>> rows = PredictionWriter.readRows(
        new String(Files.readAllBytes(preds.toPath()), StandardCharsets.UTF_8));
    Map<String, Object> head = rows.get(0);
    assertEquals("fp16", head.get("recipe"));
    assertEquals("litert 2.3.0", head.get("runtime"));
    assertFalse(head.containsKey("ignored"));
    @SuppressWarnings("unchecked")
    Map<String, Object> acc = (Map<String, Object>) head.get("accelerator");
    assertEquals("3 of 300 ops on the CPU", acc.get("fallback_reason"));
    assertEquals(4, rows.size());
    assertEquals(9L, rows.get(3).get("i"));
    assertFalse(new File(preds.getPath() + ".tmp").exists());
  }

  @Test
  void anAcceleratorThatCannotBeBuiltIsAFailedRecordAndNoFile() throws Exception {
    File eval = pushed("img0.png,0,0\n");
    File preds = tmp.resolve("p.jsonl").toFile();
    BenchmarkRecord r = run((d, t) -> {
      throw new IllegalStateException("NPU is not available: no dispatch library");
    }, eval, preds);
    assertEquals("failed", r.get("status"));
    assertTrue(((String) r.get("error")).contains("no dispatch library"));
    assertFalse(preds.exists());
    assertFalse(new File(preds.getPath() + ".tmp").exists());
  }

  @Test
  void aBadImagesLineIsNamedAndAnUndecodableImageIsSkipped() throws Exception {
    File preds = tmp.resolve("p.jsonl").toFile();
    for (String bad : new String[] {"img0.png,0\n", "../x.png,0,0\n", "img0.png,a,0\n",
        "img0.png,0,0\nimg1.png,1,0\n", "img0.png,-1,0\n"}) {
      BenchmarkRecord r = run((d, t) -> new EvaluationLoopTest.Stand(d, true, null),
          pushed(bad), preds);
      assertEquals("failed", r.get("status"), bad);
      assertTrue(((String) r.get("error")).contains("line "), (String) r.get("error"));
      assertFalse(preds.exists());
    }
    File eval = pushed("img0.png,0,0\nimg1.png,1,1\n");
    Files.write(new File(eval, "img1.png").toPath(), "png of image x".getBytes(
        StandardCharsets.UTF_8));
    EvaluationLoop.Decoder picky = b -> {
      if (b[b.length - 1] == 'x') {
        throw new IOException("not an image");
      }
      return EvaluationLoopTest.DECODE.decode(b);
    };
    Map<String, Object> device = new LinkedHashMap<>();
    BenchmarkRecord r = AccuracyRun.run((d, t) -> new EvaluationLoopTest.Stand(d, true, null),
        Delegate.CPU, 1, EvaluationLoopTest.pre(), eval, picky, pushedHeader(), "litert",
        device, preds, common(), () -> null);
    assertEquals("ok", r.get("status"));
    assertEquals(1L, r.get("runs"));
    assertEquals(1L, r.get("images_skipped"));
    assertTrue(((String) r.get("first_skip")).contains("not an image"));
    assertNull(r.get("error"));
  }

  @Test
  void aRecreatedActivityIsTheRunningRunNotASecondOne() {
    SingleRun guard = new SingleRun();
    assertNull(guard.tryStart("a"));
    assertTrue(guard.isRunning("a"));
    assertFalse(guard.isRunning("b"));
    assertTrue(guard.tryStart("b").contains("run_id a"));
    guard.finish();
    assertFalse(guard.isRunning("a"));
  }
}
