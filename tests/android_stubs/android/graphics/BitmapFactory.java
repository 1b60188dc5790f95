package android.graphics;
public class BitmapFactory {
  public static Bitmap decodeByteArray(byte[] b, int off, int len) { return null; }
  public static Bitmap decodeFile(String p) { return null; }
}
