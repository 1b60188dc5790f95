package org.inceptionedge.core;

/**
 * What the app implements with LiteRT (app/.../CompiledModelClassifier.java); the core's benchmark and
 * accuracy logic run against this interface, so they are tested on the JVM with a stand-in.
 */
public interface Classifier extends AutoCloseable {
  /** One inference on a preprocessed float input [h][w][3] flattened; returns probabilities. */
  float[] classify(float[] input);

  /** The delegate that actually runs (after any fallback). */
  Delegate delegate();

  /** Why the requested delegate is not the one running, or null. */
  String fallbackReason();

  /**
   * Whether the delegate runs the whole model (LiteRT 2.x's CompiledModel.isFullyAccelerated),
   * or null when the runtime cannot say.
   */
  default Boolean fullyAccelerated() {
    return null;
  }

  /** Something the user should know that is not a fallback (NNAPI's deprecation), or null. */
  default String note() {
    return null;
  }

  @Override
  void close();

  /** Builds a classifier for a delegate and thread count (the app: LiteRT Interpreter). */
  interface Factory {
    Classifier create(Delegate requested, int threads) throws Exception;
  }
}
