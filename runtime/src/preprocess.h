// Image -> model input, the same arithmetic as mnv3compile's Python preprocessing
// (mnv3compile/quant/preprocess.py): Pillow's BILINEAR resample (an antialiasing triangle filter,
// 22-bit fixed-point weights, horizontal pass then vertical, 8-bit intermediate), a center crop
// or right padding, then (pixel * scale - mean) / std in float32, CHW.
#ifndef MNV3_PREPROCESS_H_
#define MNV3_PREPROCESS_H_

#include <cstdint>

namespace mnv3 {

enum class Resize { kCenterCrop, kPadRight };

struct Preprocess {
  float mean[3];
  float std[3];
  float scale = 1.0f;
  bool bgr = false;
  Resize resize = Resize::kCenterCrop;
};

struct Image {
  const uint8_t* rgb;  // 3 bytes per pixel
  int width, height, stride;
};

// Writes 3 * height * width floats (CHW) into `input`.
void ToInput(const Image& image, const Preprocess& spec, int height, int width, float* input);

}  // namespace mnv3

#endif  // MNV3_PREPROCESS_H_
