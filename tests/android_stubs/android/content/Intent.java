package android.content;
public class Intent {
  public String getStringExtra(String k) { return null; }
  public int getIntExtra(String k, int d) { return d; }
}
