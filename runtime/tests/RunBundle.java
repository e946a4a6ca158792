import com.mnv3compile.Mnv3Exception;
import com.mnv3compile.Mnv3Model;
import java.io.DataOutputStream;
import java.io.FileOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;

/**
 * Drives the JNI binding for tests/test_deploy.py:
 *   java RunBundle BUNDLE INPUT.f32 OUTPUT.f32     run(float[]), outputs written as little-endian float32
 *   java RunBundle BUNDLE --argb W H OUTPUT.f32   run(int[] argb, w, h) on a synthetic image
 *   java RunBundle BUNDLE --errors                 the exceptions of bad calls, one line each
 *   java RunBundle BUNDLE --threads N AFFINITY INPUT.f32 OUTPUT.f32   run(float[]) on a model opened with
 *                                                  open(bundle, N, AFFINITY)
 */
public final class RunBundle {
  public static void main(String[] args) throws Exception {
    if (args.length == 2 && args[1].equals("--errors")) {
      errors(args[0]);
      return;
    }
    if (args[1].equals("--threads")) {
      try (Mnv3Model model = Mnv3Model.open(args[0], Integer.parseInt(args[2]), Integer.parseInt(args[3]))) {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[4]))).order(ByteOrder.LITTLE_ENDIAN);
        float[] input = new float[bytes.remaining() / 4];
        bytes.asFloatBuffer().get(input);
        write(model.run(input), args[5]);
      }
      return;
    }
    try (Mnv3Model model = Mnv3Model.open(args[0])) {
      float[] output;
      if (args[1].equals("--argb")) {
        int width = Integer.parseInt(args[2]), height = Integer.parseInt(args[3]);
        output = model.run(syntheticArgb(width, height), width, height);
        write(output, args[4]);
      } else {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[1]))).order(ByteOrder.LITTLE_ENDIAN);
        float[] input = new float[bytes.remaining() / 4];
        bytes.asFloatBuffer().get(input);
        output = model.run(input);
        write(output, args[2]);
      }
      System.out.println("outputs: " + output.length + " of " + model.outputSize());
    }
  }

  /** The pattern tests/test_deploy.py draws too: r = x, g = y, b = (x + y) * 7, all mod 256. */
  static int[] syntheticArgb(int width, int height) {
    int[] argb = new int[width * height];
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        argb[y * width + x] = 0xff000000 | (x % 256) << 16 | (y % 256) << 8 | ((x + y) * 7) % 256;
      }
    }
    return argb;
  }

  static void write(float[] values, String path) throws Exception {
    ByteBuffer bytes = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    bytes.asFloatBuffer().put(values);
    try (DataOutputStream out = new DataOutputStream(new FileOutputStream(path))) {
      out.write(bytes.array());
    }
  }

  static void errors(String bundle) {
    String[] names = {"open missing", "run wrong size", "run null", "argb wrong count", "run after close",
                      "open with 0 threads, affinity 9"};
    for (String name : names) {
      try {
        switch (name) {
          case "open missing": Mnv3Model.open(bundle + "/does-not-exist"); break;
          case "run wrong size": try (Mnv3Model m = Mnv3Model.open(bundle)) { m.run(new float[3]); } break;
          case "run null": try (Mnv3Model m = Mnv3Model.open(bundle)) { m.run((float[]) null); } break;
          case "argb wrong count": try (Mnv3Model m = Mnv3Model.open(bundle)) { m.run(new int[5], 2, 2); } break;
          case "open with 0 threads, affinity 9": Mnv3Model.open(bundle, 0, 9); break;
          default: Mnv3Model m = Mnv3Model.open(bundle); m.close(); m.run(new float[3]);
        }
        System.out.println(name + ": no exception");
      } catch (Mnv3Exception e) {
        System.out.println(name + ": " + e.getMessage());
      }
    }
  }
}
