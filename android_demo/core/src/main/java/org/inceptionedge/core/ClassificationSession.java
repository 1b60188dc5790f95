package org.inceptionedge.core;

import java.util.List;

/**
 * The app's classification loop, off the UI and tested on the JVM: (re)build the classifier for a
 * delegate and thread count, then per image preprocess -> classify -> top-k, each step timed in
 * microseconds, and hand the result (or the error, as one message) to a listener. Nothing a model
 * or an image can do escapes as an exception: a model with unsupported ops, labels that do not
 * match the outputs, an image too large, a delegate whose native library is missing - each
 * becomes {@link Listener#onError} and the session stays usable. The app calls it from one worker
 * thread; its methods are synchronized all the same.
 */
public final class ClassificationSession implements AutoCloseable {
  /** What the session reports (the app posts these to the UI thread). */
  public interface Listener {
    /** The classifier now running (after any fallback: never silent). */
    void onReady(Delegate requested, Classifier running);

    void onResult(Result result);

    void onError(String message);
  }

  /** One classification: top-k and where the time went. */
  public static final class Result {
    public final List<TopK.Entry> top;
    public final long preprocessUs;
    public final long inferenceUs;
    public final long topKUs;
    public final Delegate delegate;

    Result(List<TopK.Entry> top, long preprocessUs, long inferenceUs, long topKUs,
        Delegate delegate) {
      this.top = top;
      this.preprocessUs = preprocessUs;
      this.inferenceUs = inferenceUs;
      this.topKUs = topKUs;
      this.delegate = delegate;
    }
  }

  private final Classifier.Factory factory;
  private final Preprocessor pre;
  private final List<String> labels;
  private final int k;
  private final BenchmarkRunner.Clock clock;
  private final Listener listener;
  private Classifier classifier;

  public ClassificationSession(Classifier.Factory factory, PreprocessingSpec spec,
      List<String> labels, int k, BenchmarkRunner.Clock clock, Listener listener) {
    this.factory = factory;
    this.pre = new Preprocessor(spec);
    this.labels = labels;
    this.k = k;
    this.clock = clock;
    this.listener = listener;
  }

  /** Closes the running classifier and builds one for {@code delegate}; false if that failed. */
  public synchronized boolean configure(Delegate delegate, int threads) {
    closeClassifier();
    try {
      classifier = factory.create(delegate, threads);
    } catch (Exception | LinkageError e) {
      listener.onError("cannot run the model on " + delegate + ": " + message(e));
      return false;
    }
    listener.onReady(delegate, classifier);
    return true;
  }

  /** Classifies ARGB pixels; the result or the error goes to the listener. */
  public synchronized Result classify(int[] argb, int width, int height) {
    if (classifier == null) {
      listener.onError("no model is running (see the message above)");
      return null;
    }
    try {
      long t0 = clock.nanos();
      float[] x = pre.toFloat(argb, width, height);
      long t1 = clock.nanos();
      float[] p = classifier.classify(x);
      long t2 = clock.nanos();
      List<TopK.Entry> top = TopK.of(p, labels, k);
      long t3 = clock.nanos();
      Result r = new Result(top, (t1 - t0) / 1000, (t2 - t1) / 1000, (t3 - t2) / 1000,
          classifier.delegate());
      listener.onResult(r);
      return r;
    } catch (Exception | LinkageError e) {
      listener.onError("classification failed: " + message(e));
      return null;
    }
  }

  private void closeClassifier() {
    if (classifier != null) {
      try {
        classifier.close();
      } catch (RuntimeException e) {
        listener.onError("closing the previous model: " + message(e));
      }
      classifier = null;
    }
  }

  @Override
  public synchronized void close() {
    closeClassifier();
  }

  static String message(Throwable e) {
    String m = e.getMessage();
    return e.getClass().getSimpleName() + (m == null || m.isEmpty() ? "" : ": " + m);
  }
}
