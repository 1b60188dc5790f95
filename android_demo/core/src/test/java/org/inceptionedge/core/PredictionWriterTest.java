package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The Java writer of per-image predictions makes exactly the committed golden file
 * (src/test/resources/predictions_golden.jsonl), which tests/test_predictions.py reads with
 * contract.predictions: one format, two languages.
 */
class PredictionWriterTest {
  static final Path GOLDEN = Paths.get(System.getProperty("predictions.golden",
      "src/test/resources/predictions_golden.jsonl"));

  /** The golden run: 3 images, 7 classes, a GPU that fell back for one op. */
  static String goldenRun() throws Exception {
    Map<String, Object> device = new LinkedHashMap<>();
    device.put("model", "stand-in");
    device.put("abi", "arm64-v8a");
    StringWriter text = new StringWriter();
    try (PredictionWriter w = new PredictionWriter(text, PredictionWriter.header(
        "demo_static_wi8_ai8.tflite", "ab".repeat(32), "static_wi8_ai8", "litert 2.x",
        "gpu", "gpu", false, "AVERAGE_POOL_2D x1 on the CPU", device, 7, 3, "test",
        "fashion_mnist", "the test split", "2026-12-06T00:00:00+00:00"))) {
      w.write(0, PredictionWriter.imageId(PredictionWriter.utf8("image zero")), 3,
          new float[] {0.01f, 0.02f, 0.03f, 0.7f, 0.1f, 0.09f, 0.05f});
      // a tie between 1 and 4: the lower index first, as Python's stable sort
      w.write(1, PredictionWriter.imageId(PredictionWriter.utf8("image one")), 4,
          new float[] {0.0f, 0.3f, 0.1f, 0.0f, 0.3f, 0.2f, 0.1f});
      w.write(5, PredictionWriter.imageId(PredictionWriter.utf8("image five")), 0,
          new float[] {0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.1875f, 0.1875f});
    }
    return text.toString();
  }

  @Test
  void writesTheGoldenFile() throws Exception {
    String want = new String(Files.readAllBytes(GOLDEN), StandardCharsets.UTF_8);
    assertEquals(want, goldenRun());
  }

  @Test
  void idsAreSha256Prefixes() {
    // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    assertEquals("ba7816bf8f01cfea4141",
        PredictionWriter.imageId(PredictionWriter.utf8("abc")));
  }

  @Test
  void rowsHaveTheTopFiveBestFirst() throws Exception {
    List<Map<String, Object>> rows = PredictionWriter.readRows(goldenRun());
    assertEquals(4, rows.size());
    assertEquals(List.of(1L, 4L, 5L, 2L, 6L), rows.get(2).get("k"));
    assertEquals(List.of(5L, 6L, 0L, 1L, 2L), rows.get(3).get("k"));
  }

  @Test
  void aScoreCountThatIsNotTheModelsIsRefused() throws Exception {
    StringWriter text = new StringWriter();
    PredictionWriter w = new PredictionWriter(text, PredictionWriter.header("m.tflite", null,
        null, "litert", "cpu", "cpu", true, null, null, 3, 1, "test", null, null, "now"));
    assertThrows(IllegalArgumentException.class, () -> w.write(0, "x", 0, new float[4]));
  }

  @Test
  void decimalsAreWrittenAsPythonRoundsThem() {
    assertEquals("0.7", PredictionWriter.decimal(0.7f));
    assertEquals("0.1875", PredictionWriter.decimal(0.1875f));
    assertEquals("0.0", PredictionWriter.decimal(0.0f));
    assertEquals("0.333333", PredictionWriter.decimal(1f / 3f));
  }
}
