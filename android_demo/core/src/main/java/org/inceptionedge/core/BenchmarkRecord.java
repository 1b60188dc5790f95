package org.inceptionedge.core;

import java.util.LinkedHashMap;
import java.util.Map;

/** One result record with every key of contract/schema/record.json. */
public final class BenchmarkRecord {
  public static final int SCHEMA_VERSION = 1;
  public static final String[] REQUIRED = {"schema_version", "kind", "status", "error",
      "artifact", "recipe", "target", "sha256", "runtime", "delegate", "device", "threads",
      "batch_size", "warmup_runs", "runs", "duration_s", "latency_ms", "init_ms",
      "first_inference_ms", "peak_memory_mb", "preprocess_ms", "accuracy", "tools", "git",
      "created"};

  private final Map<String, Object> fields = new LinkedHashMap<>();

  public BenchmarkRecord(String kind) {
    for (String k : REQUIRED) {
      fields.put(k, null);
    }
    fields.put("schema_version", SCHEMA_VERSION);
    fields.put("kind", kind);
    fields.put("status", "ok");
    fields.put("runtime", "android-app");
    fields.put("target", "tflite");
  }

  public BenchmarkRecord put(String key, Object value) {
    fields.put(key, value);
    return this;
  }

  public Object get(String key) {
    return fields.get(key);
  }

  public BenchmarkRecord fail(String status, String error) {
    fields.put("status", status);
    fields.put("error", error);
    return this;
  }

  public Map<String, Object> asMap() {
    return fields;
  }

  public String toJson() {
    return Json.write(fields);
  }
}
