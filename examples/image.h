/* Reading an RGB image for the examples: binary PPM (P6, maxval 255) always, PNG/JPEG when built
 * with stb_image (Debian: libstb-dev). */
#ifndef MNV3_EXAMPLE_IMAGE_H_
#define MNV3_EXAMPLE_IMAGE_H_

#include <stdint.h>

typedef struct rgb_image {
  uint8_t *pixels; /* width * height * 3 bytes, rows packed */
  int width, height;
} rgb_image;

/* 0 on success; otherwise -1 and a message in `error`. */
int read_rgb_image(const char *path, rgb_image *image, char *error, int error_size);
void free_rgb_image(rgb_image *image);

#endif
