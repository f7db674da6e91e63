// Convolution of binary (spike) input: forward and weight gradient as sums over the inputs that fired.
//
// Called through ctypes by softspike/kernels/spike_conv.py, which checks the arguments. The input
// X [N, C, H, W] (float32, contiguous or channels-last) is first packed to bits by position: for each
// image and pixel (iy, ix), CW = ceil(C / 64) words whose bit c says that channel c fired. With the
// geometry g = {N, C, H, W, O, G, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, cl} (cl: X is channels-last),
// output (oy, ox) sees input (oy·sh − ph + ky·dh, ox·sw − pw + kx·dw) through tap (ky, kx), so
//
//     forward   Y[n, oy, ox, group] = b + Σ over taps, fired c of the group: W[group, ky, kx, c mod Cg, :]
//     wgrad     dW[group, ky, kx, c mod Cg, :] += dY[n, oy, ox, group]   for every fired (n, tap, c)
//
// with W repacked as [G, KH, KW, C/G, O/G] and Y, dY channels-last, so each term is one contiguous row
// of the group's O/G outputs. The forward accumulates an output pixel in a small buffer (L1) and
// writes it once; the images are split between threads. The weight gradient splits the input
// channels between threads (a thread owns their rows of dW). Sums run in a fixed order (image,
// pixel, tap, channel ascending), whatever the thread count.

#include "softspike.h"

using namespace ss;

namespace {

struct Geom {
  int64_t N, C, H, W, O, G, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, cl;
  int64_t cw() const { return (C + 63) / 64; }  // words per pixel
};

Geom geom_of(const int64_t* g) {
  return Geom{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15], g[16]};
}

// One word of bits from up to 64 floats; sets *bad if any value is neither 0 nor 1 (NaN included).
inline uint64_t word_of(const float* x, int64_t n, bool* bad) {
  uint64_t word = 0;
#if defined(__AVX512F__)
  if (n == 64) {
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    for (int q = 0; q < 4; ++q) {
      const __m512 v = _mm512_loadu_ps(x + 16 * q);
      const __mmask16 nz = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
      const __mmask16 is_one = _mm512_cmp_ps_mask(v, one, _CMP_EQ_OQ);
      if (nz & ~is_one) *bad = true;
      word |= static_cast<uint64_t>(nz) << (16 * q);
    }
    return word;
  }
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (v != 0.0f && v != 1.0f) *bad = true;
    if (v != 0.0f) word |= uint64_t{1} << i;
  }
  return word;
}

// Calls fn(i) for every set bit i in [begin, end) of a row of words, in ascending order.
template <class F>
inline void each_bit(const uint64_t* row, int64_t begin, int64_t end, F fn) {
  if (begin >= end) return;
  for (int64_t j = begin / 64; j * 64 < end; ++j) {
    uint64_t w = row[j];
    const int64_t base = j * 64;
    if (base < begin) w &= ~uint64_t{0} << (begin - base);
    if (end - base < 64) w &= (uint64_t{1} << (end - base)) - 1;
    while (w) {
      fn(base + __builtin_ctzll(w));
      w &= w - 1;
    }
  }
}

inline void add_row(float* __restrict dst, const float* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

#if defined(__AVX512F__)
// One output pixel's group of 16·V outputs summed in registers (the generic loop below keeps its
// sums in an L1 buffer, where each row's add waits on the previous row's store).
template <int V>
void pixel_sum(const Geom& q, const uint64_t* bits_n, int64_t oy, int64_t ox, int64_t grp, const float* wt,
               const float* bias, float* out) {
  const int64_t CW = q.cw(), Cg = q.C / q.G, Og = q.O / q.G;
  __m512 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = bias ? _mm512_loadu_ps(bias + grp * Og + 16 * v) : _mm512_setzero_ps();
  for (int64_t ky = 0; ky < q.KH; ++ky) {
    const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
    if (iy < 0 || iy >= q.H) continue;
    for (int64_t kx = 0; kx < q.KW; ++kx) {
      const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
      if (ix < 0 || ix >= q.W) continue;
      const uint64_t* wp = bits_n + (iy * q.W + ix) * CW;
      const float* wrow = wt + ((grp * q.KH + ky) * q.KW + kx) * Cg * Og - grp * Cg * Og;
      each_bit(wp, grp * Cg, (grp + 1) * Cg, [&](int64_t c) {
        const float* r = wrow + c * Og;
        for (int v = 0; v < V; ++v) acc[v] = _mm512_add_ps(acc[v], _mm512_loadu_ps(r + 16 * v));
      });
    }
  }
  for (int v = 0; v < V; ++v) _mm512_storeu_ps(out + 16 * v, acc[v]);
}

// The output widths Og = 16·V the AVX-512 paths are instantiated for (V vectors held in registers);
// another width takes the generic loop.
#define SS_TILE_CASES(FN) \
  case 16: return FN<1>;  \
  case 32: return FN<2>;  \
  case 48: return FN<3>;  \
  case 64: return FN<4>;  \
  case 96: return FN<6>;  \
  case 128: return FN<8>; \
  case 192: return FN<12>; \
  case 256: return FN<16>;

using PixelFn = void (*)(const Geom&, const uint64_t*, int64_t, int64_t, int64_t, const float*, const float*, float*);

PixelFn pixel_fn(int64_t Og) {
  switch (Og) {
    SS_TILE_CASES(pixel_sum)
    default: return nullptr;
  }
}

// The weight gradient's terms of one output pixel and group, dY's row of 16·V outputs held in registers.
template <int V>
void pixel_wgrad(const Geom& q, const uint64_t* bits_n, int64_t oy, int64_t ox, int64_t grp, const float* gp,
                 int64_t first, int64_t last, float* gw) {
  const int64_t CW = q.cw(), Cg = q.C / q.G, Og = q.O / q.G;
  const int64_t lo = std::max(first, grp * Cg), hi = std::min(last, (grp + 1) * Cg);
  if (lo >= hi) return;
  __m512 row[V];
  for (int v = 0; v < V; ++v) row[v] = _mm512_loadu_ps(gp + 16 * v);
  for (int64_t ky = 0; ky < q.KH; ++ky) {
    const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
    if (iy < 0 || iy >= q.H) continue;
    for (int64_t kx = 0; kx < q.KW; ++kx) {
      const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
      if (ix < 0 || ix >= q.W) continue;
      float* base = gw + (((grp * q.KH + ky) * q.KW + kx) * Cg - grp * Cg) * Og;
      each_bit(bits_n + (iy * q.W + ix) * CW, lo, hi, [&](int64_t c) {
        float* d = base + c * Og;
        for (int v = 0; v < V; ++v) _mm512_storeu_ps(d + 16 * v, _mm512_add_ps(_mm512_loadu_ps(d + 16 * v), row[v]));
      });
    }
  }
}

using WgradFn = void (*)(const Geom&, const uint64_t*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                         float*);

WgradFn wgrad_fn(int64_t Og) {
  switch (Og) {
    SS_TILE_CASES(pixel_wgrad)
    default: return nullptr;
  }
}
#endif

}  // namespace

extern "C" {

// Packs X into bits [N, H, W, CW]; returns the number of ones, or -1 if X is not all 0/1.
int64_t ss_spike_conv_pack(const float* x, const int64_t* g, uint64_t* bits, int nthreads) {
  const Geom q = geom_of(g);
  const int64_t HW = q.H * q.W, CW = q.cw();
  std::vector<int64_t> ones(std::max(nthreads, 1), 0);
  std::vector<char> bad(std::max(nthreads, 1), 0);
  par_for(q.N, nthreads, [&](int slot, int64_t first, int64_t last) {
    bool b = false;
    int64_t count = 0;
    for (int64_t n = first; n < last; ++n) {
      const float* xn = x + n * q.C * HW;
      uint64_t* wn = bits + n * HW * CW;
      if (q.cl) {  // a pixel's channels are consecutive floats
        for (int64_t p = 0; p < HW; ++p)
          for (int64_t j = 0; j < CW; ++j) wn[p * CW + j] = word_of(xn + p * q.C + j * 64, std::min<int64_t>(64, q.C - j * 64), &b);
      } else {  // channel planes: set bit c of each pixel's word from plane c
        std::memset(wn, 0, sizeof(uint64_t) * HW * CW);
        for (int64_t c = 0; c < q.C; ++c) {
          const float* plane = xn + c * HW;
          uint64_t* w = wn + c / 64;
          const int sh = static_cast<int>(c % 64);
          bool planebad = false;
          int64_t p = 0;
#if defined(__AVX512F__)
          if (CW == 1) {  // eight pixels at a time: a masked OR of bit c into their words
            const __m512i bit = _mm512_set1_epi64(static_cast<long long>(uint64_t{1} << sh));
            const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
            for (; p + 8 <= HW; p += 8) {
              const __m256 v = _mm256_loadu_ps(plane + p);
              const __mmask8 nz = _mm256_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
              planebad |= (nz & ~_mm256_cmp_ps_mask(v, one, _CMP_EQ_OQ)) != 0;
              __m512i cur = _mm512_loadu_si512(w + p);
              _mm512_storeu_si512(w + p, _mm512_mask_or_epi64(cur, nz, cur, bit));
            }
          }
#endif
          for (; p < HW; ++p) {
            const float v = plane[p];
            planebad |= (v != 0.0f) & (v != 1.0f);
            w[p * CW] |= static_cast<uint64_t>(v != 0.0f) << sh;
          }
          b |= planebad;
        }
      }
      for (int64_t j = 0; j < HW * CW; ++j) count += __builtin_popcountll(wn[j]);
    }
    ones[slot] = count;
    bad[slot] = b;
  });
  int64_t total = 0;
  for (size_t r = 0; r < ones.size(); ++r) {
    if (bad[r]) return -1;
    total += ones[r];
  }
  return total;
}

// Y [N, OH, OW, O] from the bits; wt is [G, KH, KW, C/G, O/G], bias [O] or null.
void ss_spike_conv_forward(const uint64_t* bits, const int64_t* g, const float* wt, const float* bias, float* y,
                           int nthreads) {
  const Geom q = geom_of(g);
  const int64_t CW = q.cw(), Cg = q.C / q.G, Og = q.O / q.G;
  constexpr int64_t kChunk = 256;  // outputs accumulated at a time
#if defined(__AVX512F__)
  if (PixelFn fn = pixel_fn(Og)) {
    par_for(q.N * q.OH, nthreads, [&](int, int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const uint64_t* bits_n = bits + (r / q.OH) * q.H * q.W * CW;
        for (int64_t ox = 0; ox < q.OW; ++ox)
          for (int64_t grp = 0; grp < q.G; ++grp)
            fn(q, bits_n, r % q.OH, ox, grp, wt, bias, y + (r * q.OW + ox) * q.O + grp * Og);
      }
    });
    return;
  }
#endif
  par_for(q.N * q.OH, nthreads, [&](int, int64_t first, int64_t last) {
    float acc[kChunk];
    for (int64_t r = first; r < last; ++r) {
      const int64_t n = r / q.OH, oy = r % q.OH;
      for (int64_t ox = 0; ox < q.OW; ++ox) {
        float* yp = y + (r * q.OW + ox) * q.O;
        for (int64_t grp = 0; grp < q.G; ++grp) {
          for (int64_t o0 = 0; o0 < Og; o0 += kChunk) {
            const int64_t len = std::min(kChunk, Og - o0);
            for (int64_t k = 0; k < len; ++k) acc[k] = bias ? bias[grp * Og + o0 + k] : 0.0f;
            for (int64_t ky = 0; ky < q.KH; ++ky) {
              const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
              if (iy < 0 || iy >= q.H) continue;
              for (int64_t kx = 0; kx < q.KW; ++kx) {
                const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
                if (ix < 0 || ix >= q.W) continue;
                const uint64_t* wp = bits + ((n * q.H + iy) * q.W + ix) * CW;
                const float* wrow = wt + ((grp * q.KH + ky) * q.KW + kx) * Cg * Og + o0;
                each_bit(wp, grp * Cg, (grp + 1) * Cg, [&](int64_t c) { add_row(acc, wrow + (c - grp * Cg) * Og, len); });
              }
            }
            std::memcpy(yp + grp * Og + o0, acc, sizeof(float) * len);
          }
        }
      }
    }
  });
}

// dW [G, KH, KW, C/G, O/G] from the bits and dY [N, OH, OW, O].
void ss_spike_conv_wgrad(const uint64_t* bits, const int64_t* g, const float* gy, float* gw, int nthreads) {
  const Geom q = geom_of(g);
  const int64_t CW = q.cw(), Cg = q.C / q.G, Og = q.O / q.G;
  std::memset(gw, 0, sizeof(float) * q.KH * q.KW * q.C * Og);
  // A thread owns the input channels [first, last): their rows of dW are its alone.
#if defined(__AVX512F__)
  if (WgradFn fn = wgrad_fn(Og)) {
    par_for(q.C, nthreads, [&](int, int64_t first, int64_t last) {
      for (int64_t r = 0; r < q.N * q.OH; ++r) {
        const uint64_t* bits_n = bits + (r / q.OH) * q.H * q.W * CW;
        for (int64_t ox = 0; ox < q.OW; ++ox)
          for (int64_t grp = 0; grp < q.G; ++grp)
            fn(q, bits_n, r % q.OH, ox, grp, gy + (r * q.OW + ox) * q.O + grp * Og, first, last, gw);
      }
    });
    return;
  }
#endif
  par_for(q.C, nthreads, [&](int, int64_t first, int64_t last) {
    for (int64_t r = 0; r < q.N * q.OH; ++r) {
      const int64_t n = r / q.OH, oy = r % q.OH;
      for (int64_t ox = 0; ox < q.OW; ++ox) {
        const float* gp = gy + (r * q.OW + ox) * q.O;
        for (int64_t ky = 0; ky < q.KH; ++ky) {
          const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
          if (iy < 0 || iy >= q.H) continue;
          for (int64_t kx = 0; kx < q.KW; ++kx) {
            const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
            if (ix < 0 || ix >= q.W) continue;
            const uint64_t* wp = bits + ((n * q.H + iy) * q.W + ix) * CW;
            each_bit(wp, first, last, [&](int64_t c) {
              const int64_t grp = c / Cg;
              add_row(gw + (((grp * q.KH + ky) * q.KW + kx) * Cg + c - grp * Cg) * Og, gp + grp * Og, Og);
            });
          }
        }
      }
    }
  });
}

}  // extern "C"
