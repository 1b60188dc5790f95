package android.os;
public class Build {
  public static final String MODEL = null, MANUFACTURER = null, SOC_MODEL = null;
  public static final String[] SUPPORTED_ABIS = {};
  public static class VERSION { public static final int SDK_INT = 0; }
}
