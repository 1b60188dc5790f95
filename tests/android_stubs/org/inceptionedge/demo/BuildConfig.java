package org.inceptionedge.demo;
public final class BuildConfig {
  public static final String VERSION_NAME = "0";
  public static final String LITERT_VERSION = "2.3.0";  // app/build.gradle buildConfigField
}
