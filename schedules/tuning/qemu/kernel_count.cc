// One kernel of a tuning candidate, run between the two marker syscalls that
// schedules/tuning/qemu/count_insns.c counts instructions between: the arm64 cost proxy of
// 'mnv3compile tune --measure instructions' (schedules/tuning/instructions.py builds and runs it).
//
//   kernel_count LIBRARY RUNS DTYPE:D0,D1,... [DTYPE:SHAPE ...]
//
// Loads LIBRARY (a compiled PrimFunc exported as "main"), makes one zero-filled tensor per
// argument (zeros: every value is a valid index, and the kernels' instruction counts do not depend
// on the data), calls it once to warm up (first touch, lazy binding), then RUNS times between the
// markers, and prints "kernel_count: RUNS runs".
#include <dlpack/dlpack.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

struct ZeroAlloc {
  void AllocData(DLTensor* tensor) {
    size_t bytes = ffi::GetDataSize(*tensor);
    tensor->data = ::operator new(bytes, std::align_val_t(64));
    std::memset(tensor->data, 0, bytes);
  }
  void FreeData(DLTensor* tensor) { ::operator delete(tensor->data, std::align_val_t(64)); }
};

// The marker count_insns.c looks for: write(-1, "mnv3-mark", 9), a harmless EBADF.
void Marker() {
  ssize_t ignored = write(-1, "mnv3-mark", 9);
  (void)ignored;
}

// "int8:1,56,56,16" -> a zero tensor of that dtype and shape.
ffi::Tensor MakeTensor(const std::string& spec) {
  size_t colon = spec.find(':');
  if (colon == std::string::npos) throw std::runtime_error("argument spec without ':': " + spec);
  DLDataType dtype = ffi::StringToDLDataType(spec.substr(0, colon));
  std::vector<int64_t> shape;
  for (const char* p = spec.c_str() + colon + 1; *p;) {
    char* end = nullptr;
    shape.push_back(std::strtoll(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p) throw std::runtime_error("bad shape in: " + spec);
  }
  return ffi::Tensor::FromNDAlloc(ZeroAlloc(), ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: kernel_count LIBRARY RUNS DTYPE:SHAPE...\n");
    return 2;
  }
  try {
    ffi::Module library = ffi::Module::LoadFromFile(argv[1]);
    ffi::Function kernel = library->GetFunction("main").value();
    int runs = std::atoi(argv[2]);
    std::vector<ffi::AnyView> packed;
    std::vector<ffi::Tensor> tensors;
    for (int i = 3; i < argc; ++i) tensors.push_back(MakeTensor(argv[i]));
    for (const ffi::Tensor& tensor : tensors) packed.emplace_back(tensor);
    ffi::Any result;
    kernel.CallPacked(packed.data(), static_cast<int32_t>(packed.size()), &result);  // warm-up
    Marker();
    for (int i = 0; i < runs; ++i) kernel.CallPacked(packed.data(), static_cast<int32_t>(packed.size()), &result);
    Marker();
    std::printf("kernel_count: %d runs\n", runs);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "kernel_count: %s\n", error.what());
    return 1;
  }
  return 0;
}
