package org.inceptionedge.core;

/**
 * The evaluation preprocessing of contract/preprocessing.py, bit for bit where it can be: central
 * crop of crop_fraction (the integer box of tf.image.central_crop), bilinear resize with
 * half-pixel centres and no antialiasing (tf.image.resize / OpenCV INTER_LINEAR), then
 * x * scale + offset (per channel); and the conversion to a quantized model input.
 */
public final class Preprocessor {
  private final PreprocessingSpec spec;

  public Preprocessor(PreprocessingSpec spec) {
    this.spec = spec;
  }

  /** (top, left, cropHeight, cropWidth) as contract.preprocessing.central_crop_box. */
  public static int[] centralCropBox(int height, int width, double fraction) {
    if (fraction >= 1.0) {
      return new int[] {0, 0, height, width};
    }
    int top = (int) ((height - height * fraction) / 2);
    int left = (int) ((width - width * fraction) / 2);
    return new int[] {top, left, height - 2 * top, width - 2 * left};
  }

  /**
   * ARGB pixels (as Android's Bitmap.getPixels returns them), row-major, to the float model input
   * [height][width][3] flattened, in the spec's channel order. A grey-trained model
   * (source_channels 1) gets the image made grey first, as the Python side decodes it grey.
   */
  public float[] toFloat(int[] argb, int width, int height) {
    if (argb.length != width * height) {
      throw new IllegalArgumentException("expected " + width * height + " pixels, got "
          + argb.length);
    }
    if (spec.sourceChannels == 1) {
      argb = grey(argb);
    }
    boolean bgr = "BGR".equals(spec.colorOrder);
    int[] box = centralCropBox(height, width, spec.cropFraction);
    int top = box[0];
    int left = box[1];
    int ch = box[2];
    int cw = box[3];
    int oh = spec.height;
    int ow = spec.width;
    float[] out = new float[oh * ow * 3];
    float sy = (float) ch / oh;
    float sx = (float) cw / ow;
    int[] x0 = new int[ow];
    int[] x1 = new int[ow];
    float[] fx = new float[ow];
    for (int x = 0; x < ow; x++) {
      float in = (x + 0.5f) * sx - 0.5f;
      int lo = (int) Math.floor(in);
      fx[x] = in - lo;
      x0[x] = Math.max(lo, 0);
      x1[x] = Math.min(lo + 1, cw - 1);
      if (lo < 0) {
        fx[x] = 0f;
        x1[x] = 0;
      }
    }
    for (int y = 0; y < oh; y++) {
      float in = (y + 0.5f) * sy - 0.5f;
      int lo = (int) Math.floor(in);
      float fy = in - lo;
      int y0 = Math.max(lo, 0);
      int y1 = Math.min(lo + 1, ch - 1);
      if (lo < 0) {
        fy = 0f;
        y1 = 0;
      }
      int r0 = (top + y0) * width + left;
      int r1 = (top + y1) * width + left;
      for (int x = 0; x < ow; x++) {
        int a = argb[r0 + x0[x]];
        int b = argb[r0 + x1[x]];
        int c = argb[r1 + x0[x]];
        int d = argb[r1 + x1[x]];
        int o = (y * ow + x) * 3;
        for (int k = 0; k < 3; k++) {
          int shift = bgr ? 8 * k : 16 - 8 * k;
          float pa = (a >> shift) & 0xff;
          float pb = (b >> shift) & 0xff;
          float pc = (c >> shift) & 0xff;
          float pd = (d >> shift) & 0xff;
          float t = pa + (pb - pa) * fx[x];
          float u = pc + (pd - pc) * fx[x];
          out[o + k] = (t + (u - t) * fy) * spec.scale[k] + spec.offset[k];
        }
      }
    }
    return out;
  }

  /**
   * RGB -> grey exactly as OpenCV 4's COLOR_RGB2GRAY (BT.601 luma in 15-bit fixed point,
   * rounded), repeated into all three channels.
   */
  public static int[] grey(int[] argb) {
    int[] out = new int[argb.length];
    for (int i = 0; i < argb.length; i++) {
      int p = argb[i];
      int y = (((p >> 16) & 0xff) * 9798 + ((p >> 8) & 0xff) * 19235 + (p & 0xff) * 3735
          + (1 << 14)) >> 15;
      out[i] = 0xff000000 | (y << 16) | (y << 8) | y;
    }
    return out;
  }

  /**
   * The power-of-two decode subsampling that keeps a photo's longer side at most {@code maxSide}
   * (a 12 MP photo is 48 MB as ARGB pixels, and as many again as the int[] copy; the model sees
   * a few hundred pixels of it).
   */
  public static int sampleSize(int width, int height, int maxSide) {
    if (width <= 0 || height <= 0 || maxSide <= 0) {
      throw new IllegalArgumentException("image size " + width + "x" + height
          + " or limit " + maxSide + " is not positive");
    }
    int n = 1;
    while (Math.max(width, height) / n > maxSide) {
      n *= 2;
    }
    return n;
  }

  /** Float model input to an int8 (signed) or uint8 input with the model's scale/zero point. */
  public static byte[] quantize(float[] x, float scale, int zeroPoint, boolean signed) {
    byte[] q = new byte[x.length];
    int lo = signed ? -128 : 0;
    int hi = signed ? 127 : 255;
    for (int i = 0; i < x.length; i++) {
      long v = (long) Math.rint(x[i] / scale + zeroPoint);
      q[i] = (byte) Math.max(lo, Math.min(hi, v));
    }
    return q;
  }

  /** Reads a quantized byte back as the integer it stands for. */
  public static int quantizedValue(byte b, boolean signed) {
    return signed ? b : (b & 0xff);
  }
}
