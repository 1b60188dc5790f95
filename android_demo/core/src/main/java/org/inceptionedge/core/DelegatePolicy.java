package org.inceptionedge.core;

/**
 * Which delegate actually runs, given the request and what the device supports. A fallback is
 * never silent: the decision carries the reason, which the app shows on screen and logs.
 */
public final class DelegatePolicy {
  /** What the device offers (the app fills it from CompatibilityList and the API level). */
  public static final class DeviceSupport {
    public final boolean gpuSupported;
    public final int apiLevel;

    public DeviceSupport(boolean gpuSupported, int apiLevel) {
      this.gpuSupported = gpuSupported;
      this.apiLevel = apiLevel;
    }
  }

  public static final class Decision {
    public final Delegate requested;
    public final Delegate chosen;
    public final String fallbackReason; // null when chosen == requested
    public final String note; // something to tell the user that is not a fallback, or null

    Decision(Delegate requested, Delegate chosen, String fallbackReason) {
      this(requested, chosen, fallbackReason, null);
    }

    Decision(Delegate requested, Delegate chosen, String fallbackReason, String note) {
      this.requested = requested;
      this.chosen = chosen;
      this.fallbackReason = fallbackReason;
      this.note = note;
    }

    public boolean fellBack() {
      return chosen != requested;
    }

    @Override
    public String toString() {
      return fellBack() ? requested + " -> " + chosen + " (" + fallbackReason + ")"
          : chosen.toString();
    }
  }

  /** NNAPI delegate needs Android 8.1 (API 27); it is deprecated from Android 15 but still runs. */
  public static final int NNAPI_MIN_API = 27;
  /** Android 15: NNAPI is deprecated (vendor drivers are no longer required to be maintained). */
  public static final int NNAPI_DEPRECATED_API = 35;
  public static final String NNAPI_DEPRECATED = "NNAPI is deprecated from Android 15 (API 35): "
      + "prefer GPU or CPU (XNNPACK); NNAPI stays an option for the devices that still need it";

  private DelegatePolicy() {}

  /** The decision before the interpreter is built. */
  public static Decision choose(Delegate requested, DeviceSupport device) {
    if (requested == Delegate.GPU && !device.gpuSupported) {
      return new Decision(requested, Delegate.CPU,
          "the GPU delegate does not support this device's GPU (CompatibilityList)");
    }
    if (requested == Delegate.NNAPI && device.apiLevel < NNAPI_MIN_API) {
      return new Decision(requested, Delegate.CPU,
          "NNAPI needs Android API " + NNAPI_MIN_API + "+, this device has API "
              + device.apiLevel);
    }
    if (requested == Delegate.NNAPI && device.apiLevel >= NNAPI_DEPRECATED_API) {
      return new Decision(requested, requested, null, NNAPI_DEPRECATED);
    }
    return new Decision(requested, requested, null);
  }

  /**
   * The fallback reason a run records when LiteRT says the model is not fully accelerated on
   * the accelerator asked for (CompiledModel.isFullyAccelerated() false).
   */
  public static String notFullyAccelerated(Delegate requested) {
    return "LiteRT says the model is not fully accelerated on " + requested
        + ": the ops it cannot take run on the CPU";
  }

  /** Whether the GPU's compatibility list needs to be asked at all (only for a GPU request). */
  public static boolean needsGpuCheck(Delegate requested) {
    return requested == Delegate.GPU;
  }

  /**
   * The decision when building the interpreter with the delegate failed: any Exception, or a
   * LinkageError (a delegate's native library missing for this ABI: UnsatisfiedLinkError).
   */
  public static Decision afterFailure(Delegate requested, Throwable error) {
    if (requested == Delegate.CPU) {
      throw new IllegalStateException("the CPU interpreter itself failed: " + error, error);
    }
    if (!(error instanceof Exception) && !(error instanceof LinkageError)) {
      throw new IllegalStateException(requested + " failed: " + error, error);
    }
    return new Decision(requested, Delegate.CPU,
        requested + " delegate failed to initialise: " + error);
  }
}
