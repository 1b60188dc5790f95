package org.inceptionedge.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The app's accuracy mode, one accelerator per process: the pushed images (EvalFolder) through
 * EvaluationLoop into a predictions file, and one accuracy record (contract/schema/record.json)
 * saying what ran. The predictions file appears whole or not at all (written beside, then
 * renamed); a classifier that cannot be built for the accelerator - the GPU accelerator not
 * packaged, no NPU runtime - is a failed record with the runtime's words, never a run on
 * something else under the requested name.
 */
public final class AccuracyRun {
  /** The header fields edge_eval pushes (header.json); the rest come from the run. */
  public static final String[] HEADER_FIELDS = {"artifact", "sha256", "recipe", "split",
      "source", "note"};

  private AccuracyRun() {}

  /**
   * {@code pushed}: header.json's fields (only HEADER_FIELDS are taken, each a string or null);
   * {@code common}: what every record carries (run_id, tools, created); {@code runtime}: the
   * runtime's name and version for the predictions header.
   */
  public static BenchmarkRecord run(Classifier.Factory factory, Delegate requested, int threads,
      Preprocessor pre, File evalDir, EvaluationLoop.Decoder decoder, Map<String, Object> pushed,
      String runtime, Map<String, Object> device, File predictions, Map<String, Object> common,
      BenchmarkRunner.MemoryProbe memory) {
    BenchmarkRecord rec = new BenchmarkRecord("accuracy").put("delegate", requested.recordName)
        .put("threads", threads).put("batch_size", 1).put("device", device);
    for (Map.Entry<String, Object> e : common.entrySet()) {
      rec.put(e.getKey(), e.getValue());
    }
    Map<String, Object> header = new LinkedHashMap<>();
    for (String k : HEADER_FIELDS) {
      Object v = pushed.get(k);
      if (v != null && !(v instanceof String)) {
        return rec.fail("failed", "header.json: '" + k + "' must be a string");
      }
      header.put(k, v);
    }
    rec.put("artifact", header.get("artifact")).put("sha256", header.get("sha256"))
        .put("recipe", header.get("recipe"));
    header.put("runtime", runtime);
    header.put("device", device);
    header.put("created", common.get("created"));
    File tmp = new File(predictions.getPath() + ".tmp");
    long t0 = System.nanoTime();
    EvaluationLoop.Result r;
    try {
      EvalFolder images = EvalFolder.open(evalDir);
      Writer out = new OutputStreamWriter(new FileOutputStream(tmp), StandardCharsets.UTF_8);
      r = EvaluationLoop.run(factory, requested, threads, pre, images, decoder, header, out);
      if (r.rows == 0) {
        throw new IOException("no image of " + evalDir + " could be classified"
            + (r.firstSkip == null ? "" : " (" + r.firstSkip + ")"));
      }
      if (!tmp.renameTo(predictions)) {
        throw new IOException("cannot rename " + tmp + " to " + predictions);
      }
    } catch (Exception | LinkageError | OutOfMemoryError e) {
      tmp.delete();
      return rec.fail("failed", requested + " could not run the model: " + e)
          .put("peak_memory_mb", memory.peakMb())
          .put("peak_memory_is", BenchmarkRunner.PEAK_MEMORY_IS);
    }
    Map<String, Object> acc = new LinkedHashMap<>();
    acc.put("requested", r.requested.recordName);
    acc.put("used", r.used.recordName);
    acc.put("fully_accelerated", r.fullyAccelerated);
    acc.put("fallback_reason", r.fallbackReason);
    rec.put("accelerator", acc).put("flagged", r.flagged())
        .put("runs", (long) r.rows).put("images_skipped", (long) r.skipped)
        .put("first_skip", r.firstSkip)
        .put("inference_ms_mean", r.inferenceMs / r.rows)
        .put("wall_ms_mean", r.wallMs / r.rows)
        .put("duration_s", (System.nanoTime() - t0) / 1e9)
        .put("predictions", predictions.getName())
        .put("peak_memory_mb", memory.peakMb())
        .put("peak_memory_is", BenchmarkRunner.PEAK_MEMORY_IS);
    return rec;
  }
}
