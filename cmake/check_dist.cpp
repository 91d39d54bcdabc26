// Configure-time probe (cmake/IrisDist.cmake): do LibTorch's c10d headers compile here and does
// the library export what src/dist uses?
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

int main(int argc, char**) {
  if (argc > 5) {
    c10d::TCPStoreOptions store_options;
    auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(1000));
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface("lo"));
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, 0, 1, options);
    std::vector<at::Tensor> tensors;
    group->allreduce(tensors)->wait();
    group->broadcast(tensors)->wait();
    group->barrier()->wait();
  }
  return 0;
}
