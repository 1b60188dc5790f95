package org.inceptionedge.core;

import java.util.List;
import java.util.Map;

/** What convert/ wrote in preprocessing.json: the app reads it instead of re-stating numbers. */
public final class PreprocessingSpec {
  public final int height;
  public final int width;
  public final int channels;
  public final double cropFraction;
  public final float scale;
  public final float offset;
  public final String resizeMethod;

  public PreprocessingSpec(int height, int width, int channels, double cropFraction, float scale,
      float offset, String resizeMethod) {
    if (!(cropFraction > 0 && cropFraction <= 1)) {
      throw new IllegalArgumentException("crop_fraction must be in (0, 1], is " + cropFraction);
    }
    if (!"bilinear".equals(resizeMethod)) {
      throw new IllegalArgumentException("only bilinear resizing is implemented, not "
          + resizeMethod);
    }
    this.height = height;
    this.width = width;
    this.channels = channels;
    this.cropFraction = cropFraction;
    this.scale = scale;
    this.offset = offset;
    this.resizeMethod = resizeMethod;
  }

  /** Parses the text of a preprocessing.json. */
  public static PreprocessingSpec fromJson(String text) {
    Map<String, Object> m = Json.parseObject(text);
    for (String k : new String[] {"input_size", "crop_fraction", "scale", "offset"}) {
      if (!m.containsKey(k)) {
        throw new IllegalArgumentException("preprocessing.json lacks '" + k + "'");
      }
    }
    List<?> size = (List<?>) m.get("input_size");
    int ch = m.containsKey("channels") ? (int) Json.num(m, "channels") : 3;
    String resize = m.containsKey("resize_method") ? (String) m.get("resize_method") : "bilinear";
    return new PreprocessingSpec(((Number) size.get(0)).intValue(),
        ((Number) size.get(1)).intValue(), ch, Json.num(m, "crop_fraction"),
        (float) Json.num(m, "scale"), (float) Json.num(m, "offset"), resize);
  }
}
