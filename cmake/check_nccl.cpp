// Configure-time probe (cmake/IrisDist.cmake): is ProcessGroupNCCL usable from this LibTorch?
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

int main(int argc, char**) {
  if (argc > 5) {
    c10d::TCPStoreOptions store_options;
    auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, 0, 1, options);
    std::vector<at::Tensor> tensors;
    group->allreduce(tensors)->wait();
  }
  return 0;
}
