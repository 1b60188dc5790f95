package org.inceptionedge.core;

import java.util.Map;

/**
 * The model the app was given: the pointer file {@code model.json} that {@code python -m edge_eval
 * app-assets} writes next to the model, its labels.txt and preprocessing.json in the app's
 * assets/{@value #DIR}/ (contract/schema/android_app.json "assets"). The app loads the model this
 * names, never "the first .tflite".
 */
public final class AppModel {
  public static final String DIR = "model";
  public static final String POINTER = "model.json";
  public static final int SCHEMA_VERSION = 1;

  public final String model;
  public final String labels;
  public final String preprocessing;
  public final String sha256;
  public final String recipe;

  private AppModel(String model, String labels, String preprocessing, String sha256,
      String recipe) {
    this.model = model;
    this.labels = labels;
    this.preprocessing = preprocessing;
    this.sha256 = sha256;
    this.recipe = recipe;
  }

  /** Parses and checks model.json: every name a plain file name inside assets/model/. */
  public static AppModel parse(String text) {
    Map<String, Object> m;
    try {
      m = Json.parseObject(text);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(POINTER + " is not a JSON object (" + e.getMessage()
          + "): copy the model again (./gradlew copyModel)");
    }
    Object v = m.get("schema_version");
    if (!(v instanceof Number) || ((Number) v).intValue() != SCHEMA_VERSION) {
      throw new IllegalArgumentException(POINTER + " has schema_version " + v + ", this app reads "
          + SCHEMA_VERSION + ": copy the model again with this checkout's edge_eval");
    }
    String model = fileName(m, "model");
    if (!model.endsWith(".tflite")) {
      throw new IllegalArgumentException(POINTER + " names " + model + ", not a .tflite model");
    }
    return new AppModel(model, fileName(m, "labels"), fileName(m, "preprocessing"),
        m.get("sha256") instanceof String ? (String) m.get("sha256") : null,
        m.get("recipe") instanceof String ? (String) m.get("recipe") : null);
  }

  /** The asset path of one of the named files. */
  public static String asset(String name) {
    return DIR + "/" + name;
  }

  static String fileName(Map<String, Object> m, String key) {
    Object v = m.get(key);
    if (!(v instanceof String) || !isPlainName((String) v)) {
      throw new IllegalArgumentException(POINTER + ": '" + key + "' must be a file name inside "
          + DIR + "/, is " + (v == null ? "missing" : Json.write(v)));
    }
    return (String) v;
  }

  /** A name without separators, not "." or "..", no NUL, at most 255 characters. */
  public static boolean isPlainName(String s) {
    return !s.isEmpty() && s.length() <= 255 && !s.equals(".") && !s.equals("..")
        && s.indexOf('/') < 0 && s.indexOf('\\') < 0 && s.indexOf('\0') < 0;
  }
}
