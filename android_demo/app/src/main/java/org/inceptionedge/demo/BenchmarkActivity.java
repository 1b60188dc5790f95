package org.inceptionedge.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.os.Build;
import android.os.Bundle;
import android.view.WindowManager;
import android.util.Log;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;
import org.inceptionedge.core.AccuracyRun;
import org.inceptionedge.core.BenchmarkProtocol;
import org.inceptionedge.core.BenchmarkRecord;
import org.inceptionedge.core.BenchmarkRunner;
import org.inceptionedge.core.Classifier;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.EvalFolder;
import org.inceptionedge.core.EvaluationLoop;
import org.inceptionedge.core.Json;
import org.inceptionedge.core.MemoryStats;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.SingleRun;

/**
 * The modes edge_eval starts over adb (see BenchmarkProtocol), each in a fresh process (am start
 * -S). Benchmark: per delegate, warm-ups and timed runs; the records so far are written
 * (atomically) after every delegate, so a delegate that crashes the process loses only itself;
 * then the ".done" marker. Accuracy: one accelerator, every pushed image one at a time into a
 * predictions file (AccuracyRun), then its record and the marker. A recreated activity
 * (rotation, dark mode) does not start the run again. Only a caller holding android.permission.DUMP (the adb shell)
 * can start it (AndroidManifest.xml), every path must lie under BenchmarkProtocol.DEVICE_DIR,
 * and a second start while one runs is answered with a failed record, not a second run.
 */
public final class BenchmarkActivity extends Activity {
  private static final String TAG = "InceptionEdgeBench";
  private static final SingleRun GUARD = new SingleRun();

  @Override
  protected void onCreate(Bundle state) {
    super.onCreate(state);
    // the screen stays on while a run goes (a sleeping phone throttles, or stops, the run)
    getWindow().addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON);
    final Intent it = getIntent();
    final String output = it.getStringExtra(BenchmarkProtocol.EXTRA_OUTPUT);
    final String runId = it.getStringExtra(BenchmarkProtocol.EXTRA_RUN_ID);
    if (state != null || GUARD.isRunning(runId)) {
      // recreated (rotation, dark mode, ...) or the same intent again: the run started by the
      // first onCreate goes on in its thread; nothing is started or written here
      Log.i(TAG, "run " + runId + " goes on");
      return;
    }
    String bad = BenchmarkProtocol.pathProblem(BenchmarkProtocol.EXTRA_OUTPUT, output);
    if (bad != null) {  // nowhere to answer: say it in the log and stop
      Log.e(TAG, bad);
      finish();
      return;
    }
    String busy = GUARD.tryStart(runId);
    if (busy != null) {
      Log.e(TAG, busy);
      write(output, Collections.singletonList(failed(runId, busy)), true);
      finish();
      return;
    }
    new Thread(() -> {
      List<BenchmarkRecord> recs;
      try {
        recs = run(it, all -> write(output, all, false));
      } catch (Exception | LinkageError | OutOfMemoryError e) {
        Log.e(TAG, "benchmark failed", e);
        recs = Collections.singletonList(failed(runId, e.toString()));
      } finally {
        GUARD.finish();
      }
      write(output, recs, true);
      finish();
    }, "benchmark").start();
  }

  private static BenchmarkRecord failed(String runId, String error) {
    return new BenchmarkRecord("latency").fail("failed", error).put("run_id", runId)
        .put("device", device()).put("created", now());
  }

  private List<BenchmarkRecord> run(Intent it, BenchmarkRunner.Sink sink) throws IOException {
    for (String extra : new String[] {BenchmarkProtocol.EXTRA_MODEL,
        BenchmarkProtocol.EXTRA_LABELS, BenchmarkProtocol.EXTRA_PREPROCESSING}) {
      checkPath(extra, it.getStringExtra(extra));
    }
    String delegatesExtra = it.getStringExtra(BenchmarkProtocol.EXTRA_DELEGATES);
    if (delegatesExtra == null || delegatesExtra.isEmpty()) {
      throw new IOException("the 'delegates' extra is missing (CPU, GPU, NPU)");
    }
    String mode = it.getStringExtra(BenchmarkProtocol.EXTRA_MODE);
    mode = mode == null || mode.isEmpty() ? BenchmarkProtocol.MODE_BENCHMARK : mode;
    if (!mode.equals(BenchmarkProtocol.MODE_BENCHMARK)
        && !mode.equals(BenchmarkProtocol.MODE_ACCURACY)) {
      throw new IOException("the 'mode' extra must be " + BenchmarkProtocol.MODE_BENCHMARK
          + " or " + BenchmarkProtocol.MODE_ACCURACY + ", is " + mode);
    }
    ModelFiles files = ModelFiles.fromFiles(it.getStringExtra(BenchmarkProtocol.EXTRA_MODEL),
        it.getStringExtra(BenchmarkProtocol.EXTRA_LABELS),
        it.getStringExtra(BenchmarkProtocol.EXTRA_PREPROCESSING));
    Preprocessor pre = new Preprocessor(files.spec);
    List<Delegate> delegates = new ArrayList<>();
    for (String d : delegatesExtra.split(",")) {
      delegates.add(Delegate.parse(d));
    }
    int threads = it.getIntExtra(BenchmarkProtocol.EXTRA_THREADS, 4);
    String evalDir = it.getStringExtra(BenchmarkProtocol.EXTRA_EVAL_DIR);
    boolean haveEval = evalDir != null && !evalDir.isEmpty();
    if (haveEval) {
      checkPath(BenchmarkProtocol.EXTRA_EVAL_DIR, evalDir);
    }
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("run_id", it.getStringExtra(BenchmarkProtocol.EXTRA_RUN_ID));
    common.put("created", now());
    Map<String, Object> tools = new LinkedHashMap<>();
    tools.put("litert", BuildConfig.LITERT_VERSION);
    tools.put("app", BuildConfig.VERSION_NAME);
    common.put("tools", tools);
    // strictly the accelerator asked for: one LiteRT cannot give is a failed record
    Classifier.Factory factory = (d, n) -> CompiledModelClassifier.strict(this, files, d, n);

    if (mode.equals(BenchmarkProtocol.MODE_ACCURACY)) {
      // one accelerator per process (edge_eval starts each with am start -S)
      if (delegates.size() != 1 || !haveEval) {
        throw new IOException("accuracy mode needs exactly one accelerator in 'delegates' and "
            + "an 'eval_dir'");
      }
      String header = it.getStringExtra(BenchmarkProtocol.EXTRA_HEADER);
      String predictions = it.getStringExtra(BenchmarkProtocol.EXTRA_PREDICTIONS);
      checkPath(BenchmarkProtocol.EXTRA_HEADER, header);
      checkPath(BenchmarkProtocol.EXTRA_PREDICTIONS, predictions);
      Map<String, Object> pushed;
      try {
        pushed = Json.parseObject(ModelFiles.read(new FileInputStream(header)));
      } catch (IllegalArgumentException e) {
        throw new IOException(header + ": " + e.getMessage());
      }
      EvaluationLoop.Decoder decoder = bytes -> {
        Bitmap bmp = BitmapFactory.decodeByteArray(bytes, 0, bytes.length);
        if (bmp == null) {
          throw new IOException("not an image Android can decode");
        }
        try {
          return new EvaluationLoop.Decoded(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
        } finally {
          bmp.recycle();
        }
      };
      BenchmarkRecord rec = AccuracyRun.run(factory, delegates.get(0), threads, pre,
          new File(evalDir), decoder, pushed, "android-app (LiteRT " + BuildConfig.LITERT_VERSION
              + " CompiledModel)", device(), new File(predictions), common,
          BenchmarkActivity::vmHwmMb);
      return Collections.singletonList(rec);
    }

    // benchmark mode: latency of one input, the first pushed image or a mid-grey frame, through
    // the real preprocessing (accuracy is the accuracy mode's: one image at a time)
    int warmup = it.getIntExtra(BenchmarkProtocol.EXTRA_WARMUP, 5);
    int runs = it.getIntExtra(BenchmarkProtocol.EXTRA_RUNS, 50);
    float[] input = null;
    double prepMs = 0;
    if (haveEval) {
      EvalFolder images = EvalFolder.open(new File(evalDir));
      byte[] first = images.size() == 0 ? null : images.bytes(0);
      Bitmap bmp = first == null ? null : BitmapFactory.decodeByteArray(first, 0, first.length);
      if (bmp != null) {
        long t = System.nanoTime();
        input = pre.toFloat(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
        prepMs = (System.nanoTime() - t) / 1e6;
      }
    }
    if (input == null) {
      int[] px = new int[files.spec.width * files.spec.height];
      java.util.Arrays.fill(px, 0xff808080);
      long t = System.nanoTime();
      input = pre.toFloat(px, files.spec.width, files.spec.height);
      prepMs = (System.nanoTime() - t) / 1e6;
    }
    common.put("artifact", files.modelName);
    common.put("preprocess_ms", prepMs);
    BenchmarkRunner runner = new BenchmarkRunner(factory, System::nanoTime, device());
    // peak_memory_mb is the process's peak RSS (VmHWM: native memory included); the record's
    // peak_memory_is says so (benchmark_model's figure is a delta)
    return runner.run(delegates, threads, warmup, runs, input,
        Collections.<BenchmarkRunner.EvalItem>emptyList(), common, sink,
        BenchmarkActivity::vmHwmMb);
  }

  private static void checkPath(String extra, String path) throws IOException {
    String bad = BenchmarkProtocol.pathProblem(extra, path);
    if (bad != null) {
      throw new IOException(bad);
    }
  }

  static Double vmHwmMb() {
    try {
      return MemoryStats.vmHwmMb(ModelFiles.read(new java.io.FileInputStream(
          "/proc/self/status")));
    } catch (IOException e) {
      return null;
    }
  }

  static Map<String, Object> device() {
    Map<String, Object> d = new LinkedHashMap<>();
    d.put("kind", "android");
    d.put("name", Build.MODEL);
    d.put("manufacturer", Build.MANUFACTURER);
    d.put("sdk", String.valueOf(Build.VERSION.SDK_INT));
    d.put("abi", Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : null);
    d.put("soc", Build.VERSION.SDK_INT >= 31 ? Build.SOC_MODEL : null);
    return d;
  }

  static String now() {
    SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ssXXX", Locale.ROOT);
    f.setTimeZone(TimeZone.getTimeZone("UTC"));
    return f.format(new Date());
  }

  /** The records as a JSON array, written whole (temporary file, then rename); the done marker
   * after the last write. */
  private static synchronized void write(String output, List<BenchmarkRecord> recs,
      boolean done) {
    StringBuilder b = new StringBuilder("[");
    for (int i = 0; i < recs.size(); i++) {
      b.append(i > 0 ? "," : "").append(recs.get(i).toJson());
    }
    b.append("]");
    try {
      File out = new File(output);
      out.getParentFile().mkdirs();
      File tmp = new File(output + ".tmp");
      try (FileOutputStream f = new FileOutputStream(tmp)) {
        f.write(b.toString().getBytes(StandardCharsets.UTF_8));
        f.getFD().sync();
      }
      if (!tmp.renameTo(out)) {
        throw new IOException("cannot rename " + tmp + " to " + out);
      }
      if (done) {
        new File(output + BenchmarkProtocol.DONE_SUFFIX).createNewFile();
      }
    } catch (IOException e) {
      Log.e(TAG, "cannot write " + output, e);
    }
  }
}
