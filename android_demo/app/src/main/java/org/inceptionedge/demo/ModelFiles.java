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
import org.inceptionedge.core.AppModel;
import org.inceptionedge.core.Labels;
import org.inceptionedge.core.PreprocessingSpec;

/** Model, labels and preprocessing as convert/ wrote them: from the assets, or from files. */
public final class ModelFiles {
  public final String modelName;
  /** The model's bytes (its tensors' types and quantization are read from them). */
  public final MappedByteBuffer model;
  /** Where LiteRT's CompiledModel loads it from: an asset name, or else a file path. */
  public final String assetName;
  public final String path;
  public final List<String> labels;
  public final PreprocessingSpec spec;

  private ModelFiles(String name, MappedByteBuffer model, String assetName, String path,
      List<String> labels, PreprocessingSpec spec) {
    this.modelName = name;
    this.model = model;
    this.assetName = assetName;
    this.path = path;
    this.labels = labels;
    this.spec = spec;
  }

  /**
   * The model named by assets/model/model.json (written by `./gradlew copyModel`, i.e. `python -m
   * pipeline.app_assets`), with its labels and preprocessing; its sha256 is checked against the
   * pointer. IOException with the fix when anything is missing or does not match.
   */
  public static ModelFiles fromAssets(Context ctx) throws IOException {
    AppModel m;
    try {
      m = AppModel.parse(read(ctx.getAssets().open(AppModel.asset(AppModel.POINTER))));
    } catch (IOException e) {
      throw new IOException("no model in the app (assets/" + AppModel.asset(AppModel.POINTER)
          + " is missing): run `./gradlew copyModel` in android_demo and build again");
    } catch (IllegalArgumentException e) {
      throw new IOException(e.getMessage());
    }
    MappedByteBuffer buf;
    try (AssetFileDescriptor fd = ctx.getAssets().openFd(AppModel.asset(m.model));
        FileInputStream in = new FileInputStream(fd.getFileDescriptor())) {
      buf = in.getChannel().map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(),
          fd.getDeclaredLength());
    } catch (IOException e) {
      throw new IOException("model.json names " + m.model + ", which is not in the app's assets "
          + "(or is compressed): run `./gradlew copyModel` and build again");
    }
    if (m.sha256 != null && !m.sha256.equals(sha256(buf))) {
      throw new IOException(m.model + " does not match the sha256 in model.json: run "
          + "`./gradlew copyModel` and build again");
    }
    try {
      return new ModelFiles(m.model, buf, AppModel.asset(m.model), null,
          Labels.parse(read(ctx.getAssets().open(AppModel.asset(m.labels)))),
          PreprocessingSpec.fromJson(read(ctx.getAssets().open(AppModel.asset(m.preprocessing)))));
    } catch (IllegalArgumentException e) {
      throw new IOException(m.preprocessing + ": " + e.getMessage());
    }
  }

  static String sha256(MappedByteBuffer buf) {
    try {
      java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
      md.update(buf.duplicate());
      StringBuilder b = new StringBuilder();
      for (byte x : md.digest()) {
        b.append(String.format(java.util.Locale.ROOT, "%02x", x & 0xff));
      }
      return b.toString();
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Paths pushed by edge_eval (benchmark mode). */
  public static ModelFiles fromFiles(String model, String labels, String preprocessing)
      throws IOException {
    if (model == null || labels == null || preprocessing == null) {
      throw new IOException("the model, labels and preprocessing extras are all needed");
    }
    MappedByteBuffer buf;
    try (FileInputStream in = new FileInputStream(model)) {
      buf = in.getChannel().map(FileChannel.MapMode.READ_ONLY, 0, in.getChannel().size());
    }
    try {
      return new ModelFiles(new File(model).getName(), buf, null, model,
          Labels.parse(read(new FileInputStream(labels))),
          PreprocessingSpec.fromJson(read(new FileInputStream(preprocessing))));
    } catch (IllegalArgumentException e) {
      throw new IOException(preprocessing + ": " + e.getMessage());
    }
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
