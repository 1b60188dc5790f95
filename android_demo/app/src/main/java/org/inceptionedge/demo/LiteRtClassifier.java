package org.inceptionedge.demo;

import android.util.Log;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import org.inceptionedge.core.Classifier;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.DelegatePolicy;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.TopK;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;
import org.tensorflow.lite.nnapi.NnApiDelegate;

/** The core's Classifier with LiteRT: float or int8/uint8 input, any delegate, loud fallback. */
public final class LiteRtClassifier implements Classifier {
  private static final String TAG = "InceptionEdge";

  private final Interpreter interpreter;
  private final AutoCloseable delegateHandle;
  private final DelegatePolicy.Decision decision;
  private final DataType inType;
  private final DataType outType;
  private final float inScale;
  private final int inZero;
  private final float outScale;
  private final int outZero;
  private final ByteBuffer inBuf;
  private final ByteBuffer outBuf;
  private final int classes;

  /**
   * Builds for the requested delegate; falls back to CPU with the reason when it cannot: the
   * GPU's compatibility list says no (asked only for a GPU request), or building the interpreter
   * with the delegate throws - an exception, or a LinkageError when a delegate's native library
   * is missing for this ABI.
   */
  public static LiteRtClassifier create(MappedByteBuffer model, Delegate requested, int threads,
      int apiLevel) {
    boolean gpuOk = false;
    if (DelegatePolicy.needsGpuCheck(requested)) {
      try (CompatibilityList compat = new CompatibilityList()) {
        gpuOk = compat.isDelegateSupportedOnThisDevice();
      } catch (RuntimeException | LinkageError e) {
        Log.w(TAG, "GPU compatibility check failed: " + e);
      }
    }
    DelegatePolicy.Decision d = DelegatePolicy.choose(requested,
        new DelegatePolicy.DeviceSupport(gpuOk, apiLevel));
    try {
      return new LiteRtClassifier(model, d, threads);
    } catch (RuntimeException | LinkageError e) {
      DelegatePolicy.Decision fb = DelegatePolicy.afterFailure(d.chosen, e);
      Log.w(TAG, "delegate fallback: " + fb);
      return new LiteRtClassifier(model, fb, threads);
    }
  }

  private LiteRtClassifier(MappedByteBuffer model, DelegatePolicy.Decision d, int threads) {
    if (d.fellBack()) {
      Log.w(TAG, "delegate fallback: " + d);
    }
    Interpreter.Options opts = new Interpreter.Options().setNumThreads(threads);
    AutoCloseable handle = null;
    switch (d.chosen) {
      case GPU:
        GpuDelegate g;
        try (CompatibilityList compat = new CompatibilityList()) {
          g = new GpuDelegate(compat.getBestOptionsForThisDevice());
        }
        opts.addDelegate(g);
        handle = g;
        break;
      case NNAPI:
        NnApiDelegate n = new NnApiDelegate();
        opts.addDelegate(n);
        handle = n;
        break;
      default:
        opts.setUseXNNPACK(true);
    }
    try {
      this.interpreter = new Interpreter(model, opts);
    } catch (RuntimeException | LinkageError e) {
      closeQuietly(handle);  // a delegate whose interpreter failed to build is not leaked
      throw e;
    }
    this.delegateHandle = handle;
    this.decision = d;
    Tensor in = interpreter.getInputTensor(0);
    Tensor out = interpreter.getOutputTensor(0);
    inType = in.dataType();
    outType = out.dataType();
    inScale = in.quantizationParams().getScale();
    inZero = in.quantizationParams().getZeroPoint();
    outScale = out.quantizationParams().getScale();
    outZero = out.quantizationParams().getZeroPoint();
    inBuf = ByteBuffer.allocateDirect(in.numBytes()).order(ByteOrder.nativeOrder());
    outBuf = ByteBuffer.allocateDirect(out.numBytes()).order(ByteOrder.nativeOrder());
    int[] shape = out.shape();
    classes = shape[shape.length - 1];
  }

  @Override
  public float[] classify(float[] input) {
    inBuf.rewind();
    if (inType == DataType.FLOAT32) {
      inBuf.asFloatBuffer().put(input);
    } else {
      inBuf.put(Preprocessor.quantize(input, inScale, inZero, inType == DataType.INT8));
    }
    inBuf.rewind();
    outBuf.rewind();
    interpreter.run(inBuf, outBuf);
    outBuf.rewind();
    if (outType == DataType.FLOAT32) {
      float[] p = new float[classes];
      outBuf.asFloatBuffer().get(p);
      return p;
    }
    byte[] q = new byte[classes];
    outBuf.get(q);
    return TopK.dequantize(q, outScale, outZero, outType == DataType.INT8);
  }

  @Override
  public Delegate delegate() {
    return decision.chosen;
  }

  @Override
  public String fallbackReason() {
    return decision.fallbackReason;
  }

  @Override
  public String note() {
    return decision.note;
  }

  @Override
  public void close() {
    interpreter.close();
    closeQuietly(delegateHandle);
  }

  private static void closeQuietly(AutoCloseable handle) {
    if (handle != null) {
      try {
        handle.close();
      } catch (Exception e) {
        Log.w(TAG, "closing the delegate: " + e);
      }
    }
  }
}
