package org.inceptionedge.core;

import java.util.ArrayList;
import java.util.List;

/** The k highest scores with their labels; ties go to the lower index (as numpy's stable sort). */
public final class TopK {
  public static final class Entry {
    public final int index;
    public final String label;
    public final float score;

    Entry(int index, String label, float score) {
      this.index = index;
      this.label = label;
      this.score = score;
    }

    @Override
    public String toString() {
      return String.format("%s %.3f", label, score);
    }
  }

  private TopK() {}

  public static List<Entry> of(float[] scores, List<String> labels, int k) {
    if (labels != null && labels.size() != scores.length) {
      throw new IllegalArgumentException("the model has " + scores.length + " outputs but "
          + labels.size() + " labels: labels.txt does not match the model");
    }
    int n = Math.min(k, scores.length);
    List<Entry> out = new ArrayList<>(n);
    boolean[] taken = new boolean[scores.length];
    for (int r = 0; r < n; r++) {
      int best = -1;
      for (int i = 0; i < scores.length; i++) {
        if (!taken[i] && (best < 0 || scores[i] > scores[best])) {
          best = i;
        }
      }
      taken[best] = true;
      out.add(new Entry(best, labels == null ? String.valueOf(best) : labels.get(best),
          scores[best]));
    }
    return out;
  }

  /** Dequantizes a quantized output (scale, zero point) to probabilities. */
  public static float[] dequantize(byte[] q, float scale, int zeroPoint, boolean signed) {
    float[] out = new float[q.length];
    for (int i = 0; i < q.length; i++) {
      out[i] = (Preprocessor.quantizedValue(q[i], signed) - zeroPoint) * scale;
    }
    return out;
  }
}
