// Batch norm (training mode) fused into the linear-neuron scan that follows it.
//
// Called through ctypes by softspike/kernels/bn_lif.py, which checks the arguments and computes
// the batch statistics (torch's own reduction, so the running statistics are updated exactly as
// nn.BatchNorm2d updates them). X is float32 [T, M] in memory with M = outer · C · inner: the channel
// of element j of a time step's row is (j / inner) % C (inner = H·W for NCHW, 1 for channels-last).
// With a[c] = γ·invstd and b[c] = β − mean·a (batch norm's own affine terms),
//
//     forward    Xn = X·a + b, then the scan H = f(V, Xn), S = Θ(H − V_th), reset: X read once, S written
//     backward   the scan's BPTT gives g = dL/dXn (the kernels of scan.cpp, on Xn rebuilt by
//                bn_affine); bn_grad_sums reduces Σg and Σg·(X − mean) per channel; bn_grad_apply turns g
//                into dL/dX = a·(g − Σg/N − (X − mean)·invstd²·Σg(X − mean)/N) in place.
//
// The forward's arithmetic is the scan kernel's (scan.cpp, -ffp-contract=off) and batch norm's
// (x·a + b, two roundings), so its spikes are those of nn.BatchNorm2d followed by the neuron.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "softspike.h"

namespace {

constexpr int64_t kBlock = 4096;  // neurons per block: V, a and b rows stay in L1/L2

struct Layout {
  int64_t T, M, C, inner;
};

// The per-element a and b of the block [i0, i0 + n) of a row (the channel counted on, no division per element).
void affine_rows(const Layout& L, const float* a, const float* b, int64_t i0, int64_t n, float* sa, float* sb) {
  int64_t c = (i0 / L.inner) % L.C, j = i0 % L.inner;
  for (int64_t i = 0; i < n; ++i) {
    sa[i] = a[c];
    sb[i] = b[c];
    if (++j == L.inner) {
      j = 0;
      if (++c == L.C) c = 0;
    }
  }
}

// Runs fn(row, c, first, n) over every run of n elements of one channel c, rows = T·outer split
// between threads: with inner = 1 one call per row (c = -1: element k of the run is channel k).
template <class F>
void over_runs(const Layout& L, int nthreads, F fn) {
  const int64_t rows = L.T * (L.M / (L.C * L.inner));
  ss::par_for(rows, nthreads, [&](int r, int64_t first, int64_t last) {
    for (int64_t row = first; row < last; ++row) {
      const int64_t base = row * L.C * L.inner;
      if (L.inner == 1) {
        fn(r, int64_t{-1}, base, L.C);
      } else {
        for (int64_t c = 0; c < L.C; ++c) fn(r, c, base + c * L.inner, L.inner);
      }
    }
  });
}

template <int D, bool HARD>
void scan_block(const Layout& L, const float* __restrict x, float* __restrict s, const float* __restrict sa,
                const float* __restrict sb, float* __restrict v, int64_t i0, int64_t n, float tau, float k,
                float v_rest, float v_th, float v_reset) {
  for (int64_t i = 0; i < n; ++i) v[i] = v_rest;
  for (int64_t t = 0; t < L.T; ++t) {
    const float* __restrict xt = x + t * L.M + i0;
    float* __restrict st = s + t * L.M + i0;
    for (int64_t i = 0; i < n; ++i) {
      const float xn = xt[i] * sa[i] + sb[i];
      const float vv = v[i];
      float h;
      if constexpr (D == 0) h = vv + xn;
      else if constexpr (D == 1) h = vv + (xn - (vv - v_rest)) / tau;
      else h = vv + (xn - (vv - v_rest)) * k;
      const float z = h - v_th;
      const bool f = z >= 0.0f;
      st[i] = f ? 1.0f : 0.0f;
      v[i] = f ? (HARD ? v_reset : z) : h;
    }
  }
}

template <int D>
void scan_any(bool hard, const Layout& L, const float* x, float* s, const float* sa, const float* sb, float* v,
              int64_t i0, int64_t n, float tau, float k, float v_rest, float v_th, float v_reset) {
  if (hard) scan_block<D, true>(L, x, s, sa, sb, v, i0, n, tau, k, v_rest, v_th, v_reset);
  else scan_block<D, false>(L, x, s, sa, sb, v, i0, n, tau, k, v_rest, v_th, v_reset);
}

// Runs fn(block_start, block_length, sa, sb) over the row's blocks, split between threads.
template <class F>
void over_blocks(const Layout& L, const float* a, const float* b, int nthreads, F fn) {
  const int64_t nblocks = (L.M + kBlock - 1) / kBlock;
  ss::par_for(nblocks, nthreads, [&](int, int64_t first, int64_t last) {
    std::vector<float> sa(kBlock), sb(kBlock), v(kBlock);
    for (int64_t blk = first; blk < last; ++blk) {
      const int64_t i0 = blk * kBlock, n = i0 + kBlock <= L.M ? kBlock : L.M - i0;
      affine_rows(L, a, b, i0, n, sa.data(), sb.data());
      fn(i0, n, sa.data(), sb.data(), v.data());
    }
  });
}

}  // namespace

extern "C" {

// dyn: 0 IF, 1 LIF, 2 parametric LIF (k); x, s: [T, M]; a, b: [C].
void ss_bn_lif_forward(const float* x, const float* a, const float* b, float* s, int64_t T, int64_t M, int64_t C,
                       int64_t inner, int dyn, float tau, float k, float v_rest, float v_th, float v_reset, int hard,
                       int nthreads) {
  if (T <= 0 || M <= 0 || C <= 0 || inner <= 0) return;
  const Layout L{T, M, C, inner};
  over_blocks(L, a, b, nthreads, [&](int64_t i0, int64_t n, const float* sa, const float* sb, float* v) {
    if (dyn == 0) scan_any<0>(hard != 0, L, x, s, sa, sb, v, i0, n, tau, k, v_rest, v_th, v_reset);
    else if (dyn == 1) scan_any<1>(hard != 0, L, x, s, sa, sb, v, i0, n, tau, k, v_rest, v_th, v_reset);
    else scan_any<2>(hard != 0, L, x, s, sa, sb, v, i0, n, tau, k, v_rest, v_th, v_reset);
  });
}

// xn = x·a + b, batch norm's output (the scan's input), for the backward's recompute.
void ss_bn_affine(const float* x, const float* a, const float* b, float* xn, int64_t T, int64_t M, int64_t C,
                  int64_t inner, int nthreads) {
  if (T <= 0 || M <= 0 || C <= 0 || inner <= 0) return;
  over_runs(Layout{T, M, C, inner}, nthreads, [&](int, int64_t c, int64_t e0, int64_t n) {
    const float* __restrict xs = x + e0;
    float* __restrict os = xn + e0;
    if (c < 0) {
      for (int64_t i = 0; i < n; ++i) os[i] = xs[i] * a[i] + b[i];
    } else {
      const float ac = a[c], bc = b[c];
      for (int64_t i = 0; i < n; ++i) os[i] = xs[i] * ac + bc;
    }
  });
}

// Per channel: sums[c] = Σ g, sums[C + c] = Σ g·(x − mean[c]), in double, over all T and M.
void ss_bn_grad_sums(const float* g, const float* x, const float* mean, double* sums, int64_t T, int64_t M,
                     int64_t C, int64_t inner, int nthreads) {
  for (int64_t c = 0; c < 2 * C; ++c) sums[c] = 0.0;
  if (T <= 0 || M <= 0 || C <= 0 || inner <= 0) return;
  const Layout L{T, M, C, inner};
  const int64_t rows = T * (M / (C * inner));
  const int nt = static_cast<int>(nthreads < 1 ? 1 : (nthreads > rows ? rows : nthreads));
  std::vector<double> part(static_cast<size_t>(nt) * 2 * C, 0.0);
  over_runs(L, nt, [&](int r, int64_t c, int64_t e0, int64_t n) {
    double* __restrict ps = part.data() + static_cast<size_t>(r) * 2 * C;
    const float* __restrict gs = g + e0;
    const float* __restrict xs = x + e0;
    if (c < 0) {
      for (int64_t i = 0; i < n; ++i) {
        ps[i] += gs[i];
        ps[C + i] += static_cast<double>(gs[i]) * (xs[i] - mean[i]);
      }
    } else {
      const float mc = mean[c];
      constexpr int kLanes = 16;  // independent partial sums, so the loop vectorizes
      double p0[kLanes] = {}, p1[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          p0[l] += gs[i + l];
          p1[l] += static_cast<double>(gs[i + l]) * (xs[i + l] - mc);
        }
      for (; i < n; ++i) {
        p0[0] += gs[i];
        p1[0] += static_cast<double>(gs[i]) * (xs[i] - mc);
      }
      for (int l = 0; l < kLanes; ++l) {
        ps[c] += p0[l];
        ps[C + c] += p1[l];
      }
    }
  });
  for (int r = 0; r < nt; ++r)
    for (int64_t c = 0; c < 2 * C; ++c) sums[c] += part[static_cast<size_t>(r) * 2 * C + c];
}

// In place: g = a·g + c2·(x − mean) + c3, per channel (batch norm's input gradient from dL/dXn = g).
void ss_bn_grad_apply(float* g, const float* x, const float* a, const float* mean, const float* c2,
                      const float* c3, int64_t T, int64_t M, int64_t C, int64_t inner, int nthreads) {
  if (T <= 0 || M <= 0 || C <= 0 || inner <= 0) return;
  over_runs(Layout{T, M, C, inner}, nthreads, [&](int, int64_t c, int64_t e0, int64_t n) {
    float* __restrict gs = g + e0;
    const float* __restrict xs = x + e0;
    if (c < 0) {
      for (int64_t i = 0; i < n; ++i) gs[i] = a[i] * gs[i] + c2[i] * (xs[i] - mean[i]) + c3[i];
    } else {
      const float ac = a[c], mc = mean[c], k2 = c2[c], k3 = c3[c];
      for (int64_t i = 0; i < n; ++i) gs[i] = ac * gs[i] + k2 * (xs[i] - mc) + k3;
    }
  });
}

}  // extern "C"
