// Runtime dispatch of the kernel to the widest instruction set this CPU has.
#include "kernel.hpp"

#include <cstdlib>
#include <new>
#include <string_view>

namespace rnnext {

// Each calling thread keeps two scratch buffers, grown as needed and reused
// by its later calls, so that a step does not pay for fresh pages. Calls in
// different threads never share them.
void* scratch_or_null(std::size_t bytes, int slot) noexcept {
  struct Buffer {
    void* p = nullptr;
    std::size_t size = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer bufs[2];
  Buffer& buf = bufs[slot];
  if (bytes > buf.size) {
    std::size_t size = (bytes + 4095) / 4096 * 4096;
    if (size < buf.size * 3 / 2) size = (buf.size * 3 / 2 + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(64, size);
    if (!p) return nullptr;
    std::free(buf.p);
    buf.p = p, buf.size = size;
  }
  return buf.p;
}

void* scratch(std::size_t bytes) {
  void* p = scratch_or_null(bytes, 0);
  if (!p) throw std::bad_alloc();
  return p;
}

#define RNNEXT_DECLARE(ns)                  \
  namespace ns {                            \
  Outcome run_f32(const Job<float>& job);   \
  Outcome run_f64(const Job<double>& job);  \
  }
RNNEXT_DECLARE(avx512)
RNNEXT_DECLARE(avx2)
RNNEXT_DECLARE(baseline)

namespace {

enum class Isa { avx512, avx2, baseline };

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return Isa::avx2;
  return Isa::baseline;
}

// RNNEXT_ISA=avx2 or baseline forces a narrower kernel (for testing).
Isa chosen() {
  static const Isa isa = [] {
    Isa best = detect();
    const char* want = std::getenv("RNNEXT_ISA");
    if (!want) return best;
    std::string_view w(want);
    if (w == "baseline") return Isa::baseline;
    if (w == "avx2" && best != Isa::baseline) return Isa::avx2;
    return best;
  }();
  return isa;
}

}  // namespace

Outcome run(const Job<float>& job) {
  switch (chosen()) {
    case Isa::avx512: return avx512::run_f32(job);
    case Isa::avx2: return avx2::run_f32(job);
    default: return baseline::run_f32(job);
  }
}

Outcome run(const Job<double>& job) {
  switch (chosen()) {
    case Isa::avx512: return avx512::run_f64(job);
    case Isa::avx2: return avx2::run_f64(job);
    default: return baseline::run_f64(job);
  }
}

const char* isa() {
  switch (chosen()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace rnnext
