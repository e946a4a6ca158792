// The C API of mnv3.h over the TVM runtime (Relax VM). Everything that can throw is caught at the
// API boundary and becomes a status and a message.
#include "mnv3.h"

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "preprocess.h"
#include "sha256.h"
#include "status.h"

namespace ffi = tvm::ffi;
namespace fs = std::filesystem;
using mnv3_internal::Fail;
using mnv3_internal::Guard;

namespace {

constexpr int kManifestVersion = 1;
constexpr int kPooledAllocator = 2;  // tvm::runtime::memory::kPooled

// Host memory for the input tensor (the runtime's own allocator is not in its public headers).
struct HostAlloc {
  void AllocData(DLTensor* tensor) {
    tensor->data = ::operator new(ffi::GetDataSize(*tensor), std::align_val_t(64));
  }
  void FreeData(DLTensor* tensor) { ::operator delete(tensor->data, std::align_val_t(64)); }
};

struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  size_t count = 1;
};

std::string ReadFile(const fs::path& path, mnv3_status missing) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) Fail(missing, "%s: cannot open", path.string().c_str());
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

// Field access on the parsed manifest, each failure naming the field.
class Json {
 public:
  Json(ffi::json::Value value, std::string where) : value_(std::move(value)), where_(std::move(where)) {}

  bool Has(const char* key) const {
    auto object = value_.as<ffi::json::Object>();
    return object && object->count(ffi::String(key)) && (*object)[ffi::String(key)] != nullptr;
  }
  Json operator[](const char* key) const {
    auto object = value_.as<ffi::json::Object>();
    if (!object || !object->count(ffi::String(key))) Fail(MNV3_ERR_MANIFEST, "%s: no \"%s\"", where_.c_str(), key);
    return Json((*object)[ffi::String(key)], where_ + "." + key);
  }
  std::vector<Json> Items() const {
    auto array = value_.as<ffi::json::Array>();
    if (!array) Fail(MNV3_ERR_MANIFEST, "%s is not a list", where_.c_str());
    std::vector<Json> items;
    for (size_t i = 0; i < array->size(); ++i) items.emplace_back((*array)[i], where_ + "[" + std::to_string(i) + "]");
    return items;
  }
  std::string Str() const {
    auto text = value_.as<ffi::String>();
    if (!text) Fail(MNV3_ERR_MANIFEST, "%s is not a string", where_.c_str());
    return std::string(*text);
  }
  double Number() const {
    if (auto integer = value_.as<int64_t>()) return static_cast<double>(*integer);
    if (auto real = value_.as<double>()) return *real;
    Fail(MNV3_ERR_MANIFEST, "%s is not a number", where_.c_str());
  }

 private:
  ffi::json::Value value_;
  std::string where_;
};

TensorSpec ReadTensor(const Json& json) {
  TensorSpec spec;
  spec.name = json["name"].Str();
  spec.dtype = json["dtype"].Str();
  for (const Json& extent : json["shape"].Items()) {
    double value = extent.Number();
    if (value < 1) Fail(MNV3_ERR_MANIFEST, "tensor %s has a non-positive extent", spec.name.c_str());
    spec.shape.push_back(static_cast<int64_t>(value));
    spec.count *= static_cast<size_t>(value);
  }
  if (spec.dtype != "float32") Fail(MNV3_ERR_MANIFEST, "tensor %s is %s; this runtime takes float32", spec.name.c_str(), spec.dtype.c_str());
  return spec;
}

// The bundle's manifest: the *.json in the folder that says "mnv3compile_bundle": 1. When none
// does and a JSON file did not parse, that file is named (a truncated copy of the manifest).
Json FindManifest(const fs::path& folder, fs::path* found) {
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") candidates.push_back(entry.path());
  }
  std::sort(candidates.begin(), candidates.end());
  std::string unreadable;
  for (const fs::path& path : candidates) {
    ffi::String error;
    ffi::json::Value value = ffi::json::Parse(ReadFile(path, MNV3_ERR_NOT_FOUND), &error);
    if (!error.empty()) {
      if (unreadable.empty()) unreadable = path.string() + ": not valid JSON (" + std::string(error) + ")";
      continue;
    }
    Json json(value, path.filename().string());
    if (json.Has("mnv3compile_bundle") && json["mnv3compile_bundle"].Number() == kManifestVersion) {
      *found = path;
      return json;
    }
  }
  if (!unreadable.empty()) Fail(MNV3_ERR_MANIFEST, "%s", unreadable.c_str());
  Fail(MNV3_ERR_NOT_FOUND, "%s: no mnv3compile manifest (*.json) in this folder", folder.c_str());
}

#if defined(__aarch64__)
constexpr int kMachine = EM_AARCH64;
constexpr const char* kMachineName = "arm64";
#elif defined(__x86_64__)
constexpr int kMachine = EM_X86_64;
constexpr const char* kMachineName = "x86-64";
#else
constexpr int kMachine = -1;  // not checked
constexpr const char* kMachineName = "this CPU";
#endif

// A shared object dlopen can map without faulting: a truncated file would otherwise end in SIGBUS
// inside the loader, and a library for another CPU in a vague loader message.
// A file mapped read-only for as long as it is looked at: the library is hashed and its ELF headers
// checked in place (read into memory, a 22 MB fp32 library cost twice its size in heap at open).
class MappedFile {
 public:
  MappedFile(const fs::path& path, mnv3_status missing) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail(missing, "%s: cannot open", path.c_str());
    struct stat info;
    if (fstat(fd, &info) == 0 && info.st_size > 0) {
      size_ = static_cast<size_t>(info.st_size);
      void* mapped = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      data_ = mapped == MAP_FAILED ? nullptr : static_cast<const char*>(mapped);
    }
    ::close(fd);
    if (size_ && !data_) Fail(missing, "%s: cannot map it", path.c_str());
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

void CheckElf(const MappedFile& file, const fs::path& path) {
  const char* name = path.c_str();
  const char* bytes = file.data();
  if (file.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes, ELFMAG, SELFMAG) != 0) {
    Fail(MNV3_ERR_LOAD, "%s is not an ELF shared library", name);
  }
  Elf64_Ehdr header;
  std::memcpy(&header, bytes, sizeof(header));
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_type != ET_DYN) Fail(MNV3_ERR_LOAD, "%s is not a 64-bit shared library", name);
  if (kMachine >= 0 && header.e_machine != kMachine) {
    Fail(MNV3_ERR_LOAD, "%s was built for another CPU (ELF machine %d); this program runs on %s: rebuild the bundle for this target",
         name, header.e_machine, kMachineName);
  }
  uint64_t size = file.size();
  // Compared so that no sum can overflow: offsets come from the (possibly corrupt) file.
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phoff > size ||
      uint64_t(header.e_phnum) * sizeof(Elf64_Phdr) > size - header.e_phoff) {
    Fail(MNV3_ERR_LOAD, "%s is truncated or corrupt (program headers)", name);
  }
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    std::memcpy(&segment, bytes + header.e_phoff + i * sizeof(Elf64_Phdr), sizeof(segment));
    if (segment.p_type == PT_LOAD && (segment.p_offset > size || segment.p_filesz > size - segment.p_offset)) {
      Fail(MNV3_ERR_LOAD, "%s is truncated: %llu bytes, a segment ends at %llu", name, (unsigned long long)size,
           (unsigned long long)(segment.p_offset + segment.p_filesz));
    }
  }
}

}  // namespace

struct mnv3_model {
  std::vector<TensorSpec> inputs, outputs;
  std::vector<mnv3_tensor_info> input_infos, output_infos;
  std::vector<std::string> labels;
  std::optional<mnv3::Preprocess> preprocess;
  std::optional<ffi::Module> library, vm;  // no default constructor: set by Open
  std::optional<ffi::Function> main;
  std::vector<float> scratch;  // the preprocessed image of mnv3_run_rgb8
  mnv3_options options{0, MNV3_AFFINITY_BIG};
};

namespace {

std::vector<mnv3_tensor_info> Infos(const std::vector<TensorSpec>& specs) {
  std::vector<mnv3_tensor_info> infos;
  for (const TensorSpec& spec : specs) {
    infos.push_back({spec.name.c_str(), spec.dtype.c_str(), static_cast<int>(spec.shape.size()), spec.shape.data(), spec.count});
  }
  return infos;
}

void Open(mnv3_model* model, const char* bundle_dir) {
  if (bundle_dir == nullptr) Fail(MNV3_ERR_ARGUMENT, "bundle_dir is NULL");
  fs::path folder(bundle_dir);
  std::error_code error;
  if (!fs::is_directory(folder, error)) Fail(MNV3_ERR_NOT_FOUND, "%s: no such bundle folder", bundle_dir);
  fs::path manifest_path;
  const Json m = FindManifest(folder, &manifest_path);
  for (const Json& item : m["inputs"].Items()) model->inputs.push_back(ReadTensor(item));
  for (const Json& item : m["outputs"].Items()) model->outputs.push_back(ReadTensor(item));
  if (model->inputs.size() != 1) Fail(MNV3_ERR_MANIFEST, "%s: %zu inputs; this runtime takes one", manifest_path.c_str(), model->inputs.size());
  if (m.Has("preprocess")) {
    const Json p = m["preprocess"];
    mnv3::Preprocess spec;
    std::vector<Json> mean = p["mean"].Items(), std = p["std"].Items();
    if (mean.size() != 3 || std.size() != 3) Fail(MNV3_ERR_MANIFEST, "%s: preprocess mean and std need 3 values each", manifest_path.c_str());
    for (int c = 0; c < 3; ++c) {
      spec.mean[c] = static_cast<float>(mean[c].Number());
      spec.std[c] = static_cast<float>(std[c].Number());
    }
    spec.scale = static_cast<float>(p["scale"].Number());
    spec.bgr = p["channel_order"].Str() == "BGR";
    std::string resize = p["resize"].Str();
    if (resize == "center-crop") {
      spec.resize = mnv3::Resize::kCenterCrop;
    } else if (resize == "pad-right") {
      spec.resize = mnv3::Resize::kPadRight;
    } else {
      Fail(MNV3_ERR_MANIFEST, "%s: unknown resize \"%s\"", manifest_path.c_str(), resize.c_str());
    }
    model->preprocess = spec;
  }
  if (m.Has("labels")) {
    std::istringstream lines(ReadFile(folder / m["labels"].Str(), MNV3_ERR_NOT_FOUND));
    for (std::string line; std::getline(lines, line);) model->labels.push_back(line);
  }
  // The library must be the one the manifest describes: a stale or corrupted copy fails here,
  // not as a crash inside the runtime.
  std::string library_name = m["library"].Str();
  fs::path library_path = folder / library_name;
  std::string expected = m["sha256"][library_name.c_str()].Str();
  {
    MappedFile library_file(library_path, MNV3_ERR_NOT_FOUND);
    std::string actual = mnv3::Sha256Hex(library_file.data(), library_file.size());
    if (actual != expected) {
      Fail(MNV3_ERR_INTEGRITY, "%s: sha256 %.12s... differs from the manifest's %.12s... (rebuild the bundle or copy it again)",
           library_path.c_str(), actual.c_str(), expected.c_str());
    }
    CheckElf(library_file, library_path);
  }
  try {
    model->library = ffi::Module::LoadFromFile(library_path.string());
  } catch (const std::exception& exc) {
    Fail(MNV3_ERR_LOAD, "%s: the TVM runtime cannot load it: %s", library_path.c_str(), exc.what());
  }
  ffi::Optional<ffi::Function> load = (*model->library)->GetFunction("vm_load_executable");
  if (!load.has_value()) Fail(MNV3_ERR_LOAD, "%s is not a Relax VM executable", library_path.c_str());
  model->vm = load.value()().cast<ffi::Module>();
  (*model->vm)->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  model->main = (*model->vm)->GetFunction("main").value();
  model->input_infos = Infos(model->inputs);
  model->output_infos = Infos(model->outputs);
}

// Every output into `output` (sized by the caller to TotalOutputs), in manifest order.
void CopyOut(const ffi::Any& result, const mnv3_model* model, float* output) {
  std::vector<ffi::Tensor> tensors;
  if (auto tensor = result.as<ffi::Tensor>()) {
    tensors.push_back(*tensor);
  } else if (auto tuple = result.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *tuple) tensors.push_back(item.cast<ffi::Tensor>());
  } else {
    Fail(MNV3_ERR_RUN, "the model returned neither a tensor nor a tuple of tensors");
  }
  if (tensors.size() != model->outputs.size()) {
    Fail(MNV3_ERR_RUN, "the model returned %zu outputs; the manifest lists %zu", tensors.size(), model->outputs.size());
  }
  size_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    size_t count = model->outputs[i].count;
    size_t bytes = count * sizeof(float);
    const DLTensor& out = *tensors[i].GetDLTensorPtr();
    if (ffi::GetDataSize(out) != bytes || !ffi::IsContiguous(out) || out.device.device_type != kDLCPU) {
      Fail(MNV3_ERR_RUN, "output %s is not the contiguous float32 CPU tensor the manifest describes", model->outputs[i].name.c_str());
    }
    std::memcpy(output + offset, static_cast<const char*>(out.data) + out.byte_offset, bytes);
    offset += count;
  }
}

size_t TotalOutputs(const mnv3_model* model) {
  size_t total = 0;
  for (const TensorSpec& spec : model->outputs) total += spec.count;
  return total;
}

constexpr int kMaxThreads = 256;

void CheckOptions(const mnv3_options& options) {
  if (options.threads < 0 || options.threads > kMaxThreads) {
    Fail(MNV3_ERR_ARGUMENT, "threads %d: give 1 to %d (0: one per big core)", options.threads, kMaxThreads);
  }
  if (options.affinity < MNV3_AFFINITY_BIG || options.affinity > MNV3_AFFINITY_UNPINNED) {
    Fail(MNV3_ERR_ARGUMENT, "affinity %d: give MNV3_AFFINITY_BIG, _LITTLE, _ALL or _UNPINNED", static_cast<int>(options.affinity));
  }
}

// TVM keeps one thread pool per calling thread; what this thread's pool was configured for.
thread_local int configured_threads = -1;
thread_local int configured_affinity = -1;

// The calling thread's pool as `options` say (TVM's runtime.config_threadpool), unless it is so.
void ConfigurePool(const mnv3_options& options) {
  if (configured_threads == options.threads && configured_affinity == options.affinity) return;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  // TVM starts a thread's pool with TVM_NUM_THREADS workers (else half the cores on x86) and
  // never grows it: room for every core or what is asked first (idle workers sleep), unless the
  // app set the variable itself (then it is the cap: mnv3_threads says what runs). No more than
  // the cores: TVM pins no worker when its pool has more workers than cores. Read as it starts.
  // The value we set is also kept in MNV3COMPILE_TVM_NUM_THREADS (as mnv3compile/threads.py does):
  // a process started from one that ran a model inherits both and knows it is not the app's.
  static std::mutex environment;  // the variables are read as this thread's pool starts, in the call
  std::lock_guard<std::mutex> lock(environment);
  const char* room_now = std::getenv("TVM_NUM_THREADS");
  const char* ours = std::getenv("MNV3COMPILE_TVM_NUM_THREADS");
  if (room_now == nullptr || (ours != nullptr && std::strcmp(room_now, ours) == 0)) {
    std::string room = std::to_string(std::max(cores, static_cast<unsigned>(options.threads)));
    setenv("TVM_NUM_THREADS", room.c_str(), 1);
    setenv("MNV3COMPILE_TVM_NUM_THREADS", room.c_str(), 1);
  }
  // An idle worker yields its core this many times before it sleeps (TVM's 300000 spins for a
  // tenth of a second after each inference; between kernels the wait is microseconds).
  if (std::getenv("TVM_THREAD_POOL_SPIN_COUNT") == nullptr) setenv("TVM_THREAD_POOL_SPIN_COUNT", "2000", 1);
  setenv("TVM_BIND_THREADS", options.affinity == MNV3_AFFINITY_UNPINNED ? "0" : "1", 1);
  // TVM's AffinityMode: kBig (1) pins worker i to the i-th fastest core, kLittle (-1) to the
  // slowest first. "all" is kBig over every core: one worker per core, big ones first.
  static const int kModes[] = {1, -1, 1, 1};
  int threads = options.threads == 0 && options.affinity == MNV3_AFFINITY_ALL ? static_cast<int>(cores) : options.threads;
  ffi::Optional<ffi::Function> config = ffi::Function::GetGlobal("runtime.config_threadpool");
  if (!config.has_value()) Fail(MNV3_ERR_RUN, "this TVM runtime has no thread pool configuration");
  config.value()(kModes[options.affinity], threads);
  configured_threads = options.threads;
  configured_affinity = options.affinity;
}

int PoolThreads() {
  ffi::Optional<ffi::Function> count = ffi::Function::GetGlobal("runtime.NumThreads");
  return count.has_value() ? count.value()().cast<int>() : 1;
}

void Run(mnv3_model* model, const float* input, size_t input_count, float* output, size_t output_count) {
  if (model == nullptr || input == nullptr || output == nullptr) Fail(MNV3_ERR_ARGUMENT, "model, input and output must not be NULL");
  ConfigurePool(model->options);
  const TensorSpec& in = model->inputs[0];
  if (input_count != in.count) Fail(MNV3_ERR_ARGUMENT, "input has %zu floats; %s takes %zu", input_count, in.name.c_str(), in.count);
  if (output_count != TotalOutputs(model)) {
    Fail(MNV3_ERR_ARGUMENT, "output has room for %zu floats; the model writes %zu", output_count, TotalOutputs(model));
  }
  ffi::Tensor tensor = ffi::Tensor::FromNDAlloc(HostAlloc(), ffi::Shape(in.shape), DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
  std::memcpy(tensor.data_ptr(), input, in.count * sizeof(float));
  CopyOut((*model->main)(tensor), model, output);
}

void PreprocessInto(const mnv3_model* model, const uint8_t* rgb, int width, int height, int stride, float* input,
                    size_t input_count) {
  if (model == nullptr || rgb == nullptr || input == nullptr) Fail(MNV3_ERR_ARGUMENT, "model, rgb and input must not be NULL");
  if (!model->preprocess) {
    Fail(MNV3_ERR_NO_PREPROCESS, "this bundle has no preprocessing in its manifest (build it with --preprocess)");
  }
  if (width < 1 || height < 1 || stride < 3 * width) {
    Fail(MNV3_ERR_ARGUMENT, "image %dx%d with stride %d: width and height must be positive and stride >= 3 * width", width, height, stride);
  }
  const TensorSpec& in = model->inputs[0];
  if (in.shape.size() != 4 || in.shape[0] != 1 || in.shape[1] != 3) Fail(MNV3_ERR_ARGUMENT, "input %s is not 1x3xHxW", in.name.c_str());
  if (input_count != in.count) Fail(MNV3_ERR_ARGUMENT, "input has %zu floats; %s takes %zu", input_count, in.name.c_str(), in.count);
  mnv3::Image image{rgb, width, height, stride};
  mnv3::ToInput(image, *model->preprocess, static_cast<int>(in.shape[2]), static_cast<int>(in.shape[3]), input);
}

}  // namespace

extern "C" {

mnv3_model* mnv3_open(const char* bundle_dir, mnv3_error* err) { return mnv3_open_with(bundle_dir, nullptr, err); }

mnv3_model* mnv3_open_with(const char* bundle_dir, const mnv3_options* options, mnv3_error* err) {
  mnv3_model* model = nullptr;
  mnv3_status status = Guard(err, [&] {
    if (options != nullptr) CheckOptions(*options);
    model = new mnv3_model();
    if (options != nullptr) model->options = *options;
    Open(model, bundle_dir);
  });
  if (status != MNV3_OK) {
    delete model;
    return nullptr;
  }
  return model;
}

void mnv3_close(mnv3_model* model) {
  try {
    delete model;
  } catch (...) {  // a destructor of the runtime must not take the app down
  }
}

int mnv3_threads(mnv3_model* model) {
  if (model == nullptr) return 0;
  int threads = 0;
  Guard(nullptr, [&] {
    ConfigurePool(model->options);
    threads = PoolThreads();
  });
  return threads;
}

size_t mnv3_num_inputs(const mnv3_model* model) { return model ? model->inputs.size() : 0; }
size_t mnv3_num_outputs(const mnv3_model* model) { return model ? model->outputs.size() : 0; }
size_t mnv3_output_count(const mnv3_model* model) { return model ? TotalOutputs(model) : 0; }

static mnv3_status Info(const std::vector<mnv3_tensor_info>* infos, size_t index, mnv3_tensor_info* info, mnv3_error* err) {
  return Guard(err, [&] {
    if (infos == nullptr || info == nullptr) Fail(MNV3_ERR_ARGUMENT, "model and info must not be NULL");
    if (index >= infos->size()) Fail(MNV3_ERR_ARGUMENT, "index %zu: the model has %zu", index, infos->size());
    *info = (*infos)[index];
  });
}

mnv3_status mnv3_input_info(const mnv3_model* model, size_t index, mnv3_tensor_info* info, mnv3_error* err) {
  return Info(model ? &model->input_infos : nullptr, index, info, err);
}

mnv3_status mnv3_output_info(const mnv3_model* model, size_t index, mnv3_tensor_info* info, mnv3_error* err) {
  return Info(model ? &model->output_infos : nullptr, index, info, err);
}

mnv3_status mnv3_run_f32(mnv3_model* model, const float* input, size_t input_count, float* output, size_t output_count,
                         mnv3_error* err) {
  return Guard(err, [&] { Run(model, input, input_count, output, output_count); });
}

mnv3_status mnv3_preprocess_rgb8(const mnv3_model* model, const uint8_t* rgb, int width, int height, int stride,
                                 float* input, size_t input_count, mnv3_error* err) {
  return Guard(err, [&] { PreprocessInto(model, rgb, width, height, stride, input, input_count); });
}

mnv3_status mnv3_run_rgb8(mnv3_model* model, const uint8_t* rgb, int width, int height, int stride, float* output,
                          size_t output_count, mnv3_error* err) {
  return Guard(err, [&] {
    if (model == nullptr) Fail(MNV3_ERR_ARGUMENT, "model must not be NULL");
    model->scratch.resize(model->inputs[0].count);
    PreprocessInto(model, rgb, width, height, stride, model->scratch.data(), model->scratch.size());
    Run(model, model->scratch.data(), model->scratch.size(), output, output_count);
  });
}

const char* mnv3_label(const mnv3_model* model, size_t index) {
  if (model == nullptr || index >= model->labels.size()) return nullptr;
  return model->labels[index].c_str();
}

const char* mnv3_status_name(mnv3_status status) {
  switch (status) {
    case MNV3_OK: return "MNV3_OK";
    case MNV3_ERR_ARGUMENT: return "MNV3_ERR_ARGUMENT";
    case MNV3_ERR_NOT_FOUND: return "MNV3_ERR_NOT_FOUND";
    case MNV3_ERR_MANIFEST: return "MNV3_ERR_MANIFEST";
    case MNV3_ERR_INTEGRITY: return "MNV3_ERR_INTEGRITY";
    case MNV3_ERR_LOAD: return "MNV3_ERR_LOAD";
    case MNV3_ERR_RUN: return "MNV3_ERR_RUN";
    case MNV3_ERR_NO_PREPROCESS: return "MNV3_ERR_NO_PREPROCESS";
    case MNV3_ERR_MEMORY: return "MNV3_ERR_MEMORY";
  }
  return "MNV3_ERR_UNKNOWN";
}

}  // extern "C"
