import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.inceptionedge.core.AccuracyRun;
import org.inceptionedge.core.BenchmarkProtocol;
import org.inceptionedge.core.BenchmarkRecord;
import org.inceptionedge.core.Classifier;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.DelegatePolicy;
import org.inceptionedge.core.EvaluationLoop;
import org.inceptionedge.core.Json;
import org.inceptionedge.core.PreprocessingSpec;
import org.inceptionedge.core.Preprocessor;

/**
 * A stand-in phone for tests (tests/standin_android.py starts it for `am start ... --es mode
 * accuracy`): the app's accuracy mode as the app runs it - the Java core's AccuracyRun,
 * EvalFolder, Preprocessor and PredictionWriter - with the image decoded by ImageIO where the app
 * uses BitmapFactory, and inference by the host's LiteRT in a child process
 * (tests/standin_runtime.py) where the app uses CompiledModel.
 *
 * <p>Faults, per accelerator, from $FAKE_FAULTS ({"gpu": ["float16"], ...}): "float16" (the
 * runtime computes in float16), "swap" (this accelerator's input path swaps red and blue),
 * "silent_cpu" (the accelerator takes none of the model and says so only through
 * isFullyAccelerated, as LiteRT 2.x does), "unavailable" (LiteRT has no such accelerator).
 *
 * <p>Args: the intent's extras as JSON, the fake device's root folder, the Python executable.
 */
public final class StandInPhone {
  public static void main(String[] args) throws Exception {
    Map<String, Object> ex = Json.parseObject(args[0]);
    File root = new File(args[1]);
    Map<String, Object> faults = Json.parseObject(env("FAKE_FAULTS", "{}"));
    Delegate requested = Delegate.parse((String) ex.get(BenchmarkProtocol.EXTRA_DELEGATES));
    // the CPU accelerator on real arm64 kernels where $FAKE_ARM_PYTHON is an arm64 Python
    // (scripts/arm_phone.sh: Debian's arm64 Python under qemu-user, aarch64 LiteRT)
    String arm = env("FAKE_ARM_PYTHON", "");
    boolean onArm = requested == Delegate.CPU && !arm.isEmpty();
    String python = onArm ? arm : args[2];
    List<?> mine = (List<?>) faults.getOrDefault(requested.name().toLowerCase(), new ArrayList<>());
    PreprocessingSpec spec = PreprocessingSpec.fromJson(read(local(root, ex, "preprocessing")));
    String model = local(root, ex, BenchmarkProtocol.EXTRA_MODEL).getPath();
    boolean swap = mine.contains("swap");
    EvaluationLoop.Decoder decoder = bytes -> {
      BufferedImage im = ImageIO.read(new ByteArrayInputStream(bytes));
      if (im == null) {
        throw new IOException("not an image ImageIO can decode");
      }
      int w = im.getWidth();
      int h = im.getHeight();
      int[] argb;
      if (im.getRaster().getNumBands() == 1) {
        // a grey file as Android's BitmapFactory gives it (v, v, v): ImageIO's getRGB would
        // treat the grey as linear and gamma-encode it
        int[] v = im.getRaster().getPixels(0, 0, w, h, (int[]) null);
        argb = new int[v.length];
        for (int k = 0; k < v.length; k++) {
          argb[k] = 0xff000000 | v[k] << 16 | v[k] << 8 | v[k];
        }
      } else {
        argb = im.getRGB(0, 0, w, h, null, 0, w);
      }
      if (swap) {  // the fault: this accelerator's input path has red and blue swapped
        for (int k = 0; k < argb.length; k++) {
          int p = argb[k];
          argb[k] = (p & 0xff00ff00) | ((p >> 16) & 0xff) | ((p & 0xff) << 16);
        }
      }
      return new EvaluationLoop.Decoded(argb, w, h);
    };
    Classifier.Factory factory = (d, threads) -> {
      if (mine.contains("unavailable")) {
        throw new IllegalStateException(d + " is not available to LiteRT on this device");
      }
      return new Piped(python, model, d, mine.contains("float16"), mine.contains("silent_cpu"),
          root);
    };
    Map<String, Object> device = new LinkedHashMap<>();
    device.put("kind", "android");
    device.put("name", "stand-in phone");
    device.put("manufacturer", "inception-edge tests");
    device.put("sdk", "35");
    device.put("abi", onArm ? "arm64-v8a (qemu-aarch64, ai-edge-litert 1.4.0)" : "host (x86_64)");
    device.put("soc", null);
    Map<String, Object> common = new LinkedHashMap<>();
    common.put("run_id", ex.get(BenchmarkProtocol.EXTRA_RUN_ID));
    common.put("created", "2026-12-06T00:00:00Z");
    Map<String, Object> pushed = Json.parseObject(read(local(root, ex, "header")));
    int threads = Integer.parseInt(String.valueOf(ex.getOrDefault("threads", "1")));
    BenchmarkRecord rec = AccuracyRun.run(factory, requested, threads, new Preprocessor(spec),
        local(root, ex, BenchmarkProtocol.EXTRA_EVAL_DIR), decoder, pushed,
        onArm ? "stand-in phone (arm64 LiteRT 1.4.0 under qemu)" : "stand-in phone (host LiteRT)",
        device, local(root, ex, "predictions"), common,
        () -> null);
    File out = local(root, ex, BenchmarkProtocol.EXTRA_OUTPUT);
    out.getParentFile().mkdirs();
    Files.write(out.toPath(), ("[" + rec.toJson() + "]").getBytes(StandardCharsets.UTF_8));
    new File(out.getPath() + BenchmarkProtocol.DONE_SUFFIX).createNewFile();
  }

  static String env(String k, String dflt) {
    String v = System.getenv(k);
    return v == null || v.isEmpty() ? dflt : v;
  }

  static File local(File root, Map<String, Object> ex, String key) {
    String p = (String) ex.get(key);
    return new File(root, p.startsWith("/") ? p.substring(1) : p);
  }

  static String read(File f) throws IOException {
    return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
  }

  /** Inference in the host's LiteRT, over a pipe: float32 input in, scores out. */
  static final class Piped implements Classifier {
    private final Process proc;
    private final DataOutputStream to;
    private final DataInputStream from;
    private final Delegate delegate;
    private final boolean silentCpu;

    Piped(String python, String model, Delegate d, boolean float16, boolean silentCpu, File root)
        throws IOException {
      File repo = new File(System.getenv("FAKE_REPO"));
      ProcessBuilder pb = new ProcessBuilder(python, "-m", "tests.standin_runtime", model,
          float16 ? "float16" : "float32");
      pb.directory(repo);
      pb.environment().put("PYTHONPATH", repo.getPath());
      pb.redirectError(ProcessBuilder.Redirect.INHERIT);
      proc = pb.start();
      to = new DataOutputStream(new java.io.BufferedOutputStream(proc.getOutputStream()));
      from = new DataInputStream(new java.io.BufferedInputStream(proc.getInputStream()));
      delegate = d;
      this.silentCpu = silentCpu;
    }

    @Override
    public float[] classify(float[] input) {
      try {
        to.writeInt(input.length);
        for (float v : input) {
          to.writeFloat(v);
        }
        to.flush();
        int n = from.readInt();
        float[] p = new float[n];
        for (int k = 0; k < n; k++) {
          p[k] = from.readFloat();
        }
        return p;
      } catch (IOException e) {
        throw new IllegalStateException("the stand-in runtime died: " + e, e);
      }
    }

    @Override
    public Delegate delegate() {
      return delegate;
    }

    @Override
    public Boolean fullyAccelerated() {
      return delegate == Delegate.CPU || !silentCpu;
    }

    @Override
    public String fallbackReason() {
      return Boolean.FALSE.equals(fullyAccelerated())
          ? DelegatePolicy.notFullyAccelerated(delegate) : null;
    }

    @Override
    public void close() {
      try {
        to.close();
        proc.waitFor();
      } catch (IOException | InterruptedException e) {
        proc.destroy();
      }
    }
  }
}
