package org.inceptionedge.core;

import java.util.ArrayList;
import java.util.List;

/** labels.txt as convert/ writes it: one class name per line, in output order. */
public final class Labels {
  private Labels() {}

  public static List<String> parse(String text) {
    List<String> out = new ArrayList<>();
    for (String line : text.split("\r?\n", -1)) {
      String t = line.trim();
      if (!t.isEmpty()) {
        out.add(t);
      }
    }
    if (out.isEmpty()) {
      throw new IllegalArgumentException("labels.txt is empty");
    }
    return out;
  }
}
