package org.inceptionedge.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.os.Build;
import android.os.Bundle;
import android.util.Log;
import java.io.File;
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
import org.inceptionedge.core.AppModel;
import org.inceptionedge.core.BenchmarkProtocol;
import org.inceptionedge.core.BenchmarkRecord;
import org.inceptionedge.core.BenchmarkRunner;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.MemoryStats;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.SingleRun;

/**
 * The benchmark mode edge_eval starts over adb (see BenchmarkProtocol): per delegate, warm-ups and
 * timed runs, and on-device accuracy when an evaluation folder was pushed. The records so far are
 * written (atomically) after every delegate, so a delegate that crashes the process loses only
 * itself; then the ".done" marker. Only a caller holding android.permission.DUMP (the adb shell)
 * can start it (AndroidManifest.xml), every path must lie under BenchmarkProtocol.DEVICE_DIR,
 * and a second start while one runs is answered with a failed record, not a second run.
 */
public final class BenchmarkActivity extends Activity {
  private static final String TAG = "InceptionEdgeBench";
  private static final SingleRun GUARD = new SingleRun();

  @Override
  protected void onCreate(Bundle state) {
    super.onCreate(state);
    final Intent it = getIntent();
    final String output = it.getStringExtra(BenchmarkProtocol.EXTRA_OUTPUT);
    final String runId = it.getStringExtra(BenchmarkProtocol.EXTRA_RUN_ID);
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
      String bad = BenchmarkProtocol.pathProblem(extra, it.getStringExtra(extra));
      if (bad != null) {
        throw new IOException(bad);
      }
    }
    String delegatesExtra = it.getStringExtra(BenchmarkProtocol.EXTRA_DELEGATES);
    if (delegatesExtra == null || delegatesExtra.isEmpty()) {
      throw new IOException("the 'delegates' extra is missing (CPU, GPU, NNAPI)");
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
    int warmup = it.getIntExtra(BenchmarkProtocol.EXTRA_WARMUP, 5);
    int runs = it.getIntExtra(BenchmarkProtocol.EXTRA_RUNS, 50);
    String evalDir = it.getStringExtra(BenchmarkProtocol.EXTRA_EVAL_DIR);
    if (evalDir != null && !evalDir.isEmpty()) {
      String bad = BenchmarkProtocol.pathProblem(BenchmarkProtocol.EXTRA_EVAL_DIR, evalDir);
      if (bad != null) {
        throw new IOException(bad);
      }
    }

    List<BenchmarkRunner.EvalItem> eval = new ArrayList<>();
    float[] input = null;
    double prepMs = 0;
    if (evalDir != null && !evalDir.isEmpty()) {
      String csv = ModelFiles.read(new java.io.FileInputStream(new File(evalDir, "labels.csv")));
      for (String line : csv.split("\n")) {
        String[] parts = line.trim().split(",");
        if (parts.length != 2 || !AppModel.isPlainName(parts[0])) {
          continue;
        }
        int label;
        try {
          label = Integer.parseInt(parts[1].trim());
        } catch (NumberFormatException e) {
          Log.w(TAG, "labels.csv: bad label in '" + line + "': skipped");
          continue;
        }
        Bitmap bmp = BitmapFactory.decodeFile(new File(evalDir, parts[0]).getPath());
        if (bmp == null) {
          Log.w(TAG, "unreadable evaluation image " + parts[0] + ": skipped");
          continue;
        }
        long t = System.nanoTime();
        float[] x = pre.toFloat(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
        prepMs += (System.nanoTime() - t) / 1e6;
        eval.add(new BenchmarkRunner.EvalItem(x, label));
      }
      input = eval.isEmpty() ? null : eval.get(0).input;
      prepMs = eval.isEmpty() ? 0 : prepMs / eval.size();
    }
    if (input == null) {  // latency only: a mid-grey image through the real preprocessing
      int[] px = new int[files.spec.width * files.spec.height];
      java.util.Arrays.fill(px, 0xff808080);
      long t = System.nanoTime();
      input = pre.toFloat(px, files.spec.width, files.spec.height);
      prepMs = (System.nanoTime() - t) / 1e6;
    }
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("artifact", files.modelName);
    common.put("run_id", it.getStringExtra(BenchmarkProtocol.EXTRA_RUN_ID));
    common.put("preprocess_ms", prepMs);
    common.put("created", now());
    Map<String, Object> tools = new LinkedHashMap<>();
    tools.put("litert", org.tensorflow.lite.TensorFlowLite.runtimeVersion());
    tools.put("app", BuildConfig.VERSION_NAME);
    common.put("tools", tools);
    final int api = Build.VERSION.SDK_INT;
    BenchmarkRunner runner = new BenchmarkRunner(
        (d, n) -> LiteRtClassifier.create(files.model, d, n, api), System::nanoTime, device());
    // peak_memory_mb is the process's peak RSS (VmHWM: native memory included), as on the host
    return runner.run(delegates, threads, warmup, runs, input, eval, common, sink,
        BenchmarkActivity::vmHwmMb);
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
