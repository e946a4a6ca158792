/* Opens a bundle the way an Android app does, for tests/test_deploy.py and deploy-test: the runtime
 * is loaded with dlopen(RTLD_NOW | RTLD_LOCAL), as System.loadLibrary loads libmnv3_jni.so into the
 * app's linker namespace, so nothing it loads (libtvm_ffi.so among them) is in the global scope;
 * run it with LD_BIND_NOW=1, since bionic binds every symbol of a library when it opens it. A model
 * library that calls a symbol its own DT_NEEDED set does not provide fails here as on a phone.
 *
 *   load_local LIBMNV3 BUNDLE INPUT.f32 OUTPUT.f32     prints "outputs: N", writes them as float32 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "mnv3.h"
#include "read_floats.h"

typedef mnv3_model *(*open_fn)(const char *, mnv3_error *);
typedef size_t (*count_fn)(const mnv3_model *);
typedef mnv3_status (*run_fn)(mnv3_model *, const float *, size_t, float *, size_t, mnv3_error *);
typedef void (*close_fn)(mnv3_model *);

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: load_local LIBMNV3 BUNDLE INPUT.f32 OUTPUT.f32\n");
    return 2;
  }
  void *runtime = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!runtime) {
    fprintf(stderr, "load_local: %s\n", dlerror());
    return 1;
  }
  open_fn open_model = (open_fn)dlsym(runtime, "mnv3_open");
  count_fn output_count = (count_fn)dlsym(runtime, "mnv3_output_count");
  run_fn run = (run_fn)dlsym(runtime, "mnv3_run_f32");
  close_fn close_model = (close_fn)dlsym(runtime, "mnv3_close");
  if (!open_model || !output_count || !run || !close_model) {
    fprintf(stderr, "load_local: %s does not export the mnv3 C API\n", argv[1]);
    return 1;
  }
  mnv3_error err;
  mnv3_model *model = open_model(argv[2], &err);
  if (!model) {
    fprintf(stderr, "load_local: %s\n", err.message);
    return 1;
  }
  size_t input_count = 0, count = output_count(model);
  float *input = read_floats(argv[3], &input_count), *output = malloc(count * sizeof(float));
  int status = 1;
  if (!input || !output) {
    fprintf(stderr, "load_local: cannot read %s\n", argv[3]);
  } else if (run(model, input, input_count, output, count, &err) != MNV3_OK) {
    fprintf(stderr, "load_local: %s\n", err.message);
  } else {
    FILE *file = fopen(argv[4], "wb");
    status = !file || fwrite(output, sizeof(float), count, file) != count;
    if (file) fclose(file);
    printf("outputs: %zu\n", count);
  }
  free(input);
  free(output);
  close_model(model);
  return status;
}
