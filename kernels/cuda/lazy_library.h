// The CUDA libraries the backend opens on first use instead of linking: cuBLASLt (matmul.cu) and
// cuDNN (attention_cudnn.cpp; cuDNN's frontend then opens NVRTC itself). Linked, they are mapped
// and initialised by every run of a CUDA build, a CPU run included, where cuBLASLt alone keeps
// about 200 MiB resident (bench/results/2026-12-07-cpu-run-cuda-build-memory.md). Each user keeps
// its library in a function-local static made on its first call, so only a run that reaches that
// CUDA op opens it; once open, the library and the calls into it are the ones linking would give.
#pragma once

#include <dlfcn.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace nexus::cuda {

// The library `soname` (e.g. "libcublasLt.so.13"), opened for the rest of the process with global
// binding, as a linked library has; a failure throws naming the library and the loader's reason.
struct DynamicLibrary {
  std::string soname;
  void* handle = nullptr;

  explicit DynamicLibrary(std::string name)
      : soname(std::move(name)), handle(dlopen(soname.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    if (!handle) throw std::runtime_error("runtime.device = cuda needs " + soname + ": " + dlerror());
  }

  // The function `name` as a pointer of type Fn (the type of its declaration in the library's
  // header, so calls through it are checked against that); a missing symbol throws.
  template <typename Fn>
  Fn function(const char* name) const {
    dlerror();
    void* address = dlsym(handle, name);
    if (!address) {
      const char* why = dlerror();
      throw std::runtime_error("runtime.device = cuda: " + soname + " has no symbol " + name + ": " +
                               (why ? why : "its address is null"));
    }
    return reinterpret_cast<Fn>(address);
  }
};

}  // namespace nexus::cuda

// A member of a table of entry points: the C function `fn` of `library` (a DynamicLibrary member
// declared before it) as a pointer of fn's own type, under fn's own name.
#define NEXUS_LIBRARY_FUNCTION(library, fn) decltype(&::fn) fn = (library).function<decltype(&::fn)>(#fn)
