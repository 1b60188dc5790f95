package org.inceptionedge.demo;

import android.content.Context;
import android.util.Log;
import com.google.ai.edge.litert.Accelerator;
import com.google.ai.edge.litert.CompiledModel;
import com.google.ai.edge.litert.Environment;
import com.google.ai.edge.litert.TensorBuffer;
import java.lang.reflect.Method;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.inceptionedge.core.Classifier;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.DelegatePolicy;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.TopK;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/**
 * The core's Classifier on LiteRT 2.x's CompiledModel, one accelerator per instance: CPU, GPU
 * (the litert-gpu artifact) or NPU (a vendor dispatch library packaged with the APK). The
 * accelerator is asked for alone - LiteRT 2.3 asked for "GPU, CPU" runs on the CPU while it
 * reports the GPU - so a missing accelerator is an exception with the runtime's words, and a
 * model the accelerator takes only in part says so through {@link #fullyAccelerated()}.
 *
 * <p>NNAPI: LiteRT 2.x's Interpreter runs on the CPU only, and NNAPI is deprecated from Android
 * 15; asking for it is an error naming both (use NPU).
 */
public final class CompiledModelClassifier implements Classifier {
  private static final String TAG = "InceptionEdge";

  private final Environment env;
  private final CompiledModel compiled;
  private final List<TensorBuffer> inputs;
  private final List<TensorBuffer> outputs;
  private final Delegate delegate;
  private final Boolean fully;
  private final String reason;
  private final Io io;

  /** The model's input and output types and quantization (LiteRT's CPU Interpreter reads them). */
  static final class Io {
    final boolean inFloat;
    final boolean inSigned;
    final float inScale;
    final int inZero;
    final boolean outFloat;
    final boolean outSigned;
    final float outScale;
    final int outZero;

    Io(ModelFiles files) {
      Interpreter it = new Interpreter(files.model, new Interpreter.Options().setNumThreads(1));
      try {
        Tensor in = it.getInputTensor(0);
        Tensor out = it.getOutputTensor(0);
        inFloat = in.dataType() == DataType.FLOAT32;
        inSigned = in.dataType() == DataType.INT8;
        inScale = in.quantizationParams().getScale();
        inZero = in.quantizationParams().getZeroPoint();
        outFloat = out.dataType() == DataType.FLOAT32;
        outSigned = out.dataType() == DataType.INT8;
        outScale = out.quantizationParams().getScale();
        outZero = out.quantizationParams().getZeroPoint();
      } finally {
        it.close();
      }
    }
  }

  /**
   * Strictly the requested accelerator: an exception when LiteRT cannot give it (the benchmark
   * and accuracy modes record it as a failed row).
   */
  public static CompiledModelClassifier strict(Context ctx, ModelFiles files, Delegate requested,
      int threads) throws Exception {
    return new CompiledModelClassifier(ctx, files, requested, threads);
  }

  /**
   * For the camera screen: the requested accelerator, or else the CPU with the reason on
   * screen (never silent).
   */
  public static Classifier orCpu(Context ctx, ModelFiles files, Delegate requested, int threads)
      throws Exception {
    try {
      return strict(ctx, files, requested, threads);
    } catch (Exception | LinkageError e) {
      if (requested == Delegate.CPU) {
        throw e instanceof Exception ? (Exception) e : new IllegalStateException(e);
      }
      DelegatePolicy.Decision d = DelegatePolicy.afterFailure(requested, e);
      Log.w(TAG, "accelerator fallback: " + d);
      CompiledModelClassifier cpu = strict(ctx, files, Delegate.CPU, threads);
      return new FellBack(cpu, d.fallbackReason);
    }
  }

  private CompiledModelClassifier(Context ctx, ModelFiles files, Delegate requested, int threads)
      throws Exception {
    Accelerator acc = accelerator(requested);
    io = new Io(files);
    // NPU: the vendor's dispatch library is looked for among the APK's native libraries
    Map<Environment.Option, String> opts = requested == Delegate.NPU
        ? Collections.singletonMap(Environment.Option.DispatchLibraryDir,
            ctx.getApplicationInfo().nativeLibraryDir)
        : Collections.<Environment.Option, String>emptyMap();
    env = Environment.create(opts);
    try {
      Set<Accelerator> available = env.getAvailableAccelerators();
      if (!available.contains(acc)) {
        throw new IllegalStateException(requested + " is not available to LiteRT on this "
            + "device (it offers " + available + "): " + missingHint(requested));
      }
      CompiledModel.Options o = new CompiledModel.Options(acc);
      o.setCpuOptions(new CompiledModel.CpuOptions(threads, null, null));
      compiled = files.assetName != null
          ? CompiledModel.create(ctx.getAssets(), files.assetName, o, env)
          : CompiledModel.create(files.path, o, env);
      inputs = compiled.createInputBuffers();
      outputs = compiled.createOutputBuffers();
    } catch (Exception | LinkageError e) {
      env.close();
      throw e;
    }
    delegate = requested;
    fully = requested == Delegate.CPU ? Boolean.TRUE : fullyAccelerated(compiled);
    reason = Boolean.FALSE.equals(fully) ? DelegatePolicy.notFullyAccelerated(requested) : null;
  }

  static Accelerator accelerator(Delegate d) {
    switch (d) {
      case CPU:
        return Accelerator.CPU;
      case GPU:
        return Accelerator.GPU;
      case NPU:
        return Accelerator.NPU;
      default:
        throw new UnsupportedOperationException("NNAPI: LiteRT 2.x's Interpreter runs on the "
            + "CPU only, and NNAPI is deprecated from Android 15 (API 35); ask for NPU (LiteRT's "
            + "vendor NPU runtimes) or GPU");
    }
  }

  static String missingHint(Delegate d) {
    return d == Delegate.GPU
        ? "the APK needs com.google.ai.edge.litert:litert-gpu, and the device an OpenCL driver "
            + "(libOpenCL.so, declared by litert-api)"
        : d == Delegate.NPU
            ? "no NPU dispatch library for this SoC is packaged (Qualcomm, MediaTek and Google "
                + "Tensor runtimes ship separately: LiteRT's NPU guide)"
            : "the CPU accelerator is always built in";
  }

  /**
   * LiteRT's own verdict, where this LiteRT version has it (CompiledModel.isFullyAccelerated in
   * the C, C++ and Swift APIs; looked up by name so an AAR without it says "unknown").
   */
  static Boolean fullyAccelerated(CompiledModel m) {
    try {
      Method f = m.getClass().getMethod("isFullyAccelerated");
      Object v = f.invoke(m);
      return v instanceof Boolean ? (Boolean) v : null;
    } catch (ReflectiveOperationException | RuntimeException e) {
      return null;
    }
  }

  @Override
  public float[] classify(float[] input) {
    try {
      TensorBuffer in = inputs.get(0);
      if (io.inFloat) {
        in.writeFloat(input);
      } else {  // uint8 and int8 bytes alike: the buffer takes the raw bytes
        in.writeInt8(Preprocessor.quantize(input, io.inScale, io.inZero, io.inSigned));
      }
      compiled.run(inputs, outputs);
      TensorBuffer out = outputs.get(0);
      return io.outFloat ? out.readFloat()
          : TopK.dequantize(out.readInt8(), io.outScale, io.outZero, io.outSigned);
    } catch (Exception e) {
      throw new IllegalStateException(delegate + " inference failed: " + e, e);
    }
  }

  @Override
  public Delegate delegate() {
    return delegate;
  }

  @Override
  public String fallbackReason() {
    return reason;
  }

  @Override
  public Boolean fullyAccelerated() {
    return fully;
  }

  @Override
  public void close() {
    for (TensorBuffer b : inputs) {
      b.close();
    }
    for (TensorBuffer b : outputs) {
      b.close();
    }
    compiled.close();
    env.close();
  }

  /** The CPU classifier the camera screen fell back to, with the reason it did. */
  static final class FellBack implements Classifier {
    private final Classifier cpu;
    private final String reason;

    FellBack(Classifier cpu, String reason) {
      this.cpu = cpu;
      this.reason = reason;
    }

    @Override
    public float[] classify(float[] input) {
      return cpu.classify(input);
    }

    @Override
    public Delegate delegate() {
      return Delegate.CPU;
    }

    @Override
    public String fallbackReason() {
      return reason;
    }

    @Override
    public void close() {
      cpu.close();
    }
  }
}
