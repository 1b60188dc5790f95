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
  /** 1: the model was trained on grey images (colour input is made grey first), else 3. */
  public final int sourceChannels;
  /** "RGB" or "BGR": the channel order the model takes. */
  public final String colorOrder;

  public PreprocessingSpec(int height, int width, int channels, double cropFraction, float scale,
      float offset, String resizeMethod) {
    this(height, width, channels, cropFraction, scale, offset, resizeMethod, 3, "RGB");
  }

  public PreprocessingSpec(int height, int width, int channels, double cropFraction, float scale,
      float offset, String resizeMethod, int sourceChannels, String colorOrder) {
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
    if (sourceChannels != 1 && sourceChannels != 3) {
      throw new IllegalArgumentException("source_channels must be 1 or 3, is " + sourceChannels);
    }
    if (!"RGB".equals(colorOrder) && !"BGR".equals(colorOrder)) {
      throw new IllegalArgumentException("color_order must be RGB or BGR, is " + colorOrder);
    }
    if (channels != 3) {
      throw new IllegalArgumentException("the app feeds 3-channel models; channels is " + channels);
    }
    this.sourceChannels = sourceChannels;
    this.colorOrder = colorOrder;
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
    int src = m.containsKey("source_channels") ? (int) Json.num(m, "source_channels") : 3;
    String order = m.containsKey("color_order") ? String.valueOf(m.get("color_order")) : "RGB";
    return new PreprocessingSpec(((Number) size.get(0)).intValue(),
        ((Number) size.get(1)).intValue(), ch, Json.num(m, "crop_fraction"),
        (float) Json.num(m, "scale"), (float) Json.num(m, "offset"), resize, src, order);
  }
}
