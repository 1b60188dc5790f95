package org.inceptionedge.core;

/**
 * The benchmark mode's intent, as contract/schema/android_app.json defines it (a JVM test checks
 * every constant here against that file):
 *
 * <pre>
 * adb shell am start -W -n org.inceptionedge.demo/.BenchmarkActivity \
 *   --es model /sdcard/Android/data/org.inceptionedge.demo/files/edge_eval/m.tflite \
 *   --es labels .../labels.txt --es preprocessing .../preprocessing.json \
 *   --es delegates CPU,GPU,NNAPI --ei threads 4 --ei warmup 5 --ei runs 50 \
 *   --es eval_dir .../eval --es output .../result-ID.json --es run_id ID
 * </pre>
 *
 * The app writes a JSON array of records (contract/schema/record.json) to output, then an empty
 * output + ".done".
 *
 * <p>{@code --es mode accuracy} (with exactly one accelerator in {@code delegates}, and
 * {@code eval_dir}, {@code header}, {@code predictions}): every image that {@code eval_dir}'s
 * images.csv names ({@code file,label,index}) is classified one at a time and written as a row of
 * the predictions file (PredictionWriter); output gets one accuracy record saying what ran.
 */
public final class BenchmarkProtocol {
  public static final String PACKAGE = "org.inceptionedge.demo";
  public static final String ACTIVITY = ".BenchmarkActivity";
  public static final String DEVICE_DIR =
      "/sdcard/Android/data/org.inceptionedge.demo/files/edge_eval";
  public static final String DONE_SUFFIX = ".done";

  public static final String EXTRA_MODEL = "model";
  public static final String EXTRA_LABELS = "labels";
  public static final String EXTRA_PREPROCESSING = "preprocessing";
  public static final String EXTRA_DELEGATES = "delegates";
  public static final String EXTRA_THREADS = "threads";
  public static final String EXTRA_WARMUP = "warmup";
  public static final String EXTRA_RUNS = "runs";
  public static final String EXTRA_EVAL_DIR = "eval_dir";
  public static final String EXTRA_OUTPUT = "output";
  public static final String EXTRA_RUN_ID = "run_id";
  public static final String EXTRA_MODE = "mode";
  public static final String EXTRA_HEADER = "header";
  public static final String EXTRA_PREDICTIONS = "predictions";

  public static final String MODE_BENCHMARK = "benchmark";
  public static final String MODE_ACCURACY = "accuracy";
  /** In eval_dir: one line per pushed image, "file,label,index" (index: in the host's set). */
  public static final String IMAGES_FILE = "images.csv";

  /** String extras (am start --es). */
  public static final String[] STRING_EXTRAS = {EXTRA_MODEL, EXTRA_LABELS, EXTRA_PREPROCESSING,
      EXTRA_DELEGATES, EXTRA_EVAL_DIR, EXTRA_OUTPUT, EXTRA_RUN_ID, EXTRA_MODE, EXTRA_HEADER,
      EXTRA_PREDICTIONS};
  /** Integer extras (am start --ei). */
  public static final String[] INT_EXTRAS = {EXTRA_THREADS, EXTRA_WARMUP, EXTRA_RUNS};

  private BenchmarkProtocol() {}

  /**
   * Why a path extra cannot be used, or null: every file the benchmark reads or writes lies under
   * {@link #DEVICE_DIR} (where edge_eval pushes them), with no "." or ".." segment. The activity
   * also requires android.permission.DUMP of its caller (the adb shell holds it; apps do not).
   */
  public static String pathProblem(String extra, String path) {
    if (path == null || path.isEmpty()) {
      return "the '" + extra + "' extra is missing";
    }
    if (!path.startsWith(DEVICE_DIR + "/")) {
      return "the '" + extra + "' extra must be a path under " + DEVICE_DIR + ", is " + path;
    }
    for (String seg : path.substring(DEVICE_DIR.length() + 1).split("/", -1)) {
      if (seg.isEmpty() || seg.equals(".") || seg.equals("..")) {
        return "the '" + extra + "' extra must not contain empty, '.' or '..' segments: " + path;
      }
    }
    return null;
  }
}
