// Shared by every kernel source of the softspike CPU library (one shared library built from all
// the .cpp files here by softspike/kernels/native.py; no torch headers, so it builds in seconds).
// Each op family has its own source: scan.cpp (the LIF scans), spike_linear.cpp (the spike-input
// linear's gather/scatter), spike_conv.cpp (the spike-input convolution), sampling.cpp (the Poisson
// generator), bitpack.cpp (saved-spike bits), bn_lif.cpp (batch norm fused into the scan), spike_pool.cpp
// (max-pooling with byte indices), library.cpp (the ABI version). The torch.library operators in softspike/kernels/*.py call them
// through ctypes and check the arguments first.
//
// Threads come from OpenMP: loaded after torch, the library binds to torch's own libgomp (same
// soname), so the kernels share torch's thread pool instead of fighting its spinning workers.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace ss {

// Runs fn(slot, first, last) over [0, n) split in nthreads contiguous ranges (slot = 0..nthreads-1).
template <class F>
inline void par_for(int64_t n, int nthreads, F fn) {
  if (nthreads > n) nthreads = static_cast<int>(n);
  if (nthreads <= 1) {
    fn(0, int64_t{0}, n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
  {
    const int r = omp_get_thread_num(), nt = omp_get_num_threads();
    fn(r, n * r / nt, n * (r + 1) / nt);
  }
#else
  for (int r = 0; r < nthreads; ++r) fn(r, n * r / nthreads, n * (r + 1) / nthreads);
#endif
}

// The kernels' numbering of charges and gates. The one source is softspike/kernels/scan_native.py
// (DYNAMICS, GATES, by name); tests/test_kernel_tables.py checks these enums against it.
enum Dyn { IF = 0, LIF = 1, PLIF = 2 };
enum Gate { SIGMOID = 0, ATAN = 1, PIECEWISE_QUADRATIC = 2, FAST_SIGMOID = 3, ERF = 4, TRIANGLE = 5,
            STRAIGHT_THROUGH = 6 };

// Run the statements with the compile-time constant NAME set to the number in `value`, one case per
// enum entry (as ATen's AT_DISPATCH macros do for dtypes); the last entry takes any other value.
#define SS_DISPATCH_DYN(value, NAME, ...)                  \
  switch (value) {                                         \
    case IF: { constexpr int NAME = IF; __VA_ARGS__; break; }   \
    case LIF: { constexpr int NAME = LIF; __VA_ARGS__; break; } \
    default: { constexpr int NAME = PLIF; __VA_ARGS__; break; } \
  }

#define SS_DISPATCH_GATE(value, NAME, ...)                                                   \
  switch (value) {                                                                           \
    case SIGMOID: { constexpr int NAME = SIGMOID; __VA_ARGS__; break; }                      \
    case ATAN: { constexpr int NAME = ATAN; __VA_ARGS__; break; }                            \
    case PIECEWISE_QUADRATIC: { constexpr int NAME = PIECEWISE_QUADRATIC; __VA_ARGS__; break; } \
    case FAST_SIGMOID: { constexpr int NAME = FAST_SIGMOID; __VA_ARGS__; break; }            \
    case ERF: { constexpr int NAME = ERF; __VA_ARGS__; break; }                              \
    case TRIANGLE: { constexpr int NAME = TRIANGLE; __VA_ARGS__; break; }                    \
    default: { constexpr int NAME = STRAIGHT_THROUGH; __VA_ARGS__; break; }                  \
  }

// Packs 8 floats per byte into out[first, last); false if a value is not 0 or 1.
inline bool pack_bytes(const float* __restrict x, uint8_t* __restrict out, int64_t first, int64_t last) {
  int bad = 0;
  for (int64_t j = first; j < last; ++j) {
    const float* v = x + 8 * j;
    uint32_t b = 0;
    for (int k = 0; k < 8; ++k) {
      b |= static_cast<uint32_t>(v[k] != 0.0f) << k;
      bad |= (v[k] != 0.0f) & (v[k] != 1.0f);
    }
    out[j] = static_cast<uint8_t>(b);
  }
  return bad == 0;
}

}  // namespace ss
