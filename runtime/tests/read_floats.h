/* A whole raw float32 file into memory, for the test programs (api_test.c, load_local.c). */
#ifndef MNV3_TESTS_READ_FLOATS_H_
#define MNV3_TESTS_READ_FLOATS_H_

#include <stdio.h>
#include <stdlib.h>

/* The values, malloc'ed (the caller frees them), and their number in *count (0 when unreadable). */
static float *read_floats(const char *path, size_t *count) {
  FILE *file = fopen(path, "rb");
  if (!file) return NULL;
  fseek(file, 0, SEEK_END);
  long bytes = ftell(file);
  rewind(file);
  float *values = malloc((size_t)bytes);
  *count = values && fread(values, 1, (size_t)bytes, file) == (size_t)bytes ? (size_t)bytes / sizeof(float) : 0;
  fclose(file);
  return values;
}

#endif /* MNV3_TESTS_READ_FLOATS_H_ */
