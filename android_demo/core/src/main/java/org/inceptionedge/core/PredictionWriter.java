package org.inceptionedge.core;

import java.io.Closeable;
import java.io.IOException;
import java.io.Writer;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-image predictions in the format of contract/predictions.py (schema:
 * contract/schema/predictions.json): a JSON-lines file whose first line is the header and each
 * further line one image: {"i", "id", "y", "k", "s"}. The app writes one per (model,
 * accelerator); edge_eval pairs it with the host's float reference on the image ids, which are
 * sha256 of the image file's bytes, as the host computes them for the same pushed files.
 * Rows are written as they come (one image at a time: memory stays flat).
 */
public final class PredictionWriter implements Closeable {
  public static final String KIND = "predictions";
  public static final int VERSION = 1;
  public static final int TOP_K = 5;
  public static final int ID_CHARS = 20;

  private final Writer out;
  private final int classes;
  private final int topK;
  private int rows;

  public PredictionWriter(Writer out, Map<String, Object> header) throws IOException {
    this.out = out;
    this.classes = ((Number) header.get("classes")).intValue();
    this.topK = ((Number) header.get("top_k")).intValue();
    out.write(Json.write(header));
    out.write('\n');
  }

  /** The image's identity: the first ID_CHARS hex digits of sha256 of its encoded bytes. */
  public static String imageId(byte[] encoded) {
    try {
      byte[] h = MessageDigest.getInstance("SHA-256").digest(encoded);
      StringBuilder b = new StringBuilder();
      for (byte x : h) {
        b.append(String.format("%02x", x & 0xff));
      }
      return b.substring(0, ID_CHARS);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * The header, keys as Python writes them. {@code requested}: the accelerator asked for (cpu,
   * gpu, npu, nnapi); {@code used} and {@code fullyAccelerated}: what the runtime reported
   * (null: unknown); {@code fallbackReason}: its words when not fully accelerated.
   */
  public static Map<String, Object> header(String artifact, String sha256, String recipe,
      String runtime, String requested, String used, Boolean fullyAccelerated,
      String fallbackReason, Map<String, Object> device, int classes, int images, String split,
      String source, String note, String created) {
    Map<String, Object> acc = new LinkedHashMap<>();
    acc.put("requested", requested);
    acc.put("used", used);
    acc.put("fully_accelerated", fullyAccelerated);
    acc.put("fallback_reason", fallbackReason);
    Map<String, Object> set = new LinkedHashMap<>();
    set.put("split", split);
    set.put("images", (long) images);
    set.put("source", source);
    set.put("note", note);
    Map<String, Object> h = new LinkedHashMap<>();
    h.put("kind", KIND);
    h.put("version", (long) VERSION);
    h.put("artifact", artifact);
    h.put("sha256", sha256);
    h.put("recipe", recipe);
    h.put("runtime", runtime);
    h.put("accelerator", acc);
    h.put("device", device == null ? new LinkedHashMap<String, Object>() : device);
    h.put("classes", (long) classes);
    h.put("top_k", (long) TOP_K);
    h.put("set", set);
    h.put("created", created);
    return h;
  }

  /** One image: its index in the set, identity, label and the model's scores (all classes). */
  public void write(int index, String id, int label, float[] scores) throws IOException {
    if (scores.length != classes) {
      throw new IllegalArgumentException("the model gave " + scores.length + " scores; the "
          + "header says " + classes + " classes");
    }
    List<TopK.Entry> top = TopK.of(scores, null, topK);  // ties: the lower index, as Python
    StringBuilder b = new StringBuilder();
    b.append("{\"i\": ").append(index).append(", \"id\": ").append(Json.write(id))
        .append(", \"y\": ").append(label).append(", \"k\": [");
    for (int j = 0; j < top.size(); j++) {
      b.append(j == 0 ? "" : ", ").append(top.get(j).index);
    }
    b.append("], \"s\": [");
    for (int j = 0; j < top.size(); j++) {
      b.append(j == 0 ? "" : ", ").append(decimal(top.get(j).score));
    }
    b.append("]}\n");
    out.write(b.toString());
    rows++;
  }

  /** A score to 6 decimals, as Python's round(v, 6) writes it (no trailing zeros). */
  static String decimal(float v) {
    BigDecimal d = new BigDecimal(Float.toString(v)).setScale(6, RoundingMode.HALF_EVEN)
        .stripTrailingZeros();
    String s = d.toPlainString();
    return s.contains(".") || s.contains("E") ? s : s + ".0";
  }

  public int rows() {
    return rows;
  }

  @Override
  public void close() throws IOException {
    out.close();
  }

  /** The rows of a predictions file's text (for tests and the app's own checks). */
  public static List<Map<String, Object>> readRows(String text) {
    List<Map<String, Object>> rows = new ArrayList<>();
    for (String line : text.split("\n")) {
      if (!line.trim().isEmpty()) {
        rows.add(Json.parseObject(line));
      }
    }
    return rows;
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
