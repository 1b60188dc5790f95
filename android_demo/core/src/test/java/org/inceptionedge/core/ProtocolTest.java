package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The app and edge_eval share one protocol and one record schema: every constant here is checked
 * against contract/schema/*.json, and a record the runner makes is written to target/ for the
 * Python test to validate with contract.records.validate.
 */
class ProtocolTest {
  static Map<String, Object> schemaFile(String name) throws Exception {
    Path p = Paths.get(System.getProperty("schema.dir", "../../contract/schema"), name);
    return Json.parseObject(new String(Files.readAllBytes(p), StandardCharsets.UTF_8));
  }

  @Test
  @SuppressWarnings("unchecked")
  void intentExtrasMatchEdgeEval() throws Exception {
    Map<String, Object> proto = schemaFile("android_app.json");
    assertEquals(proto.get("package"), BenchmarkProtocol.PACKAGE);
    assertEquals(proto.get("activity"), BenchmarkProtocol.ACTIVITY);
    assertEquals(proto.get("device_dir"), BenchmarkProtocol.DEVICE_DIR);
    assertEquals(proto.get("done_suffix"), BenchmarkProtocol.DONE_SUFFIX);
    assertEquals(Arrays.asList(BenchmarkProtocol.MODE_BENCHMARK, BenchmarkProtocol.MODE_ACCURACY),
        proto.get("modes"));
    assertEquals(proto.get("images_file"), BenchmarkProtocol.IMAGES_FILE);
    assertEquals(proto.get("header_fields"), Arrays.asList(AccuracyRun.HEADER_FIELDS));
    Map<String, Object> extras = (Map<String, Object>) proto.get("extras");
    Set<String> ours = new HashSet<>(Arrays.asList(BenchmarkProtocol.STRING_EXTRAS));
    ours.addAll(Arrays.asList(BenchmarkProtocol.INT_EXTRAS));
    assertEquals(extras.keySet(), ours);
    for (String k : BenchmarkProtocol.STRING_EXTRAS) {
      assertEquals("--es", ((Map<String, Object>) extras.get(k)).get("flag"), k);
    }
    for (String k : BenchmarkProtocol.INT_EXTRAS) {
      assertEquals("--ei", ((Map<String, Object>) extras.get(k)).get("flag"), k);
    }
    Map<String, Object> delegates = (Map<String, Object>) proto.get("delegates");
    for (Delegate d : Delegate.values()) {
      assertEquals(delegates.get(d.name()), d.recordName, d.name());
    }
    Map<String, Object> assets = (Map<String, Object>) proto.get("assets");
    assertEquals(assets.get("dir"), AppModel.DIR);
    assertEquals(assets.get("pointer"), AppModel.POINTER);
    assertEquals(((Number) assets.get("pointer_schema_version")).intValue(),
        AppModel.SCHEMA_VERSION);
  }

  @Test
  @SuppressWarnings("unchecked")
  void recordCarriesEveryRequiredKey() throws Exception {
    Map<String, Object> schema = schemaFile("record.json");
    assertEquals(((Number) schema.get("schema_version")).intValue(),
        BenchmarkRecord.SCHEMA_VERSION);
    assertEquals(schema.get("required"), Arrays.asList(BenchmarkRecord.REQUIRED));
    List<Object> delegates = (List<Object>) ((Map<String, Object>) schema.get("enums"))
        .get("delegate");
    for (Delegate d : Delegate.values()) {
      assertTrue(delegates.contains(d.recordName), d.recordName);
    }
    // a real record from the runner, for the Python side to validate
    CoreTest.FakeClock clock = new CoreTest.FakeClock();
    Classifier.Factory factory = (requested, threads) -> new Classifier() {
      @Override
      public float[] classify(float[] input) {
        clock.t += 3_000_000;
        return new float[] {0.2f, 0.8f};
      }

      @Override
      public Delegate delegate() {
        return requested;
      }

      @Override
      public String fallbackReason() {
        return null;
      }

      @Override
      public void close() {}
    };
    Map<String, Object> device = new LinkedHashMap<>();
    device.put("kind", "android");
    device.put("name", "JVM test");
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("artifact", "demo_static_wi8_ai8.tflite");
    common.put("recipe", "static_wi8_ai8");
    common.put("created", "2026-01-01T00:00:00+00:00");
    List<BenchmarkRecord> recs = new BenchmarkRunner(factory, clock, device).run(
        Arrays.asList(Delegate.CPU, Delegate.NNAPI), 4, 2, 100, new float[2],
        Arrays.asList(new BenchmarkRunner.EvalItem(new float[2], 1)), common);
    StringBuilder b = new StringBuilder("[");
    for (int i = 0; i < recs.size(); i++) {
      b.append(i > 0 ? "," : "").append(recs.get(i).toJson());
    }
    Path out = Paths.get(System.getProperty("record.out", "target/sample_record.json"));
    Files.createDirectories(out.toAbsolutePath().getParent());
    Files.write(out, b.append("]").toString().getBytes(StandardCharsets.UTF_8));
  }
}
