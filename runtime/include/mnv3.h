/*
 * mnv3 - run an mnv3compile bundle from C (Android NDK apps, embedded Linux, any C/C++ program).
 *
 * A bundle is the folder `mnv3compile build` writes: a compiled library (.so), a JSON manifest
 * (inputs, outputs, preprocessing, labels, sha256 of every file) and optional labels. This API
 * opens one, checks the library against the manifest's sha256, and runs it on the CPU through
 * the TVM runtime (libtvm_runtime + libtvm_ffi).
 *
 *     mnv3_error err;
 *     mnv3_model *model = mnv3_open("bundles/small-int8", &err);
 *     if (!model) { fprintf(stderr, "%s\n", err.message); return 1; }
 *     float logits[1000];
 *     if (mnv3_run_rgb8(model, rgb, width, height, width * 3, logits, 1000, &err) != MNV3_OK) ...
 *     mnv3_close(model);
 *
 * Errors: every function that can fail returns a status (or NULL) and, when `err` is not NULL,
 * fills it with the same code and a one-line message. No C++ exception crosses this API.
 *
 * Threads: a model is not reentrant -- call it from one thread at a time (or guard it with a
 * mutex). Different models may run in different threads at once. A model's kernels split their
 * work over `threads` workers of TVM's thread pool (mnv3_open_with; by default one per big core,
 * pinned to them); the pool belongs to the calling thread, so two models run from two app threads
 * each use their own count. Outputs are bit-identical at any thread count.
 */
#ifndef MNV3_H_
#define MNV3_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MNV3_API __declspec(dllexport)
#else
#define MNV3_API __attribute__((visibility("default")))
#endif

typedef enum mnv3_status {
  MNV3_OK = 0,
  MNV3_ERR_ARGUMENT = 1,       /* a NULL pointer, a size that does not match, a bad index */
  MNV3_ERR_NOT_FOUND = 2,      /* no bundle, manifest, library or labels file where expected */
  MNV3_ERR_MANIFEST = 3,       /* the manifest is not valid JSON or misses a field */
  MNV3_ERR_INTEGRITY = 4,      /* the library's sha256 differs from the manifest's */
  MNV3_ERR_LOAD = 5,           /* the TVM runtime refused the library (corrupt, wrong CPU/ABI) */
  MNV3_ERR_RUN = 6,            /* the model failed while running */
  MNV3_ERR_NO_PREPROCESS = 7,  /* mnv3_run_rgb8 on a bundle built without --preprocess */
  MNV3_ERR_MEMORY = 8          /* out of memory */
} mnv3_status;

typedef struct mnv3_error {
  mnv3_status code;
  char message[512];
} mnv3_error;

/* One input or output tensor as the manifest describes it; pointers live as long as the model. */
typedef struct mnv3_tensor_info {
  const char *name;
  const char *dtype; /* "float32" */
  int ndim;
  const int64_t *shape;
  size_t count; /* number of elements */
} mnv3_tensor_info;

typedef struct mnv3_model mnv3_model;

/* Which cores a model's worker threads run on. */
typedef enum mnv3_affinity {
  MNV3_AFFINITY_BIG = 0,     /* one worker per big core, pinned (cores ranked by maximum frequency): the
                                default -- little cores added to a pool usually make it slower */
  MNV3_AFFINITY_LITTLE = 1,  /* the little cores, pinned (background work off the big cluster) */
  MNV3_AFFINITY_ALL = 2,     /* workers pinned over all the cores, the fastest first (0 threads: one per core) */
  MNV3_AFFINITY_UNPINNED = 3 /* workers not pinned: the OS places them */
} mnv3_affinity;

typedef struct mnv3_options {
  int threads;            /* workers, 1..256; 0: one per core of the affinity's kind (big cores) */
  mnv3_affinity affinity;
} mnv3_options;

/* Opens the bundle folder `bundle_dir`: reads its manifest, checks the library's sha256, loads it.
 * Runs on one worker per big core. Returns NULL on failure (err says why). */
MNV3_API mnv3_model *mnv3_open(const char *bundle_dir, mnv3_error *err);

/* mnv3_open, running on `options->threads` workers placed as `options->affinity` says (NULL: the
 * defaults, {0, MNV3_AFFINITY_BIG}). An out-of-range count or affinity is MNV3_ERR_ARGUMENT. */
MNV3_API mnv3_model *mnv3_open_with(const char *bundle_dir, const mnv3_options *options, mnv3_error *err);

/* The workers the model's runs use on the calling thread (the pool configured as its options say),
 * or 0 for NULL. */
MNV3_API int mnv3_threads(mnv3_model *model);

/* Frees everything the model holds. NULL is accepted. */
MNV3_API void mnv3_close(mnv3_model *model);

MNV3_API size_t mnv3_num_inputs(const mnv3_model *model);
MNV3_API size_t mnv3_num_outputs(const mnv3_model *model);
MNV3_API mnv3_status mnv3_input_info(const mnv3_model *model, size_t index, mnv3_tensor_info *info,
                                     mnv3_error *err);
MNV3_API mnv3_status mnv3_output_info(const mnv3_model *model, size_t index, mnv3_tensor_info *info,
                                      mnv3_error *err);
/* Total elements of all outputs: the `output_count` the run functions expect. */
MNV3_API size_t mnv3_output_count(const mnv3_model *model);

/* Runs the model on `input` (the first input's elements, NCHW float32, `input_count` of them).
 * `output` receives every output in manifest order, each flattened, `output_count` floats in all. */
MNV3_API mnv3_status mnv3_run_f32(mnv3_model *model, const float *input, size_t input_count, float *output,
                                  size_t output_count, mnv3_error *err);

/* Runs the model on an RGB image (3 bytes per pixel, rows `stride` bytes apart): resized and
 * normalized in C exactly as the manifest's "preprocess" says (the same arithmetic as
 * `mnv3compile run`), then as mnv3_run_f32. */
MNV3_API mnv3_status mnv3_run_rgb8(mnv3_model *model, const uint8_t *rgb, int width, int height, int stride,
                                   float *output, size_t output_count, mnv3_error *err);

/* The image -> input tensor step of mnv3_run_rgb8 alone (`input` holds the first input's count). */
MNV3_API mnv3_status mnv3_preprocess_rgb8(const mnv3_model *model, const uint8_t *rgb, int width, int height,
                                          int stride, float *input, size_t input_count, mnv3_error *err);

/* One detection of an SSDLite bundle: its class (1.. ; 0 is the background), probability and box
 * (x1, y1, x2, y2 in [0, 1] of the input: multiply by the image's width and height). */
typedef struct mnv3_detection {
  int class_id;
  float score;
  float x1, y1, x2, y2;
} mnv3_detection;

/* Per-class non-maximum suppression over a detector bundle's outputs (`boxes`: anchors x 4, then
 * `scores`: anchors x classes -- the output of mnv3_run_f32/mnv3_run_rgb8 is those two, in that
 * order), as `mnv3compile run` does it: per class, the anchors scoring above `score_threshold`,
 * the best 300 of them, greedy suppression of boxes overlapping a better one by more than
 * `iou_threshold` (0.55 is the paper's); then the best `max_detections` over all classes, best
 * first, into `detections`. `*count` receives how many were written. */
MNV3_API mnv3_status mnv3_detect(const float *boxes, const float *scores, size_t anchors, size_t classes,
                                 float score_threshold, float iou_threshold, mnv3_detection *detections,
                                 size_t max_detections, size_t *count, mnv3_error *err);

/* The bundle's label for class `index`, or NULL (no labels file, or index out of range). */
MNV3_API const char *mnv3_label(const mnv3_model *model, size_t index);

/* "MNV3_ERR_INTEGRITY", ... */
MNV3_API const char *mnv3_status_name(mnv3_status status);

#ifdef __cplusplus
}
#endif

#endif /* MNV3_H_ */
