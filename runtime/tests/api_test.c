/* Drives the C API for tests/test_deploy.py: every error path, repeated open/run/close (for the
 * sanitizer build) and two models in two threads. Prints one line per case: what the API said.
 *
 *   api_test open DIR                               status and message of mnv3_open(DIR)
 *   api_test errors BUNDLE                          the argument errors of every call
 *   api_test repeat BUNDLE INPUT.f32 OPENS RUNS     OPENS x (open, RUNS x run, close); outputs must not change
 *   api_test threads A INPUT_A B INPUT_B N          A on 1 worker and B on 2, in two threads, N runs each
 *   api_test workers BUNDLE INPUT.f32 AFFINITY      runs on 1, 2, 3, 4 workers: the pool's count, whether
 *                                                   the output equals the 1-worker one
 *   api_test options BUNDLE                         the errors of out-of-range options
 *   api_test detect BOXES.f32 SCORES.f32 ANCHORS CLASSES SCORE IOU MAX
 *                                                   mnv3_detect, one line per detection (%.9g)
 *   api_test bench BUNDLE INPUT.f32 N [THREADS]     one warm-up run, then N runs between two marker
 *                                                   syscalls (schedules/tuning/qemu/count_insns.c counts
 *                                                   the instructions between them, per thread), on
 *                                                   THREADS workers (default 1) */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mnv3.h"
#include "read_floats.h"

static void say(const char *what, mnv3_status status, const mnv3_error *err) {
  printf("%s: %s: %s\n", what, mnv3_status_name(status), status == MNV3_OK ? "" : err->message);
}

static int open_case(const char *dir) {
  mnv3_error err;
  mnv3_model *model = mnv3_open(dir, &err);
  say("open", model ? MNV3_OK : err.code, &err);
  mnv3_close(model);
  return 0;
}

static int errors_case(const char *dir) {
  mnv3_error err;
  mnv3_model *model = mnv3_open(dir, &err);
  if (!model) {
    say("open", err.code, &err);
    return 1;
  }
  mnv3_tensor_info info;
  size_t n = 0, out_n = mnv3_output_count(model);
  mnv3_input_info(model, 0, &info, NULL);
  n = info.count;
  float *input = calloc(n + 1, sizeof(float)), *output = calloc(out_n + 1, sizeof(float));
  uint8_t rgb[3 * 4 * 4] = {0};
  say("open NULL", mnv3_open(NULL, &err) ? MNV3_OK : err.code, &err);
  say("run NULL model", mnv3_run_f32(NULL, input, n, output, out_n, &err), &err);
  say("run NULL input", mnv3_run_f32(model, NULL, n, output, out_n, &err), &err);
  say("run NULL output", mnv3_run_f32(model, input, n, NULL, out_n, &err), &err);
  say("run short input", mnv3_run_f32(model, input, n - 1, output, out_n, &err), &err);
  say("run long input", mnv3_run_f32(model, input, n + 1, output, out_n, &err), &err);
  say("run short output", mnv3_run_f32(model, input, n, output, out_n - 1, &err), &err);
  printf("run NULL err: %s\n", mnv3_status_name(mnv3_run_f32(model, input, n - 1, output, out_n, NULL)));
  say("rgb NULL image", mnv3_run_rgb8(model, NULL, 4, 4, 12, output, out_n, &err), &err);
  say("rgb zero width", mnv3_run_rgb8(model, rgb, 0, 4, 12, output, out_n, &err), &err);
  say("rgb short stride", mnv3_run_rgb8(model, rgb, 4, 4, 11, output, out_n, &err), &err);
  say("input info index", mnv3_input_info(model, 1, &info, &err), &err);
  say("output info NULL", mnv3_output_info(model, 0, NULL, &err), &err);
  say("run ok", mnv3_run_f32(model, input, n, output, out_n, &err), &err);
  printf("label out of range: %s\n", mnv3_label(model, 1u << 30) ? "not NULL" : "NULL");
  printf("NULL model counts: %zu %zu %zu\n", mnv3_num_inputs(NULL), mnv3_num_outputs(NULL), mnv3_output_count(NULL));
  mnv3_close(NULL);
  free(input);
  free(output);
  mnv3_close(model);
  return 0;
}

static int repeat_case(const char *dir, const char *input_path, int opens, int runs) {
  size_t n = 0;
  float *input = read_floats(input_path, &n);
  float *first = NULL, *output = NULL;
  size_t out_n = 0;
  int status = 0, done = 0;
  for (int i = 0; i < opens && status == 0; ++i) {
    mnv3_error err;
    mnv3_model *model = mnv3_open(dir, &err);
    if (!model) {
      say("open", err.code, &err);
      status = 1;
      break;
    }
    if (!first) {
      out_n = mnv3_output_count(model);
      first = calloc(out_n, sizeof(float));
      output = calloc(out_n, sizeof(float));
    }
    for (int r = 0; r < runs && status == 0; ++r, ++done) {
      float *target = done == 0 ? first : output;
      if (mnv3_run_f32(model, input, n, target, out_n, &err) != MNV3_OK) {
        say("run", err.code, &err);
        status = 1;
      } else if (done > 0 && memcmp(first, output, out_n * sizeof(float))) {
        printf("run %d differs from run 0\n", done);
        status = 1;
      }
    }
    mnv3_close(model);
  }
  if (status == 0) printf("repeat: %d opens, %d runs, identical outputs\n", opens, done);
  free(input);
  free(first);
  free(output);
  return status;
}

typedef struct worker {
  const char *dir;
  float *input, *expected;
  size_t n, out_n;
  int runs, mismatches, threads, used;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  mnv3_error err;
  mnv3_options options = {w->threads, MNV3_AFFINITY_BIG};
  mnv3_model *model = mnv3_open_with(w->dir, &options, &err);
  w->used = mnv3_threads(model);
  float *output = calloc(w->out_n, sizeof(float));
  for (int i = 0; model && i < w->runs; ++i) {
    if (mnv3_run_f32(model, w->input, w->n, output, w->out_n, &err) != MNV3_OK ||
        memcmp(output, w->expected, w->out_n * sizeof(float))) {
      w->mismatches++;
    }
  }
  if (!model) w->mismatches = -1;
  free(output);
  mnv3_close(model);
  return NULL;
}

static int threads_case(char **argv, int runs) {
  worker workers[2];
  for (int k = 0; k < 2; ++k) {
    worker *w = &workers[k];
    memset(w, 0, sizeof(*w));
    w->dir = argv[2 * k];
    w->input = read_floats(argv[2 * k + 1], &w->n);
    w->runs = runs;
    w->threads = k + 1;
    mnv3_error err;
    mnv3_options one = {1, MNV3_AFFINITY_BIG};
    mnv3_model *model = mnv3_open_with(w->dir, &one, &err); /* the single-threaded reference */
    if (!model) {
      say("open", err.code, &err);
      return 1;
    }
    w->out_n = mnv3_output_count(model);
    w->expected = calloc(w->out_n, sizeof(float));
    mnv3_run_f32(model, w->input, w->n, w->expected, w->out_n, &err);
    mnv3_close(model);
  }
  pthread_t ids[2];
  for (int k = 0; k < 2; ++k) pthread_create(&ids[k], NULL, work, &workers[k]);
  for (int k = 0; k < 2; ++k) pthread_join(ids[k], NULL);
  for (int k = 0; k < 2; ++k) {
    printf("thread %d (%d workers): %d runs, %d differ from the single-threaded result\n", k, workers[k].used, runs,
           workers[k].mismatches);
    free(workers[k].input);
    free(workers[k].expected);
  }
  return workers[0].mismatches || workers[1].mismatches;
}

static int workers_case(const char *dir, const char *input_path, int affinity) {
  size_t n = 0, out_n = 0;
  float *input = read_floats(input_path, &n), *outputs[5] = {NULL};
  int used[5] = {0}, status = 0;
  /* 4 first: a thread's pool is sized as it first runs (room for every core or the count asked) */
  for (int threads = 4; threads >= 1 && status == 0; --threads) {
    mnv3_error err;
    mnv3_options options = {threads, (mnv3_affinity)affinity};
    mnv3_model *model = mnv3_open_with(dir, &options, &err);
    if (!model) {
      say("open", err.code, &err);
      status = 1;
      break;
    }
    out_n = mnv3_output_count(model);
    outputs[threads] = calloc(out_n, sizeof(float));
    if (mnv3_run_f32(model, input, n, outputs[threads], out_n, &err) != MNV3_OK) {
      say("run", err.code, &err);
      status = 1;
    }
    used[threads] = mnv3_threads(model);
    mnv3_close(model);
  }
  for (int threads = 1; threads <= 4 && status == 0; ++threads) {
    printf("threads %d: %d workers, %s\n", threads, used[threads],
           !memcmp(outputs[1], outputs[threads], out_n * sizeof(float)) ? "identical" : "DIFFERS");
  }
  for (int threads = 1; threads <= 4; ++threads) free(outputs[threads]);
  free(input);
  return status;
}

static int options_case(const char *dir) {
  mnv3_error err;
  mnv3_options bad[] = {{-1, MNV3_AFFINITY_BIG}, {257, MNV3_AFFINITY_BIG}, {2, (mnv3_affinity)7}};
  for (int i = 0; i < 3; ++i) {
    mnv3_model *model = mnv3_open_with(dir, &bad[i], &err);
    say("open_with", model ? MNV3_OK : err.code, &err);
    mnv3_close(model);
  }
  printf("threads of NULL: %d\n", mnv3_threads(NULL));
  return 0;
}

/* The marker schedules/tuning/qemu/count_insns.c looks for: write(-1, "mnv3-mark", 9), a harmless EBADF. */
static void marker(void) {
  ssize_t ignored = write(-1, "mnv3-mark", 9);
  (void)ignored;
}

static int print_base(struct dl_phdr_info *info, size_t size, void *prefix) {
  (void)size;
  if (info->dlpi_name && strstr(info->dlpi_name, (const char *)prefix)) {
    printf("library %s base 0x%llx\n", info->dlpi_name, (unsigned long long)info->dlpi_addr);
  }
  return 0;
}

static int bench_case(const char *dir, const char *input_path, int runs, int threads) {
  size_t n = 0;
  float *input = read_floats(input_path, &n);
  mnv3_error err;
  mnv3_options options = {threads, MNV3_AFFINITY_BIG};
  mnv3_model *model = mnv3_open_with(dir, &options, &err);
  if (!model || !input) {
    printf("open: %s\n", model ? "cannot read input" : err.message);
    return 1;
  }
  size_t out_n = mnv3_output_count(model);
  float *output = calloc(out_n, sizeof(float));
  int status = mnv3_run_f32(model, input, n, output, out_n, &err) != MNV3_OK; /* warm-up: allocations, first touch */
  dl_iterate_phdr(print_base, (void *)dir);
  marker();
  for (int i = 0; i < runs && !status; ++i) status = mnv3_run_f32(model, input, n, output, out_n, &err) != MNV3_OK;
  marker();
  printf("bench: %d runs%s\n", runs, status ? " failed" : "");
  free(output);
  free(input);
  mnv3_close(model);
  return status;
}

static int detect_case(char **argv) {
  size_t box_count = 0, score_count = 0, count = 0;
  float *boxes = read_floats(argv[0], &box_count), *scores = read_floats(argv[1], &score_count);
  size_t anchors = (size_t)atol(argv[2]), classes = (size_t)atol(argv[3]), max = (size_t)atol(argv[6]);
  if (!boxes || !scores || box_count != anchors * 4 || score_count != anchors * classes) {
    fprintf(stderr, "detect: cannot read the boxes and scores, or their sizes do not match\n");
    return 1;
  }
  mnv3_detection *found = calloc(max + 1, sizeof(mnv3_detection));
  mnv3_error err;
  mnv3_status status = mnv3_detect(boxes, scores, anchors, classes, strtof(argv[4], NULL), strtof(argv[5], NULL),
                                   found, max, &count, &err);
  say("detect", status, &err);
  for (size_t i = 0; status == MNV3_OK && i < count; ++i) {
    printf("%d %.9g %.9g %.9g %.9g %.9g\n", found[i].class_id, found[i].score, found[i].x1, found[i].y1, found[i].x2,
           found[i].y2);
  }
  say("detect NULL boxes", mnv3_detect(NULL, scores, anchors, classes, 0.5f, 0.5f, found, max, &count, &err), &err);
  say("detect 1 class", mnv3_detect(boxes, scores, anchors, 1, 0.5f, 0.5f, found, max, &count, &err), &err);
  free(found);
  free(boxes);
  free(scores);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "open")) return open_case(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "errors")) return errors_case(argv[2]);
  if (argc == 6 && !strcmp(argv[1], "repeat")) return repeat_case(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
  if (argc == 7 && !strcmp(argv[1], "threads")) return threads_case(argv + 2, atoi(argv[6]));
  if (argc == 5 && !strcmp(argv[1], "workers")) return workers_case(argv[2], argv[3], atoi(argv[4]));
  if (argc == 3 && !strcmp(argv[1], "options")) return options_case(argv[2]);
  if ((argc == 5 || argc == 6) && !strcmp(argv[1], "bench")) {
    return bench_case(argv[2], argv[3], atoi(argv[4]), argc == 6 ? atoi(argv[5]) : 1);
  }
  if (argc == 9 && !strcmp(argv[1], "detect")) return detect_case(argv + 2);
  fprintf(stderr, "usage: see the comment at the top of runtime/tests/api_test.c\n");
  return 2;
}
