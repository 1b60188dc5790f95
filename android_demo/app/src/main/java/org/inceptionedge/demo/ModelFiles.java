package org.inceptionedge.demo;

import android.content.Context;
import android.content.res.AssetFileDescriptor;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.inceptionedge.core.Labels;
import org.inceptionedge.core.PreprocessingSpec;

/** Model, labels and preprocessing as convert/ wrote them: from the assets, or from files. */
public final class ModelFiles {
  public final String modelName;
  public final MappedByteBuffer model;
  public final List<String> labels;
  public final PreprocessingSpec spec;

  private ModelFiles(String name, MappedByteBuffer model, List<String> labels,
      PreprocessingSpec spec) {
    this.modelName = name;
    this.model = model;
    this.labels = labels;
    this.spec = spec;
  }

  /** The first .tflite in the assets (copied there by `./gradlew copyModel`). */
  public static ModelFiles fromAssets(Context ctx) throws IOException {
    String name = null;
    for (String f : ctx.getAssets().list("")) {
      if (f.endsWith(".tflite")) {
        name = f;
        break;
      }
    }
    if (name == null) {
      throw new IOException("no .tflite in the app's assets: run `./gradlew copyModel "
          + "-PconvertDir=<python -m convert --out folder>`");
    }
    MappedByteBuffer buf;
    try (AssetFileDescriptor fd = ctx.getAssets().openFd(name);
        FileInputStream in = new FileInputStream(fd.getFileDescriptor())) {
      buf = in.getChannel().map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(),
          fd.getDeclaredLength());
    }
    return new ModelFiles(name, buf, Labels.parse(read(ctx.getAssets().open("labels.txt"))),
        PreprocessingSpec.fromJson(read(ctx.getAssets().open("preprocessing.json"))));
  }

  /** Paths pushed by edge_eval (benchmark mode). */
  public static ModelFiles fromFiles(String model, String labels, String preprocessing)
      throws IOException {
    MappedByteBuffer buf;
    try (FileInputStream in = new FileInputStream(model)) {
      buf = in.getChannel().map(FileChannel.MapMode.READ_ONLY, 0, in.getChannel().size());
    }
    return new ModelFiles(new File(model).getName(), buf,
        Labels.parse(read(new FileInputStream(labels))),
        PreprocessingSpec.fromJson(read(new FileInputStream(preprocessing))));
  }

  static String read(InputStream in) throws IOException {
    try (InputStream s = in) {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      byte[] b = new byte[8192];
      for (int n; (n = s.read(b)) > 0; ) {
        out.write(b, 0, n);
      }
      return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }
  }
}
