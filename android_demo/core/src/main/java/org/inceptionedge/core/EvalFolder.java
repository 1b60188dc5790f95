package org.inceptionedge.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The images edge_eval pushed for on-device accuracy: a folder with {@link
 * BenchmarkProtocol#IMAGES_FILE} ("file,label,index" per line) and the files it names. Only the
 * names, labels and indices are held; each image's bytes are read when the loop reaches it, so
 * memory stays flat in the number of images. Every name must be a plain file name in the
 * folder; a malformed line is an error naming it, not a skipped image.
 */
public final class EvalFolder implements EvaluationLoop.Images {
  private final File dir;
  private final List<String> names = new ArrayList<>();
  private final List<Integer> labels = new ArrayList<>();
  private final List<Integer> indices = new ArrayList<>();

  private EvalFolder(File dir) {
    this.dir = dir;
  }

  public static EvalFolder open(File dir) throws IOException {
    File list = new File(dir, BenchmarkProtocol.IMAGES_FILE);
    if (!list.isFile()) {
      throw new IOException(list + " is missing: edge_eval pushes it with the images");
    }
    EvalFolder f = new EvalFolder(dir);
    Set<Integer> seen = new HashSet<>();
    int n = 0;
    for (String line : new String(Files.readAllBytes(list.toPath()), StandardCharsets.UTF_8)
        .split("\n", -1)) {
      n++;
      String s = line.trim();
      if (s.isEmpty()) {
        continue;
      }
      String[] p = s.split(",", -1);
      String bad = p.length != 3 ? "needs file,label,index"
          : !AppModel.isPlainName(p[0]) ? "the file must be a plain name in the folder" : null;
      int label = -1;
      int index = -1;
      if (bad == null) {
        try {
          label = Integer.parseInt(p[1].trim());
          index = Integer.parseInt(p[2].trim());
        } catch (NumberFormatException e) {
          bad = "label and index must be integers";
        }
      }
      if (bad == null && (label < 0 || index < 0)) {
        bad = "label and index must be >= 0";
      }
      if (bad == null && !seen.add(index)) {
        bad = "index " + index + " appears twice";
      }
      if (bad != null) {
        throw new IOException(BenchmarkProtocol.IMAGES_FILE + " line " + n + ": " + bad
            + " (is: " + Json.write(s.length() > 80 ? s.substring(0, 80) : s) + ")");
      }
      f.names.add(p[0]);
      f.labels.add(label);
      f.indices.add(index);
    }
    return f;
  }

  @Override
  public int size() {
    return names.size();
  }

  @Override
  public int index(int k) {
    return indices.get(k);
  }

  @Override
  public int label(int k) {
    return labels.get(k);
  }

  @Override
  public byte[] bytes(int k) throws IOException {
    return Files.readAllBytes(new File(dir, names.get(k)).toPath());
  }
}
