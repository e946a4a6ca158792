package com.mnv3compile;

/**
 * A compiled MobileNetV3 bundle (the folder {@code mnv3compile build} writes), run on the CPU.
 *
 * <pre>{@code
 * try (Mnv3Model model = Mnv3Model.open(bundleDir)) {
 *   int[] argb = new int[w * h];
 *   bitmap.getPixels(argb, 0, w, 0, 0, w, h);
 *   float[] logits = model.run(argb, w, h);
 * }
 * }</pre>
 *
 * Not thread-safe: use one model from one thread at a time; several models may run at once. A
 * model's kernels run on {@code threads} workers (0: one per big core), on the cores an affinity
 * names ({@link #BIG}, {@link #LITTLE}, {@link #ALL}, {@link #UNPINNED}: mnv3.h's mnv3_affinity).
 */
public final class Mnv3Model implements AutoCloseable {
  static {
    System.loadLibrary("mnv3_jni");
  }

  private long handle;

  private Mnv3Model(long handle) {
    this.handle = handle;
  }

  /** One worker per big core, pinned: the default. */
  public static final int BIG = 0;
  /** The little cores, pinned. */
  public static final int LITTLE = 1;
  /** Pinned over every core, the fastest first. */
  public static final int ALL = 2;
  /** Not pinned: the OS places the workers. */
  public static final int UNPINNED = 3;

  /** Opens a bundle folder: checks its library against the manifest and loads it; runs on one
   * worker per big core. */
  public static Mnv3Model open(String bundleDir) {
    return open(bundleDir, 0, BIG);
  }

  /** {@link #open(String)} on {@code threads} workers (1..256; 0: one per core of the affinity's
   * kind) placed as {@code affinity} says; out-of-range values throw Mnv3Exception. */
  public static Mnv3Model open(String bundleDir, int threads, int affinity) {
    return new Mnv3Model(nativeOpen(bundleDir, threads, affinity));
  }

  /** Floats of the input tensor (NCHW). */
  public int inputSize() {
    return nativeInputCount(live());
  }

  /** Floats of all outputs together, in manifest order. */
  public int outputSize() {
    return nativeOutputCount(live());
  }

  /** Runs on a preprocessed input tensor (NCHW float32); returns every output, flattened. */
  public float[] run(float[] input) {
    return nativeRun(live(), input);
  }

  /** Runs on ARGB pixels (Bitmap.getPixels), resized and normalized as the bundle's manifest says. */
  public float[] run(int[] argb, int width, int height) {
    return nativeRunArgb(live(), argb, width, height);
  }

  @Override
  public void close() {
    if (handle != 0) {
      nativeClose(handle);
      handle = 0;
    }
  }

  private long live() {
    if (handle == 0) throw new Mnv3Exception("the model is closed");
    return handle;
  }

  private static native long nativeOpen(String bundleDir, int threads, int affinity);

  private static native void nativeClose(long handle);

  private static native int nativeInputCount(long handle);

  private static native int nativeOutputCount(long handle);

  private static native float[] nativeRun(long handle, float[] input);

  private static native float[] nativeRunArgb(long handle, int[] argb, int width, int height);
}
