/* classify: run an mnv3compile bundle on an image and print the top-5 classes.
 *
 *   classify BUNDLE IMAGE.ppm|png [--top K] [--save-output FILE] [--threads N] [--affinity A]
 *   classify BUNDLE --tensor INPUT.f32 [--save-output FILE] [--threads N] [--affinity A]
 *   classify BUNDLE (IMAGE | --tensor INPUT.f32) --bench RUNS [--threads N] [--affinity A]
 *
 * --threads: workers (0, the default: one per big core); --affinity: big, little, all or unpinned.
 * --tensor takes the raw float32 input (NCHW) instead of an image; --save-output writes every
 * output, raw float32 in manifest order (what `mnv3compile deploy-test` compares with Python).
 * --bench RUNS: instead of the classes, what an app measures: the time to open the bundle, to the
 * first result (open + first inference), the median of RUNS more inferences, and the process's
 * peak resident memory (run it as a fresh process: that is the cold start). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "image.h"
#include "mnv3.h"

static int fail(const char *message) {
  fprintf(stderr, "error: %s\n", message);
  return 1;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  const float *values; /* a tensor, or NULL: the image */
  size_t count;
  const unsigned char *pixels;
  int width, height;
} model_input;

static mnv3_status run_once(mnv3_model *model, const model_input *in, float *output, size_t count, mnv3_error *err) {
  if (in->values) return mnv3_run_f32(model, in->values, in->count, output, count, err);
  return mnv3_run_rgb8(model, in->pixels, in->width, in->height, in->width * 3, output, count, err);
}

/* The first inference (already run, its time given), then RUNS timed ones; prints the report. */
static int bench(mnv3_model *model, const model_input *in, float *output, size_t count, int runs, double open_ms,
                 double first_ms) {
  double *times = malloc((size_t)runs * sizeof(double));
  if (!times) return fail("out of memory");
  mnv3_error err;
  for (int i = 0; i < runs; ++i) {
    double began = now_ms();
    if (run_once(model, in, output, count, &err) != MNV3_OK) {
      free(times);
      return fail(err.message);
    }
    times[i] = now_ms() - began;
  }
  qsort(times, (size_t)runs, sizeof(double), by_value);
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage); /* ru_maxrss: KiB on Linux and Android */
  printf("open: %.2f ms\n", open_ms);
  printf("first result: %.2f ms (open + first inference)\n", open_ms + first_ms);
  printf("inference: median %.3f ms, p10 %.3f, p90 %.3f over %d runs on %d threads\n", times[runs / 2],
         times[runs / 10], times[runs * 9 / 10], runs, mnv3_threads(model));
  printf("peak resident memory: %.1f MiB\n", usage.ru_maxrss / 1024.0);
  free(times);
  return 0;
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
  int top = 5, bench_runs = 0;
  mnv3_options options = {0, MNV3_AFFINITY_BIG};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--top") && i + 1 < argc) {
      top = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--bench") && i + 1 < argc) {
      bench_runs = atoi(argv[++i]);
      if (bench_runs < 1) return fail("--bench takes a number of runs, 1 or more");
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

  /* The input first: --bench times the open and the first inference, not reading a file. */
  char message[512];
  float *values = NULL;
  rgb_image image = {0};
  model_input in = {0};
  mnv3_error err;
  if (image_path) {
    if (read_rgb_image(image_path, &image, message, sizeof(message))) return fail(message);
    in.pixels = image.pixels, in.width = image.width, in.height = image.height;
  }
  double began = now_ms();
  mnv3_model *model = mnv3_open_with(bundle, &options, &err);
  double open_ms = now_ms() - began;
  if (!model) {
    free_rgb_image(&image);
    return fail(err.message);
  }
  mnv3_tensor_info input;
  mnv3_input_info(model, 0, &input, NULL);
  size_t count = mnv3_output_count(model);
  float *output = malloc(count * sizeof(float));
  int status = 1;
  if (tensor_path && !(values = read_floats(tensor_path, input.count, message, sizeof(message)))) {
    fail(message);
  } else if (!output) {
    fail("out of memory");
  } else {
    in.values = values, in.count = input.count;
    double first_began = now_ms();
    status = run_once(model, &in, output, count, &err) == MNV3_OK ? 0 : fail(err.message);
    double first_ms = now_ms() - first_began;
    if (status == 0 && bench_runs) {
      status = bench(model, &in, output, count, bench_runs, open_ms, first_ms);
      free(values);
      free(output);
      free_rgb_image(&image);
      mnv3_close(model);
      return status;
    }
  }
  free(values);
  free_rgb_image(&image);
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
