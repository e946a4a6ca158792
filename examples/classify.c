/* classify: run an mnv3compile bundle on an image and print the top-5 classes.
 *
 *   classify BUNDLE IMAGE.ppm|png [--top K] [--save-output FILE] [--threads N] [--affinity A]
 *   classify BUNDLE --tensor INPUT.f32 [--save-output FILE] [--threads N] [--affinity A]
 *
 * --threads: workers (0, the default: one per big core); --affinity: big, little, all or unpinned.
 * --tensor takes the raw float32 input (NCHW) instead of an image; --save-output writes every
 * output, raw float32 in manifest order (what `mnv3compile deploy-test` compares with Python). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "mnv3.h"

static int fail(const char *message) {
  fprintf(stderr, "error: %s\n", message);
  return 1;
}

static float *read_floats(const char *path, size_t count, char *error, int error_size) {
  FILE *file = fopen(path, "rb");
  if (!file) {
    snprintf(error, error_size, "%s: cannot open", path);
    return NULL;
  }
  float *values = malloc(count * sizeof(float));
  size_t got = values ? fread(values, sizeof(float), count, file) : 0;
  int extra = fgetc(file) != EOF;
  fclose(file);
  if (got != count || extra) {
    snprintf(error, error_size, "%s: expected exactly %zu float32 values", path, count);
    free(values);
    return NULL;
  }
  return values;
}

int main(int argc, char **argv) {
  const char *bundle = NULL, *image_path = NULL, *tensor_path = NULL, *save_path = NULL;
  int top = 5;
  mnv3_options options = {0, MNV3_AFFINITY_BIG};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--top") && i + 1 < argc) {
      top = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--tensor") && i + 1 < argc) {
      tensor_path = argv[++i];
    } else if (!strcmp(argv[i], "--save-output") && i + 1 < argc) {
      save_path = argv[++i];
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      options.threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--affinity") && i + 1 < argc) {
      const char *names[] = {"big", "little", "all", "unpinned"};
      const char *name = argv[++i];
      options.affinity = (mnv3_affinity)-1;
      for (int k = 0; k < 4; ++k) {
        if (!strcmp(name, names[k])) options.affinity = (mnv3_affinity)k;
      }
    } else if (!bundle) {
      bundle = argv[i];
    } else if (!image_path) {
      image_path = argv[i];
    } else {
      return fail("usage: classify BUNDLE (IMAGE | --tensor INPUT.f32) [--top K] [--save-output FILE]");
    }
  }
  if (!bundle || (!image_path == !tensor_path)) {
    return fail("usage: classify BUNDLE (IMAGE | --tensor INPUT.f32) [--top K] [--save-output FILE]");
  }

  mnv3_error err;
  mnv3_model *model = mnv3_open_with(bundle, &options, &err);
  if (!model) return fail(err.message);
  mnv3_tensor_info input;
  mnv3_input_info(model, 0, &input, NULL);
  size_t count = mnv3_output_count(model);
  float *output = malloc(count * sizeof(float));
  char message[512];
  int status = 1;
  if (!output) {
    fail("out of memory");
  } else if (tensor_path) {
    float *values = read_floats(tensor_path, input.count, message, sizeof(message));
    if (!values) {
      fail(message);
    } else {
      status = mnv3_run_f32(model, values, input.count, output, count, &err) == MNV3_OK ? 0 : fail(err.message);
      free(values);
    }
  } else {
    rgb_image image;
    if (read_rgb_image(image_path, &image, message, sizeof(message))) {
      fail(message);
    } else {
      status = mnv3_run_rgb8(model, image.pixels, image.width, image.height, image.width * 3, output, count, &err) == MNV3_OK
                   ? 0 : fail(err.message);
      free_rgb_image(&image);
    }
  }
  if (status == 0 && save_path) {
    FILE *file = fopen(save_path, "wb");
    if (!file || fwrite(output, sizeof(float), count, file) != count) status = fail("cannot write --save-output file");
    if (file) fclose(file);
  }
  if (status == 0) {
    /* Top-K of the first output (a classifier's logits). */
    mnv3_tensor_info first;
    mnv3_output_info(model, 0, &first, NULL);
    int classes = (int)first.count;
    if (top > classes) top = classes;
    /* Repeatedly the best class not yet printed (K is small). */
    char *printed = calloc((size_t)classes, 1);
    for (int rank = 0; printed && rank < top; ++rank) {
      int best = -1;
      for (int c = 0; c < classes; ++c) {
        if (!printed[c] && (best < 0 || output[c] > output[best])) best = c;
      }
      printed[best] = 1;
      const char *label = mnv3_label(model, (size_t)best);
      printf("%d\t%d\t%.6f\t%s\n", rank + 1, best, output[best], label ? label : "");
    }
    free(printed);
  }
  free(output);
  mnv3_close(model);
  return status;
}
