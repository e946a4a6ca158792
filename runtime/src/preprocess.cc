#include "preprocess.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mnv3 {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's 8-bit resample precision

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter: for each
// output index, the first input index, the number of taps and their fixed-point weights.
struct Taps {
  std::vector<int> first, count;
  std::vector<int32_t> weight;  // out_size x span
  int span = 0;
};

Taps Coefficients(int in_size, int out_size) {
  double scale = static_cast<double>(in_size) / out_size;
  double filter_scale = std::max(scale, 1.0);
  double support = 1.0 * filter_scale;
  Taps taps;
  taps.span = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weight.assign(static_cast<size_t>(out_size) * taps.span, 0);
  std::vector<double> k(taps.span);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::fabs((x + xmin - center + 0.5) / filter_scale);
      k[x] = t < 1.0 ? 1.0 - t : 0.0;
      total += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double w = total != 0.0 ? k[x] / total : k[x];
      double fixed = w * (1 << kPrecisionBits);
      taps.weight[static_cast<size_t>(xx) * taps.span + x] = static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.first[xx] = xmin;
    taps.count[xx] = xmax;
  }
  return taps;
}

inline uint8_t Clip8(int32_t sum) {
  if (sum >= (1 << (kPrecisionBits + 8))) return 255;
  if (sum <= 0) return 0;
  return static_cast<uint8_t>(sum >> kPrecisionBits);
}

// An RGB image in a packed buffer.
struct Pixels {
  int width = 0, height = 0;
  std::vector<uint8_t> data;
  const uint8_t* at(int x, int y) const { return &data[(static_cast<size_t>(y) * width + x) * 3]; }
};

Pixels Copy(const Image& image) {
  Pixels out{image.width, image.height, std::vector<uint8_t>(static_cast<size_t>(image.width) * image.height * 3)};
  for (int y = 0; y < image.height; ++y) {
    std::copy_n(image.rgb + static_cast<size_t>(y) * image.stride, image.width * 3, &out.data[static_cast<size_t>(y) * image.width * 3]);
  }
  return out;
}

// Pillow resizes horizontally first (rows the vertical pass needs only), then vertically; a pass
// whose size does not change is skipped.
Pixels ResizeBilinear(const Pixels& in, int width, int height) {
  Pixels current = in;
  if (width != in.width) {
    Taps taps = Coefficients(in.width, width);
    Pixels out{width, in.height, std::vector<uint8_t>(static_cast<size_t>(width) * in.height * 3)};
    for (int y = 0; y < in.height; ++y) {
      for (int xx = 0; xx < width; ++xx) {
        const int32_t* w = &taps.weight[static_cast<size_t>(xx) * taps.span];
        for (int c = 0; c < 3; ++c) {
          int32_t sum = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < taps.count[xx]; ++x) sum += current.at(taps.first[xx] + x, y)[c] * w[x];
          out.data[(static_cast<size_t>(y) * width + xx) * 3 + c] = Clip8(sum);
        }
      }
    }
    current = std::move(out);
  }
  if (height != in.height) {
    Taps taps = Coefficients(in.height, height);
    Pixels out{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
    for (int yy = 0; yy < height; ++yy) {
      const int32_t* w = &taps.weight[static_cast<size_t>(yy) * taps.span];
      for (int x = 0; x < width; ++x) {
        for (int c = 0; c < 3; ++c) {
          int32_t sum = 1 << (kPrecisionBits - 1);
          for (int y = 0; y < taps.count[yy]; ++y) sum += current.at(x, taps.first[yy] + y)[c] * w[y];
          out.data[(static_cast<size_t>(yy) * width + x) * 3 + c] = Clip8(sum);
        }
      }
    }
    current = std::move(out);
  }
  return current;
}

}  // namespace

void ToInput(const Image& image, const Preprocess& spec, int height, int width, float* input) {
  Pixels source = Copy(image);
  Pixels resized;
  int left = 0, top = 0, used_width = width;
  if (spec.resize == Resize::kPadRight) {
    double ideal = std::ceil(static_cast<double>(height) * image.width / image.height);
    used_width = static_cast<int>(std::min<double>(width, std::max(1.0, ideal)));
    resized = ResizeBilinear(source, used_width, height);
  } else {
    // Shorter side to size / 0.875, then the central crop (torchvision's evaluation). Python's
    // round() rounds half to even, as nearbyint does in the default rounding mode.
    double shorter = std::min(height, width) / 0.875;
    double ratio = shorter / std::min(image.width, image.height);
    int new_width = std::max(width, static_cast<int>(std::nearbyint(image.width * ratio)));
    int new_height = std::max(height, static_cast<int>(std::nearbyint(image.height * ratio)));
    resized = ResizeBilinear(source, new_width, new_height);
    left = (new_width - width) / 2;
    top = (new_height - height) / 2;
  }
  size_t plane = static_cast<size_t>(height) * width;
  for (int c = 0; c < 3; ++c) {
    int source_channel = spec.bgr ? 2 - c : c;
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        float value = 0.0f;  // right padding is zero after normalization
        if (x < used_width) {
          float pixel = static_cast<float>(resized.at(left + x, top + y)[source_channel]) * spec.scale;
          value = (pixel - spec.mean[c]) / spec.std[c];
        }
        input[c * plane + static_cast<size_t>(y) * width + x] = value;
      }
    }
  }
}

}  // namespace mnv3
