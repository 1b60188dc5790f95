package org.inceptionedge.core;

import java.io.IOException;
import java.io.Writer;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * On-device accuracy, one accelerator per run: every pushed image is decoded, preprocessed by the
 * app's own code (Preprocessor) and classified one at a time - memory stays flat in the number of
 * images - and each answer is a row of a predictions file (PredictionWriter, the host's format),
 * which edge_eval pairs with the host's float reference on the image ids.
 *
 * <p>The accelerator is requested strictly: when the runtime runs something else (the GPU
 * accelerator missing, an NPU runtime not packaged), the header says what really ran and why,
 * {@code fully_accelerated} is false, and the result is flagged - never relabelled.
 */
public final class EvaluationLoop {
  /** The pushed images, by position: encoded bytes, label, and the index in the host's set. */
  public interface Images {
    int size();

    int index(int k);

    int label(int k);

    byte[] bytes(int k) throws IOException;
  }

  /** Decodes an image file's bytes (the app: BitmapFactory) to ARGB pixels. */
  public interface Decoder {
    Decoded decode(byte[] encoded) throws IOException;
  }

  public static final class Decoded {
    public final int[] argb;
    public final int width;
    public final int height;

    public Decoded(int[] argb, int width, int height) {
      this.argb = argb;
      this.width = width;
      this.height = height;
    }
  }

  /**
   * What the run did: rows written, images that did not decode (the first one's reason), what
   * ran, whether the request was honoured, and the milliseconds summed over the rows: inside
   * the runtime's call alone ({@code inferenceMs}: LiteRT's own time, buffer copies included)
   * and per image end to end ({@code wallMs}: read, decode, preprocess, classify, write).
   */
  public static final class Result {
    public final int rows;
    public final int skipped;
    public final String firstSkip;
    public final Delegate requested;
    public final Delegate used;
    public final Boolean fullyAccelerated;
    public final String fallbackReason;
    public final double inferenceMs;
    public final double wallMs;

    Result(int rows, int skipped, String firstSkip, Delegate requested, Delegate used,
        Boolean fully, String reason, double ms, double wallMs) {
      this.rows = rows;
      this.skipped = skipped;
      this.firstSkip = firstSkip;
      this.requested = requested;
      this.used = used;
      this.fullyAccelerated = fully;
      this.fallbackReason = reason;
      this.inferenceMs = ms;
      this.wallMs = wallMs;
    }

    /** The accelerator asked for did not run the whole model. */
    public boolean flagged() {
      return used != requested || Boolean.FALSE.equals(fullyAccelerated);
    }
  }

  private EvaluationLoop() {}

  /**
   * Runs every image through a classifier built for {@code requested} and writes the predictions
   * to {@code out}. {@code header} holds the run's fields (artifact, sha256, recipe, runtime,
   * device, split, source, note, created); the accelerator fields and the class count come from
   * the run itself.
   */
  public static Result run(Classifier.Factory factory, Delegate requested, int threads,
      Preprocessor pre, Images images, Decoder decoder, Map<String, Object> header, Writer out)
      throws Exception {
    PredictionWriter writer = null;
    double ms = 0;
    double wall = 0;
    int skipped = 0;
    String firstSkip = null;
    try (Classifier c = factory.create(requested, threads)) {
      Delegate used = c.delegate();
      Boolean fully = c.fullyAccelerated();
      String reason = c.fallbackReason();
      if (used != requested && reason == null) {
        reason = "the runtime ran " + used.recordName + " instead of " + requested.recordName;
      }
      if (used != requested) {
        fully = false;
      }
      for (int k = 0; k < images.size(); k++) {
        long t0 = System.nanoTime();
        byte[] encoded = images.bytes(k);  // read once: the pixels and the identity
        Decoded d;
        try {
          d = decoder.decode(encoded);
        } catch (IOException e) {  // the rest of the set is still evaluated; the host pairs ids
          skipped++;
          firstSkip = firstSkip == null ? "image " + images.index(k) + ": " + e.getMessage()
              : firstSkip;
          continue;
        }
        float[] input = pre.toFloat(d.argb, d.width, d.height);
        long t = System.nanoTime();
        float[] scores = c.classify(input);
        ms += (System.nanoTime() - t) / 1e6;
        if (writer == null) {
          writer = new PredictionWriter(out, withRun(header, requested, used, fully, reason,
              scores.length, images.size()));
        }
        writer.write(images.index(k), PredictionWriter.imageId(encoded), images.label(k),
            scores);
        wall += (System.nanoTime() - t0) / 1e6;
      }
      int rows = writer == null ? 0 : writer.rows();
      return new Result(rows, skipped, firstSkip, requested, used, fully, reason, ms, wall);
    } finally {
      if (writer != null) {
        writer.close();
      } else {
        out.close();
      }
    }
  }

  static Map<String, Object> withRun(Map<String, Object> h, Delegate requested, Delegate used,
      Boolean fully, String reason, int classes, int images) {
    @SuppressWarnings("unchecked")
    Map<String, Object> device = (Map<String, Object>) h.get("device");
    Map<String, Object> out = new LinkedHashMap<>(PredictionWriter.header(
        (String) h.get("artifact"), (String) h.get("sha256"), (String) h.get("recipe"),
        (String) h.get("runtime"), requested.recordName, used.recordName, fully, reason, device,
        classes, images, (String) h.get("split"), (String) h.get("source"),
        (String) h.get("note"), (String) h.get("created")));
    return out;
  }
}
