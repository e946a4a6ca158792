#include "image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MNV3_HAVE_STB_IMAGE
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#include <stb_image.h>
#endif

/* The next header token of a PPM, skipping whitespace and # comments; -1 at the end. */
static long ppm_number(FILE *file) {
  int c = fgetc(file);
  while (c == '#' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
    if (c == '#') {
      while (c != '\n' && c != EOF) c = fgetc(file);
    }
    c = fgetc(file);
  }
  if (c < '0' || c > '9') return -1;
  long value = 0;
  while (c >= '0' && c <= '9') {
    value = value * 10 + (c - '0');
    if (value > 1 << 20) return -1;
    c = fgetc(file);
  }
  return value; /* the one whitespace after the header's last number is consumed here */
}

static int read_ppm(FILE *file, const char *path, rgb_image *image, char *error, int error_size) {
  char magic[2];
  if (fread(magic, 1, 2, file) != 2 || magic[0] != 'P' || magic[1] != '6') {
    snprintf(error, error_size, "%s: not a binary PPM (P6)", path);
    return -1;
  }
  long width = ppm_number(file), height = ppm_number(file), maxval = ppm_number(file);
  if (width < 1 || height < 1 || maxval != 255) {
    snprintf(error, error_size, "%s: bad PPM header (need width, height and maxval 255)", path);
    return -1;
  }
  size_t bytes = (size_t)width * (size_t)height * 3;
  image->pixels = malloc(bytes);
  if (!image->pixels) {
    snprintf(error, error_size, "%s: out of memory", path);
    return -1;
  }
  if (fread(image->pixels, 1, bytes, file) != bytes) {
    snprintf(error, error_size, "%s: truncated PPM (%ldx%ld needs %zu bytes of pixels)", path, width, height, bytes);
    free_rgb_image(image);
    return -1;
  }
  image->width = (int)width;
  image->height = (int)height;
  return 0;
}

int read_rgb_image(const char *path, rgb_image *image, char *error, int error_size) {
  memset(image, 0, sizeof(*image));
  FILE *file = fopen(path, "rb");
  if (!file) {
    snprintf(error, error_size, "%s: cannot open", path);
    return -1;
  }
  unsigned char magic[2] = {0, 0};
  size_t got = fread(magic, 1, 2, file);
  rewind(file);
  int status;
  if (got == 2 && magic[0] == 'P') {
    status = read_ppm(file, path, image, error, error_size);
  } else {
#ifdef MNV3_HAVE_STB_IMAGE
    int channels;
    image->pixels = stbi_load_from_file(file, &image->width, &image->height, &channels, 3);
    status = image->pixels ? 0 : -1;
    if (status) snprintf(error, error_size, "%s: cannot decode (%s)", path, stbi_failure_reason());
#else
    snprintf(error, error_size, "%s: not a PPM, and this build has no PNG/JPEG decoder (install libstb-dev)", path);
    status = -1;
#endif
  }
  fclose(file);
  return status;
}

void free_rgb_image(rgb_image *image) {
  free(image->pixels); /* stbi_image_free is free() by default */
  image->pixels = NULL;
}
