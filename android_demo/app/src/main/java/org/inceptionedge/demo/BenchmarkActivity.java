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
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;
import org.inceptionedge.core.BenchmarkProtocol;
import org.inceptionedge.core.BenchmarkRecord;
import org.inceptionedge.core.BenchmarkRunner;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.Preprocessor;

/**
 * The benchmark mode edge_eval starts over adb (see BenchmarkProtocol): per delegate, warm-ups and
 * timed runs, and on-device accuracy when an evaluation folder was pushed; writes the records,
 * then the ".done" marker, and finishes.
 */
public final class BenchmarkActivity extends Activity {
  private static final String TAG = "InceptionEdgeBench";

  @Override
  protected void onCreate(Bundle state) {
    super.onCreate(state);
    final Intent it = getIntent();
    new Thread(() -> {
      String output = it.getStringExtra(BenchmarkProtocol.EXTRA_OUTPUT);
      List<BenchmarkRecord> recs = new ArrayList<>();
      try {
        recs = run(it);
      } catch (Exception e) {
        Log.e(TAG, "benchmark failed", e);
        recs.add(new BenchmarkRecord("latency").fail("failed", e.toString())
            .put("run_id", it.getStringExtra(BenchmarkProtocol.EXTRA_RUN_ID))
            .put("device", device()).put("created", now()));
      }
      write(output, recs);
      finish();
    }, "benchmark").start();
  }

  private List<BenchmarkRecord> run(Intent it) throws IOException {
    ModelFiles files = ModelFiles.fromFiles(it.getStringExtra(BenchmarkProtocol.EXTRA_MODEL),
        it.getStringExtra(BenchmarkProtocol.EXTRA_LABELS),
        it.getStringExtra(BenchmarkProtocol.EXTRA_PREPROCESSING));
    Preprocessor pre = new Preprocessor(files.spec);
    List<Delegate> delegates = new ArrayList<>();
    for (String d : it.getStringExtra(BenchmarkProtocol.EXTRA_DELEGATES).split(",")) {
      delegates.add(Delegate.parse(d));
    }
    int threads = it.getIntExtra(BenchmarkProtocol.EXTRA_THREADS, 4);
    int warmup = it.getIntExtra(BenchmarkProtocol.EXTRA_WARMUP, 5);
    int runs = it.getIntExtra(BenchmarkProtocol.EXTRA_RUNS, 50);
    String evalDir = it.getStringExtra(BenchmarkProtocol.EXTRA_EVAL_DIR);

    List<BenchmarkRunner.EvalItem> eval = new ArrayList<>();
    float[] input = null;
    double prepMs = 0;
    if (evalDir != null && !evalDir.isEmpty()) {
      String csv = ModelFiles.read(new java.io.FileInputStream(new File(evalDir, "labels.csv")));
      for (String line : csv.split("\n")) {
        String[] parts = line.trim().split(",");
        if (parts.length != 2) {
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
        eval.add(new BenchmarkRunner.EvalItem(x, Integer.parseInt(parts[1])));
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
    tools.put("app", BuildConfigVersion.NAME);
    common.put("tools", tools);
    final int api = Build.VERSION.SDK_INT;
    BenchmarkRunner runner = new BenchmarkRunner(
        (d, n) -> LiteRtClassifier.create(files.model, d, n, api), System::nanoTime, device());
    List<BenchmarkRecord> recs = runner.run(delegates, threads, warmup, runs, input, eval,
        common);
    long peak = Runtime.getRuntime().totalMemory() / (1024 * 1024);
    for (BenchmarkRecord r : recs) {
      r.put("peak_memory_mb", (double) peak);  // Java heap; native memory is not included
    }
    return recs;
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

  private static void write(String output, List<BenchmarkRecord> recs) {
    StringBuilder b = new StringBuilder("[");
    for (int i = 0; i < recs.size(); i++) {
      b.append(i > 0 ? "," : "").append(recs.get(i).toJson());
    }
    b.append("]");
    try {
      File out = new File(output);
      out.getParentFile().mkdirs();
      try (FileOutputStream f = new FileOutputStream(out)) {
        f.write(b.toString().getBytes(StandardCharsets.UTF_8));
      }
      new File(output + BenchmarkProtocol.DONE_SUFFIX).createNewFile();
    } catch (IOException e) {
      Log.e(TAG, "cannot write " + output, e);
    }
  }
}
