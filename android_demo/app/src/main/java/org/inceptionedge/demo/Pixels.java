package org.inceptionedge.demo;

import android.graphics.Bitmap;

/** Bitmap -> ARGB ints, the core Preprocessor's input. */
final class Pixels {
  private Pixels() {}

  static int[] argb(Bitmap bmp) {
    Bitmap b = bmp.getConfig() == Bitmap.Config.ARGB_8888 ? bmp
        : bmp.copy(Bitmap.Config.ARGB_8888, false);
    int[] px = new int[b.getWidth() * b.getHeight()];
    b.getPixels(px, 0, b.getWidth(), 0, 0, b.getWidth(), b.getHeight());
    return px;
  }
}
