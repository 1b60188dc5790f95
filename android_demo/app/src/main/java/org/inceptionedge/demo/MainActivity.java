package org.inceptionedge.demo;

import android.Manifest;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.ImageDecoder;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.util.Log;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Spinner;
import android.widget.TextView;
import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.PickVisualMediaRequest;
import androidx.activity.result.contract.ActivityResultContracts;
import androidx.appcompat.app.AppCompatActivity;
import androidx.camera.core.CameraSelector;
import androidx.camera.core.ImageAnalysis;
import androidx.camera.core.ImageProxy;
import androidx.camera.core.Preview;
import androidx.camera.lifecycle.ProcessCameraProvider;
import androidx.camera.view.PreviewView;
import androidx.core.content.ContextCompat;
import com.google.common.util.concurrent.ListenableFuture;
import java.io.IOException;
import java.io.InputStream;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.inceptionedge.core.ClassificationSession;
import org.inceptionedge.core.Classifier;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.TopK;

/**
 * Live camera classification and the photo picker with the model convert/ wrote and
 * `./gradlew copyModel` put in the assets: top-5 with scores, preprocessing and inference times
 * apart, delegate and thread choice, any fallback or error on screen. The loop itself
 * (preprocess -> classify -> top-k) is the core's ClassificationSession, tested on the JVM; this
 * class is camera, picker and UI.
 */
public final class MainActivity extends AppCompatActivity
    implements ClassificationSession.Listener {
  private static final String TAG = "InceptionEdge";
  private static final Integer[] THREADS = {1, 2, 4, 8};
  /** Photos are decoded subsampled to at most this many pixels on the longer side. */
  private static final int MAX_PHOTO_SIDE = 2048;

  private final ExecutorService worker = Executors.newSingleThreadExecutor();
  private ModelFiles files;
  private ClassificationSession session;
  private TextView status;
  private TextView results;
  private Delegate delegate = Delegate.CPU;
  private int threads = 4;

  private final ActivityResultLauncher<String> cameraPermission = registerForActivityResult(
      new ActivityResultContracts.RequestPermission(), granted -> {
        if (granted) {
          startCamera();
        } else {
          status.setText("camera permission denied: use the photo picker");
        }
      });

  // the system photo picker (no storage permission; backported by Google Play services on
  // Android 4.4+), not the document chooser
  private final ActivityResultLauncher<PickVisualMediaRequest> pickPhoto =
      registerForActivityResult(new ActivityResultContracts.PickVisualMedia(), uri -> {
        if (uri != null) {
          worker.execute(() -> classifyPhoto(uri));
        }
      });

  @Override
  protected void onCreate(Bundle state) {
    super.onCreate(state);
    setContentView(R.layout.activity_main);
    status = findViewById(R.id.status);
    results = findViewById(R.id.results);
    try {
      files = ModelFiles.fromAssets(this);
    } catch (IOException | RuntimeException e) {
      status.setText(e.getMessage());
      Log.e(TAG, "cannot load the model", e);
      return;
    }
    // LiteRT 2.x CompiledModel; an accelerator it cannot give falls back to the CPU on screen
    Classifier.Factory factory = (d, n) -> CompiledModelClassifier.orCpu(this, files, d, n);
    session = new ClassificationSession(factory, files.spec, files.labels, 5, System::nanoTime,
        this);
    Spinner d = findViewById(R.id.delegate);
    d.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item,
        Delegate.values()));
    d.setOnItemSelectedListener(listener(pos -> {
      delegate = Delegate.values()[pos];
      rebuild();
    }));
    Spinner t = findViewById(R.id.threads);
    t.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item,
        THREADS));
    t.setSelection(2);
    t.setOnItemSelectedListener(listener(pos -> {
      threads = THREADS[pos];
      rebuild();
    }));
    findViewById(R.id.pick).setOnClickListener(v -> pickPhoto.launch(
        new PickVisualMediaRequest.Builder()
            .setMediaType(ActivityResultContracts.PickVisualMedia.ImageOnly.INSTANCE).build()));
    rebuild();
    if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA)
        == PackageManager.PERMISSION_GRANTED) {
      startCamera();
    } else {
      cameraPermission.launch(Manifest.permission.CAMERA);
    }
  }

  private interface OnPick {
    void picked(int position);
  }

  private static AdapterView.OnItemSelectedListener listener(OnPick f) {
    return new AdapterView.OnItemSelectedListener() {
      @Override
      public void onItemSelected(AdapterView<?> parent, View view, int pos, long id) {
        f.picked(pos);
      }

      @Override
      public void onNothingSelected(AdapterView<?> parent) {}
    };
  }

  /** (Re)builds the interpreter on the worker thread; the session reports what runs. */
  private void rebuild() {
    final Delegate want = delegate;
    final int n = threads;
    worker.execute(() -> session.configure(want, n));
  }

  @Override
  public void onReady(Delegate requested, Classifier running) {
    String msg = running.fallbackReason() == null
        ? files.modelName + " on " + running.delegate() + ", " + threads + " threads"
        : "FALLBACK " + requested + " -> " + running.delegate() + ": "
            + running.fallbackReason();
    if (running.note() != null) {
      msg += "\n" + running.note();
    }
    if (running.fallbackReason() != null || running.note() != null) {
      Log.w(TAG, msg);
    }
    final String text = msg;
    runOnUiThread(() -> status.setText(text));
  }

  @Override
  public void onResult(ClassificationSession.Result r) {
    StringBuilder b = new StringBuilder();
    for (TopK.Entry e : r.top) {
      b.append(String.format(Locale.ROOT, "%-22s %5.1f %%%n", e.label, 100 * e.score));
    }
    b.append(String.format(Locale.ROOT, "preprocessing %.1f ms, inference %.1f ms (%s)",
        r.preprocessUs / 1e3, r.inferenceUs / 1e3, r.delegate));
    String text = b.toString();
    runOnUiThread(() -> results.setText(text));
  }

  @Override
  public void onError(String message) {
    Log.e(TAG, message);
    runOnUiThread(() -> status.setText("ERROR: " + message));
  }

  private void startCamera() {
    ListenableFuture<ProcessCameraProvider> future = ProcessCameraProvider.getInstance(this);
    future.addListener(() -> {
      try {
        ProcessCameraProvider provider = future.get();
        Preview preview = new Preview.Builder().build();
        preview.setSurfaceProvider(((PreviewView) findViewById(R.id.preview))
            .getSurfaceProvider());
        ImageAnalysis analysis = new ImageAnalysis.Builder()
            .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
            .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888).build();
        analysis.setAnalyzer(worker, this::analyze);
        provider.unbindAll();
        provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis);
      } catch (Exception e) {
        status.setText("camera unavailable: " + e.getMessage());
      }
    }, ContextCompat.getMainExecutor(this));
  }

  private void analyze(ImageProxy image) {
    try {
      Bitmap bmp = image.toBitmap();
      int rot = image.getImageInfo().getRotationDegrees();
      if (rot != 0) {
        android.graphics.Matrix m = new android.graphics.Matrix();
        m.postRotate(rot);
        bmp = Bitmap.createBitmap(bmp, 0, 0, bmp.getWidth(), bmp.getHeight(), m, true);
      }
      session.classify(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
    } catch (RuntimeException | OutOfMemoryError e) {
      onError("camera frame: " + e);
    } finally {
      image.close();
    }
  }

  /** A picked photo, decoded subsampled (a 12 MP photo would be ~96 MB as pixels twice over). */
  private void classifyPhoto(Uri uri) {
    try {
      Bitmap bmp;
      if (Build.VERSION.SDK_INT >= 28) {
        bmp = ImageDecoder.decodeBitmap(ImageDecoder.createSource(getContentResolver(), uri),
            (dec, info, src) -> {
              dec.setAllocator(ImageDecoder.ALLOCATOR_SOFTWARE);
              dec.setTargetSampleSize(Preprocessor.sampleSize(info.getSize().getWidth(),
                  info.getSize().getHeight(), MAX_PHOTO_SIDE));
            });
      } else {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream in = getContentResolver().openInputStream(uri)) {
          BitmapFactory.decodeStream(in, null, bounds);
        }
        BitmapFactory.Options opts = new BitmapFactory.Options();
        opts.inSampleSize = Preprocessor.sampleSize(bounds.outWidth, bounds.outHeight,
            MAX_PHOTO_SIDE);
        try (InputStream in = getContentResolver().openInputStream(uri)) {
          bmp = BitmapFactory.decodeStream(in, null, opts);
        }
        if (bmp == null) {
          throw new IOException("not an image this device can decode");
        }
      }
      session.classify(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
    } catch (IOException | RuntimeException | OutOfMemoryError e) {
      onError("cannot read the photo: " + e.getMessage());
    }
  }

  @Override
  protected void onDestroy() {
    if (session != null) {
      worker.execute(session::close);
    }
    worker.shutdown();
    super.onDestroy();
  }
}
