package org.inceptionedge.core;

import java.util.concurrent.atomic.AtomicReference;

/**
 * One benchmark at a time: a second start while one runs is refused (timing two runs that share
 * the CPU and GPU measures neither), with the running one's id in the message.
 */
public final class SingleRun {
  private final AtomicReference<String> running = new AtomicReference<>();

  /** null when the run may start, else why not. */
  public String tryStart(String runId) {
    String id = runId == null ? "(no run_id)" : runId;
    if (running.compareAndSet(null, id)) {
      return null;
    }
    return "another benchmark is running (run_id " + running.get()
        + "): wait for its .done marker, then start again";
  }

  /**
   * Whether the run with this id is the one running: the same intent delivered again (the
   * activity recreated on rotation or a dark-mode switch) is that run, not a second one.
   */
  public boolean isRunning(String runId) {
    return runId != null && runId.equals(running.get());
  }

  public void finish() {
    running.set(null);
  }
}
