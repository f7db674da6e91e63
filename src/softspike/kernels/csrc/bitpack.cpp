// Saved spikes as bits: 8 binary floats per byte, and back.

#include "softspike.h"

using namespace ss;

namespace {

// pack_bytes in chunks, stopping at the first chunk that is not binary.
bool pack_range(const float* x, uint8_t* out, int64_t first, int64_t last) {
  const int64_t chunk = 4096;
  for (int64_t c = first; c < last; c += chunk)
    if (!pack_bytes(x, out, c, c + chunk < last ? c + chunk : last)) return false;
  return true;
}

}  // namespace

extern "C" {

// Packs n (a multiple of 8) floats that are all 0 or 1 into n / 8 bytes; returns 0 if any is not.
int ss_pack_bits(const float* x, uint8_t* out, int64_t n, int nthreads) {
  if (n < (int64_t{1} << 19)) nthreads = 1;
  std::vector<int> ok(nthreads > 0 ? nthreads : 1, 1);
  par_for(n / 8, nthreads, [&](int slot, int64_t first, int64_t last) { ok[slot] = pack_range(x, out, first, last); });
  for (int v : ok)
    if (!v) return 0;
  return 1;
}

void ss_unpack_bits(const uint8_t* bytes, float* y, int64_t n, int nthreads) {
  if (n < (int64_t{1} << 19)) nthreads = 1;
  par_for(n / 8, nthreads, [&](int, int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const uint32_t b = bytes[i];
      float* v = y + 8 * i;
      for (int k = 0; k < 8; ++k) v[k] = static_cast<float>((b >> k) & 1u);
    }
  });
}


}  // extern "C"
