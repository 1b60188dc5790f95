package android.app;
public class Activity extends android.content.Context {
  protected void onCreate(android.os.Bundle state) {}
  public android.content.Intent getIntent() { return null; }
  public void finish() {}
  public android.view.Window getWindow() { return null; }
  public android.content.res.AssetManager getAssets() { return null; }
  public android.content.pm.ApplicationInfo getApplicationInfo() { return null; }
}
