// mnv3_detect: per-class non-maximum suppression over an SSDLite bundle's two outputs, the same
// arithmetic as mnv3compile/detection.py (float32 IoU, the same order of operations, stable
// ordering on ties), so an app gets the boxes `mnv3compile run` prints. Compiled with
// -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round differently from numpy.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "mnv3.h"
#include "status.h"

namespace {

constexpr size_t kCandidatesPerClass = 300;  // detection.CANDIDATES_PER_CLASS

// IoU of boxes a and b (x1, y1, x2, y2), as detection.iou computes it in float32.
float Iou(const float* a, const float* b) {
  float width = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.0f);
  float height = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.0f);
  float intersection = width * height;
  float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return intersection / std::max(area_a + area_b - intersection, 1e-12f);
}

}  // namespace

mnv3_status mnv3_detect(const float* boxes, const float* scores, size_t anchors, size_t classes,
                        float score_threshold, float iou_threshold, mnv3_detection* detections,
                        size_t max_detections, size_t* count, mnv3_error* err) {
  using mnv3_internal::Fail;
  return mnv3_internal::Guard(err, [&] {
    if (boxes == nullptr || scores == nullptr || count == nullptr || (detections == nullptr && max_detections > 0)) {
      Fail(MNV3_ERR_ARGUMENT, "boxes, scores, detections and count must not be NULL");
    }
    if (classes < 2) Fail(MNV3_ERR_ARGUMENT, "a detector has at least 2 classes (class 0 is the background), got %zu", classes);
    std::vector<mnv3_detection> found;
    std::vector<size_t> order;
    std::vector<char> alive;
    for (size_t c = 1; c < classes; ++c) {
      order.clear();
      for (size_t a = 0; a < anchors; ++a) {
        if (scores[a * classes + c] > score_threshold) order.push_back(a);
      }
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t x, size_t y) { return scores[x * classes + c] > scores[y * classes + c]; });
      if (order.size() > kCandidatesPerClass) order.resize(kCandidatesPerClass);
      alive.assign(order.size(), 1);
      for (size_t i = 0; i < order.size(); ++i) {
        if (!alive[i]) continue;
        const float* box = boxes + order[i] * 4;
        found.push_back({static_cast<int>(c), scores[order[i] * classes + c], box[0], box[1], box[2], box[3]});
        for (size_t j = i + 1; j < order.size(); ++j) {
          if (alive[j] && !(Iou(box, boxes + order[j] * 4) <= iou_threshold)) alive[j] = 0;
        }
      }
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const mnv3_detection& x, const mnv3_detection& y) { return x.score > y.score; });
    *count = std::min(found.size(), max_detections);
    std::copy(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(*count), detections);
  });
}
