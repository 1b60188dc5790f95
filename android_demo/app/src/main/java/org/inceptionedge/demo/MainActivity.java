package org.inceptionedge.demo;

import android.Manifest;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.ImageDecoder;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.provider.MediaStore;
import android.util.Log;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Spinner;
import android.widget.TextView;
import androidx.activity.result.ActivityResultLauncher;
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
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.inceptionedge.core.Delegate;
import org.inceptionedge.core.Preprocessor;
import org.inceptionedge.core.TopK;

/**
 * Live camera classification and a photo picker with the model convert/ wrote: top-5 with scores,
 * preprocessing and inference times apart, delegate and thread choice, any fallback on screen.
 */
public final class MainActivity extends AppCompatActivity {
  private static final String TAG = "InceptionEdge";
  private static final Integer[] THREADS = {1, 2, 4, 8};

  private final ExecutorService worker = Executors.newSingleThreadExecutor();
  private ModelFiles files;
  private Preprocessor pre;
  private volatile LiteRtClassifier classifier;
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

  private final ActivityResultLauncher<String> pickPhoto = registerForActivityResult(
      new ActivityResultContracts.GetContent(), uri -> {
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
    } catch (IOException e) {
      status.setText(e.getMessage());
      return;
    }
    pre = new Preprocessor(files.spec);
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
    findViewById(R.id.pick).setOnClickListener(v -> pickPhoto.launch("image/*"));
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

  /** (Re)builds the interpreter on the worker thread; a fallback is shown and logged. */
  private void rebuild() {
    final Delegate want = delegate;
    final int n = threads;
    worker.execute(() -> {
      if (classifier != null) {
        classifier.close();
      }
      classifier = LiteRtClassifier.create(files.model, want, n, Build.VERSION.SDK_INT);
      String msg = classifier.fallbackReason() == null
          ? files.modelName + " on " + classifier.delegate() + ", " + n + " threads"
          : "FALLBACK " + want + " -> " + classifier.delegate() + ": "
              + classifier.fallbackReason();
      if (classifier.fallbackReason() != null) {
        Log.w(TAG, msg);
      }
      runOnUiThread(() -> status.setText(msg));
    });
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
      classify(bmp);
    } finally {
      image.close();
    }
  }

  private void classifyPhoto(Uri uri) {
    try {
      Bitmap bmp = Build.VERSION.SDK_INT >= 28
          ? ImageDecoder.decodeBitmap(ImageDecoder.createSource(getContentResolver(), uri),
              (dec, info, src) -> dec.setAllocator(ImageDecoder.ALLOCATOR_SOFTWARE))
          : MediaStore.Images.Media.getBitmap(getContentResolver(), uri);
      classify(bmp);
    } catch (IOException e) {
      runOnUiThread(() -> status.setText("cannot read the photo: " + e.getMessage()));
    }
  }

  private void classify(Bitmap bmp) {
    LiteRtClassifier c = classifier;
    if (c == null) {
      return;
    }
    long t0 = System.nanoTime();
    float[] x = pre.toFloat(Pixels.argb(bmp), bmp.getWidth(), bmp.getHeight());
    long t1 = System.nanoTime();
    float[] p = c.classify(x);
    long t2 = System.nanoTime();
    List<TopK.Entry> top = TopK.of(p, files.labels, 5);
    StringBuilder b = new StringBuilder();
    for (TopK.Entry e : top) {
      b.append(String.format(Locale.ROOT, "%-22s %5.1f %%%n", e.label, 100 * e.score));
    }
    b.append(String.format(Locale.ROOT, "preprocessing %.1f ms, inference %.1f ms (%s)",
        (t1 - t0) / 1e6, (t2 - t1) / 1e6, c.delegate()));
    String text = b.toString();
    runOnUiThread(() -> results.setText(text));
  }

  @Override
  protected void onDestroy() {
    worker.execute(() -> {
      if (classifier != null) {
        classifier.close();
      }
    });
    worker.shutdown();
    super.onDestroy();
  }
}
