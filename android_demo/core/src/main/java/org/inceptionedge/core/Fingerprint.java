package org.inceptionedge.core;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

/**
 * The app's preprocessing of a few canary images, for edge_eval/fingerprint.py:
 * {@code java org.inceptionedge.core.Fingerprint preprocessing.json canaries.bin out.bin}.
 *
 * <p>canaries.bin: an int count, then per image int height, int width and height * width * 3
 * RGB bytes (big-endian, as DataOutputStream). out.bin: per image an int count of floats, then
 * the floats of {@link Preprocessor#toFloat} (the tensor the app feeds the model).
 */
public final class Fingerprint {
  private Fingerprint() {}

  public static void main(String[] args) throws IOException {
    if (args.length != 3) {
      System.err.println("usage: Fingerprint preprocessing.json canaries.bin out.bin");
      System.exit(2);
    }
    String text = new String(Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8);
    Preprocessor pre = new Preprocessor(PreprocessingSpec.fromJson(text));
    try (DataInputStream in = new DataInputStream(new BufferedInputStream(
            new FileInputStream(args[1])));
        DataOutputStream out = new DataOutputStream(new BufferedOutputStream(
            new FileOutputStream(args[2])))) {
      int n = in.readInt();
      if (n < 0 || n > 64) {
        throw new IOException("bad canary count " + n);
      }
      out.writeInt(n);
      for (int i = 0; i < n; i++) {
        int h = in.readInt();
        int w = in.readInt();
        if (h <= 0 || w <= 0 || (long) h * w > 1 << 24) {
          throw new IOException("bad canary size " + h + "x" + w);
        }
        int[] argb = new int[h * w];
        for (int p = 0; p < h * w; p++) {
          int r = in.readUnsignedByte();
          int g = in.readUnsignedByte();
          int b = in.readUnsignedByte();
          argb[p] = 0xff000000 | (r << 16) | (g << 8) | b;
        }
        float[] x = pre.toFloat(argb, w, h);
        out.writeInt(x.length);
        for (float v : x) {
          out.writeFloat(v);
        }
      }
    }
  }
}
