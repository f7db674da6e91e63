// The Poisson encoder's sampler: a counter-based hash, so a seed gives the same spikes whatever
// the thread split (and on any device that computes the same hash).

#include "softspike.h"

using namespace ss;

namespace {

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// Rows [first, last) of the Poisson sample (see ss_poisson).
void poisson_rows(const float* x, float* out, int64_t M, int64_t first, int64_t last, uint32_t s0, uint32_t s1) {
  for (int64_t t = first; t < last; ++t) {
    float* o = out + t * M;
    const uint64_t base = static_cast<uint64_t>(t) * static_cast<uint64_t>(M);
    const uint32_t hi = fmix32(static_cast<uint32_t>(base >> 32) ^ s1);
    const uint32_t lo = static_cast<uint32_t>(base);
    for (int64_t i = 0; i < M; ++i) {
      // A counter-based hash (two murmur3 finalizer rounds, seeded): stateless, so any split
      // over threads gives the same sample. 24 bits, as torch.rand's float32.
      uint32_t h = fmix32((lo + static_cast<uint32_t>(i)) ^ s0);
      h = fmix32(h ^ hi);
      float u = static_cast<float>(h >> 8) * 5.9604644775390625e-8f;
      o[i] = u < x[i] ? 1.0f : 0.0f;
    }
  }
}

}  // namespace

extern "C" {

// out[t, i] = 1 if u(t, i) < x[i] else 0, u uniform on the 24-bit grid of [0, 1).
void ss_poisson(const float* x, float* out, int64_t T, int64_t M, uint32_t s0, uint32_t s1, int nthreads) {
  if (T <= 0 || M <= 0) return;
  par_for(T, nthreads, [&](int, int64_t first, int64_t last) { poisson_rows(x, out, M, first, last, s0, s1); });
}

}  // extern "C"
