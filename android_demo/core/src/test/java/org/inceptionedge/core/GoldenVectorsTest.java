package org.inceptionedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The Java preprocessing reproduces the Python pipeline's model inputs (golden vectors made by
 * tests/golden_vectors.py from edge_eval.preprocess, itself checked against TF, and committed as
 * src/test/resources/golden.json) within 1/255 per value, and the quantized inputs within one
 * level.
 */
class GoldenVectorsTest {
  static Map<String, Object> golden() throws Exception {
    Path p = Paths.get(System.getProperty("golden.path", "src/test/resources/golden.json"));
    assertTrue(Files.isRegularFile(p), "no golden vectors at " + p
        + ": they are committed; `python tests/golden_vectors.py` makes them again");
    return Json.parseObject(new String(Files.readAllBytes(p), StandardCharsets.UTF_8));
  }

  @Test
  @SuppressWarnings("unchecked")
  void floatAndQuantizedInputsMatchPython() throws Exception {
    List<Object> cases = (List<Object>) golden().get("cases");
    assertTrue(cases.size() >= 3, "expected several golden images");
    int checked = 0;
    for (Object o : cases) {
      Map<String, Object> c = (Map<String, Object>) o;
      PreprocessingSpec spec = PreprocessingSpec.fromJson(Json.write(c.get("spec")));
      int w = ((Number) c.get("width")).intValue();
      int h = ((Number) c.get("height")).intValue();
      List<Object> rgb = (List<Object>) c.get("rgb");
      int[] argb = new int[w * h];
      for (int i = 0; i < argb.length; i++) {
        int r = ((Number) rgb.get(3 * i)).intValue();
        int g = ((Number) rgb.get(3 * i + 1)).intValue();
        int b = ((Number) rgb.get(3 * i + 2)).intValue();
        argb[i] = 0xff000000 | (r << 16) | (g << 8) | b;
      }
      float[] got = new Preprocessor(spec).toFloat(argb, w, h);
      List<Object> want = (List<Object>) c.get("float");
      assertEquals(want.size(), got.length, c.get("name") + ": input size");
      double worst = 0;
      for (int i = 0; i < got.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - ((Number) want.get(i)).doubleValue()));
      }
      assertTrue(worst <= 1.0 / 255, c.get("name") + ": max |diff| " + worst + " > 1/255");
      for (Object qo : (List<Object>) c.get("quantized")) {
        Map<String, Object> q = (Map<String, Object>) qo;
        boolean signed = "int8".equals(q.get("dtype"));
        byte[] qb = Preprocessor.quantize(got, (float) Json.num(q, "scale"),
            (int) Json.num(q, "zero_point"), signed);
        List<Object> qwant = (List<Object>) q.get("values");
        int worstLevels = 0;
        for (int i = 0; i < qb.length; i++) {
          worstLevels = Math.max(worstLevels, Math.abs(Preprocessor.quantizedValue(qb[i], signed)
              - ((Number) qwant.get(i)).intValue()));
        }
        assertTrue(worstLevels <= 1, c.get("name") + " " + q.get("dtype") + ": off by "
            + worstLevels + " levels");
        checked++;
      }
    }
    assertTrue(checked >= 2, "both an int8 and a uint8 input model are checked");
  }

  @Test
  void centralCropBoxMatchesTf() {
    // tf.image.central_crop(299x299, 0.875): offset 18, size 263
    int[] box = Preprocessor.centralCropBox(299, 299, 0.875);
    assertEquals(18, box[0]);
    assertEquals(263, box[2]);
    int[] whole = Preprocessor.centralCropBox(28, 28, 1.0);
    assertEquals(28, whole[2]);
  }
}
