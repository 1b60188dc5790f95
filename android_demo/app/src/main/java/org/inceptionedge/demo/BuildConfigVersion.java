package org.inceptionedge.demo;

/** The app version written into every benchmark record (keep in step with app/build.gradle). */
final class BuildConfigVersion {
  static final String NAME = "0.1.0";

  private BuildConfigVersion() {}
}
