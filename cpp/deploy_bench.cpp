// deploy_bench: load the deployed ResNet-18 from C++ (libtorch only, no libpython) and time batch-1 calls.
//
//   deploy_bench KIND ARTIFACT INPUT THREADS WARMUP CALLS PREFIX [DEVICE]
//
//   KIND      torchscript (a torch.jit.save file) | aoti (a torch._inductor.aoti_compile_and_package .pt2)
//   INPUT     the input tensor, float32, in the lab's tensor file format (below)
//   THREADS   at::set_num_threads, 1 to 1024
//   WARMUP    untimed calls first; CALLS timed calls after them (CALLS >= 1)
//   PREFIX    writes PREFIX.ns (each timed call's nanoseconds, one per line, steady_clock) and
//             PREFIX.logits (the first call's output, warm-up or not, float32, same file format)
//   DEVICE    cpu (default) | cuda; on cuda the device is synchronized before each clock read
//
// The tensor file format (lab/engine/cpp.py writes and reads it): the 8 bytes "LABF32\0\1", an int64 ndim,
// ndim int64 sizes, then the values as float32, row-major; every number little-endian.
// Exit status: 0 done, 2 bad arguments, 1 anything else; the reason is one line on stderr.
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr char kMagic[8] = {'L', 'A', 'B', 'F', '3', '2', '\0', '\1'};

at::Tensor read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open the input file " + path);
  char magic[8];
  int64_t ndim = 0;
  in.read(magic, 8).read(reinterpret_cast<char*>(&ndim), 8);
  if (!in || std::memcmp(magic, kMagic, 8) != 0 || ndim < 0 || ndim > 8)
    throw std::runtime_error(path + " is not a tensor file (LABF32 header)");
  std::vector<int64_t> sizes(ndim);
  in.read(reinterpret_cast<char*>(sizes.data()), 8 * ndim);
  auto x = torch::empty(sizes, torch::kFloat32);
  in.read(reinterpret_cast<char*>(x.data_ptr<float>()), 4 * x.numel());
  if (!in || in.peek() != std::char_traits<char>::eof())
    throw std::runtime_error(path + ": the values do not match the header's sizes");
  return x;
}

void write_tensor(const std::string& path, const at::Tensor& t) {
  auto x = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  int64_t ndim = x.dim();
  std::ofstream out(path, std::ios::binary);
  out.write(kMagic, 8).write(reinterpret_cast<const char*>(&ndim), 8);
  out.write(reinterpret_cast<const char*>(x.sizes().data()), 8 * ndim);
  out.write(reinterpret_cast<const char*>(x.data_ptr<float>()), 4 * x.numel());
  if (!out) throw std::runtime_error("cannot write " + path);
}

// A whole decimal integer in [least, most]: "4x", "", "1e3" or one out of range (an int's overflow) is refused.
int64_t integer(const char* arg, const char* name, int64_t least, int64_t most = INT64_MAX) {
  int64_t v = 0;
  const auto end = arg + std::strlen(arg);
  const auto [ptr, ec] = std::from_chars(arg, end, v);
  if (ec != std::errc() || ptr != end || v < least || v > most)
    throw std::invalid_argument(std::string(name) + " must be an integer " +
                                (most == INT64_MAX ? ">= " + std::to_string(least)
                                                   : "from " + std::to_string(least) + " to " + std::to_string(most)) +
                                ", not '" + arg + "'");
  return v;
}

std::string one_line(std::string s) {
  for (auto& c : s) if (c == '\n' || c == '\r') c = ' ';
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 8 || argc > 9) {
    std::cerr << "usage: " << argv[0] << " torchscript|aoti ARTIFACT INPUT THREADS WARMUP CALLS PREFIX [cpu|cuda]\n";
    return 2;
  }
  const std::string kind = argv[1], artifact = argv[2], input = argv[3], prefix = argv[7];
  const std::string device_name = argc == 9 ? argv[8] : "cpu";
  int64_t threads, warmup, calls;
  try {
    threads = integer(argv[4], "THREADS", 1, 1024);  // set_num_threads takes an int
    warmup = integer(argv[5], "WARMUP", 0);
    calls = integer(argv[6], "CALLS", 1);
    if (kind != "torchscript" && kind != "aoti") throw std::invalid_argument("KIND must be torchscript or aoti");
    if (device_name != "cpu" && device_name != "cuda") throw std::invalid_argument("DEVICE must be cpu or cuda");
  } catch (const std::exception& e) {
    std::cerr << "deploy_bench: bad arguments: " << e.what() << "\n";
    return 2;
  }

  try {
    const bool cuda = device_name == "cuda";
    if (cuda && !torch::cuda::is_available()) throw std::runtime_error("cuda asked for but not available");
    const torch::Device device(cuda ? torch::kCUDA : torch::kCPU);
    auto sync = [cuda] { if (cuda) torch::cuda::synchronize(); };
    at::set_num_threads(static_cast<int>(threads));
    c10::InferenceMode guard;  // no autograd records, as torch.inference_mode in Python

    std::function<at::Tensor(const at::Tensor&)> forward;
    torch::jit::Module module;
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;
    if (kind == "torchscript") {
      module = torch::jit::load(artifact, device);
      module.eval();
      forward = [&module](const at::Tensor& x) { return module.forward({x}).toTensor(); };
    } else {  // the package's own metadata says which device it was compiled for
      package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(artifact);
      forward = [&package](const at::Tensor& x) { return package->run({x}).at(0); };
    }
    const auto x = read_tensor(input).to(device);

    at::Tensor logits;
    std::vector<int64_t> ns;
    for (int64_t i = 0; i < warmup + calls; ++i) {  // the warm-ups, then the timed calls
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      auto y = forward(x);
      sync();
      const auto t1 = std::chrono::steady_clock::now();
      if (i == 0) logits = y;
      if (i >= warmup) ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
    write_tensor(prefix + ".logits", logits);
    std::ofstream out(prefix + ".ns");
    for (auto n : ns) out << n << "\n";
    if (!out.flush()) throw std::runtime_error("cannot write " + prefix + ".ns");
  } catch (const c10::Error& e) {  // without the C++ backtrace
    std::cerr << "deploy_bench: " << one_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "deploy_bench: " << one_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
