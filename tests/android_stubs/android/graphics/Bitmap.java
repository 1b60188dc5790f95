package android.graphics;
public final class Bitmap {
  public enum Config { ARGB_8888, RGB_565 }
  public Config getConfig() { return null; }
  public Bitmap copy(Config c, boolean mutable) { return null; }
  public int getWidth() { return 0; }
  public int getHeight() { return 0; }
  public void getPixels(int[] px, int off, int stride, int x, int y, int w, int h) {}
  public void recycle() {}
}
