package org.inceptionedge.core;

import java.util.List;
import java.util.Map;

/** What convert/ wrote in preprocessing.json: the app reads it instead of re-stating numbers. */
public final class PreprocessingSpec {
  public final int height;
  public final int width;
  public final int channels;
  public final double cropFraction;
  /** Model input = pixel * scale[c] + offset[c], per channel c in the model's order. */
  public final float[] scale;
  public final float[] offset;
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
    this(height, width, channels, cropFraction, new float[] {scale, scale, scale},
        new float[] {offset, offset, offset}, resizeMethod, sourceChannels, colorOrder);
  }

  /** Per-channel normalisation (caffe's BGR means, torch's mean and std). */
  public PreprocessingSpec(int height, int width, int channels, double cropFraction,
      float[] scale, float[] offset, String resizeMethod, int sourceChannels, String colorOrder) {
    if (channels != 3) {
      throw new IllegalArgumentException("the app feeds 3-channel models; channels is " + channels);
    }
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
    if (scale.length != 3 || offset.length != 3) {
      throw new IllegalArgumentException("scale and offset need one value per channel (3), have "
          + scale.length + " and " + offset.length);
    }
    for (float v : scale) {
      if (v == 0 || Float.isNaN(v) || Float.isInfinite(v)) {
        throw new IllegalArgumentException("scale must be finite and non-zero, is " + v);
      }
    }
    this.scale = scale.clone();
    this.offset = offset.clone();
    this.resizeMethod = resizeMethod;
    if (sourceChannels != 1 && sourceChannels != 3) {
      throw new IllegalArgumentException("source_channels must be 1 or 3, is " + sourceChannels);
    }
    if (!"RGB".equals(colorOrder) && !"BGR".equals(colorOrder)) {
      throw new IllegalArgumentException("color_order must be RGB or BGR, is " + colorOrder);
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
        perChannel(m, "scale", ch), perChannel(m, "offset", ch), resize, src, order);
  }

  /** A number for every channel, or a list of one number per channel. */
  static float[] perChannel(Map<String, Object> m, String key, int channels) {
    Object v = m.get(key);
    float[] out = new float[channels];
    if (v instanceof List) {
      List<?> list = (List<?>) v;
      if (list.size() != channels) {
        throw new IllegalArgumentException("'" + key + "' has " + list.size()
            + " values for a " + channels + "-channel input");
      }
      for (int i = 0; i < channels; i++) {
        if (!(list.get(i) instanceof Number)) {
          throw new IllegalArgumentException("'" + key + "' must hold numbers, has "
              + list.get(i));
        }
        out[i] = ((Number) list.get(i)).floatValue();
      }
      return out;
    }
    java.util.Arrays.fill(out, (float) Json.num(m, key));
    return out;
  }
}
