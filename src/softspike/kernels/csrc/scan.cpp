// Fused multi-step kernels for the linear neurons (IF, LIF, parametric LIF) and Poisson sampling.
//
// Plain C++ without torch headers: it builds in seconds with the system compiler and is called
// through ctypes by the torch.library operators of softspike/kernels/scan_native.py, which check the
// arguments (the early returns on empty sizes here are a second line of defence). Data are
// contiguous float32 [T, M]. Threads come from OpenMP: loaded after torch, the library binds to
// torch's own libgomp (same soname), so the kernels share torch's thread pool instead of fighting
// its spinning workers for the cores.
//
// Forward runs the time loop per block of neurons, keeping V in a block-sized buffer, and writes
// only the spikes. Backward recomputes H from the saved input X (bit for bit: the same operations
// and -ffp-contract=off), keeps the block's H for all T in cache and runs BPTT in reverse; the
// recompute of a thread's next block is interleaved with the BPTT of the current one, step by step,
// so the two passes' memory streams overlap. Memory traffic: forward reads X and writes S, backward
// reads X and dL/dS and writes dL/dX. The rows of a block are short, so the loops prefetch ahead in
// software; with AVX-512 the forward step and the sigmoid gate's BPTT step are written with
// intrinsics and store their outputs non-temporally straight into place.
//
// Forward arithmetic copies PyTorch's op order (v + (x - (v - v_rest)) / tau, ...) so that the
// spikes are identical to the reference loop's.

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

namespace {

// Runs fn(slot, first, last) over [0, n) split in nthreads contiguous ranges (slot = 0..nthreads-1).
template <class F>
void par_for(int64_t n, int nthreads, F fn) {
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

enum Dyn { IF = 0, LIF = 1, PLIF = 2 };
enum Gate { SIGMOID = 0, ATAN = 1, PIECEWISE_QUADRATIC = 2, FAST_SIGMOID = 3, ERF = 4, TRIANGLE = 5,
            STRAIGHT_THROUGH = 6 };

struct Params {
  int64_t T, M;
  float tau, k, v_rest, v_th, v_reset, alpha, width;
  int hard, detach, gate;
  bool stream;  // outputs too big for the caches: write them with non-temporal stores
};

// dst[0:n] = src[0:n]; with `stream`, aligned 64-byte pieces bypass the caches (no read for
// ownership of lines the kernel overwrites whole).
inline void store_out(float* dst, const float* src, int64_t n, bool stream) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 63); ++i) dst[i] = src[i];
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
  }
#elif defined(__AVX__)
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 31); ++i) dst[i] = src[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
  }
#endif
  if (i < n) std::memcpy(dst + i, src + i, sizeof(float) * (n - i));
}

// From 32 MiB of output on, the written data will not be read back from cache anyway.
#ifndef SS_STREAM_FLOATS
#define SS_STREAM_FLOATS (int64_t{8} << 20)
#endif
constexpr int64_t kStreamFloats = SS_STREAM_FLOATS;

inline void store_fence() {
#if defined(__SSE__)
  _mm_sfence();
#endif
}

// a * b + c. The build turns off contraction (forward must round as PyTorch's separate ops do);
// backward-only arithmetic asks for fused multiply-adds explicitly where the CPU has them.
inline float fma_(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// Cephes-style exp: ~1 ulp, branch-free so the loops vectorize. Backward only.
inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = std::floor(fma_(x, 1.44269504088896341f, 0.5f));
  float r = fma_(n, -0.693359375f, x);
  r = fma_(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_(p, r, 1.3981999507e-3f);
  p = fma_(p, r, 8.3334519073e-3f);
  p = fma_(p, r, 4.1665795894e-2f);
  p = fma_(p, r, 1.6666665459e-1f);
  p = fma_(p, r, 5.0000001201e-1f);
  float y = fma_(p, r * r, r) + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

template <int G>
inline float gate_derivative(float z, float a, float w) {
  if constexpr (G == SIGMOID) {
    float s = 1.0f / (1.0f + fexp(-a * z));
    return a * s * (1.0f - s);
  } else if constexpr (G == ATAN) {
    float u = 1.57079632679489662f * a * z;
    return (a * 0.5f) / (1.0f + u * u);
  } else if constexpr (G == PIECEWISE_QUADRATIC) {
    float d = a - a * a * std::fabs(z);
    return d > 0.0f ? d : 0.0f;
  } else if constexpr (G == FAST_SIGMOID) {
    float u = 1.0f + a * std::fabs(z);
    return a / (2.0f * u * u);
  } else if constexpr (G == ERF) {
    float u = a * z;
    return a * 0.56418958354775628f * fexp(-(u * u));
  } else if constexpr (G == TRIANGLE) {
    float d = 1.0f - std::fabs(z) / w;
    return a * (d > 0.0f ? d : 0.0f);
  } else {
    return std::fabs(z) <= 0.5f / a ? a : 0.0f;
  }
}

// H = f(V, X), written exactly as the Python dynamics compute it.
template <int D>
inline float charge(float v, float x, const Params& p) {
  if constexpr (D == IF) {
    return v + x;
  } else if constexpr (D == LIF) {
    return v + (x - (v - p.v_rest)) / p.tau;
  } else {
    return v + (x - (v - p.v_rest)) * p.k;
  }
}

// Software prefetch distance, in time steps: a block's row of X or dL/dS is only a few KiB, too
// short for the hardware prefetcher to get ahead, so each loop fetches the lines of a later step.
// The forward loop is fast (2 steps ahead); the recompute interleaved with BPTT and BPTT itself
// spend long enough per step for 1.
constexpr int64_t kAheadFwd = 2, kAhead = 1;

#if defined(__AVX512F__)
// forward_row's loop 16 lanes at a time, the same IEEE operations in the same order (bit-identical
// H and spikes); spikes go straight to st, with non-temporal stores when `stream` (st 64-byte
// aligned). Prefetches one cache line of pf per 16 elements. Returns how many elements it did.
template <int D>
int64_t forward_row16(const Params& p, const float* __restrict xt, float* __restrict ht, float* __restrict st,
                      float* __restrict v, int64_t n, const float* pf, bool stream) {
  const __m512 vth = _mm512_set1_ps(p.v_th), vr = _mm512_set1_ps(p.v_reset), vrest = _mm512_set1_ps(p.v_rest);
  const __m512 tau = _mm512_set1_ps(p.tau), k = _mm512_set1_ps(p.k);
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const bool hard = p.hard != 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (pf) _mm_prefetch(reinterpret_cast<const char*>(pf + i), _MM_HINT_T0);
    const __m512 vv = _mm512_loadu_ps(v + i), xv = _mm512_loadu_ps(xt + i);
    __m512 h;
    if constexpr (D == IF) {
      h = _mm512_add_ps(vv, xv);
    } else if constexpr (D == LIF) {
      h = _mm512_add_ps(vv, _mm512_div_ps(_mm512_sub_ps(xv, _mm512_sub_ps(vv, vrest)), tau));
    } else {
      h = _mm512_add_ps(vv, _mm512_mul_ps(_mm512_sub_ps(xv, _mm512_sub_ps(vv, vrest)), k));
    }
    const __m512 z = _mm512_sub_ps(h, vth);
    const __mmask16 f = _mm512_cmp_ps_mask(z, zero, _CMP_GE_OQ);
    if (ht) _mm512_storeu_ps(ht + i, h);
    if (st) {
      const __m512 sv = _mm512_maskz_mov_ps(f, one);
      if (stream) _mm512_stream_ps(st + i, sv);
      else _mm512_storeu_ps(st + i, sv);
    }
    _mm512_storeu_ps(v + i, hard ? _mm512_mask_mov_ps(h, f, vr) : _mm512_mask_mov_ps(h, f, z));
  }
  return i;
}
#endif

// One time step of the forward loop over n neurons: V (v) -> H (ht, if given), spikes (st, if
// given), V after the reset (v). pf: the next step's X, prefetched (the rows are only a block
// wide, too short for the hardware prefetcher to run ahead); `stream`: see forward_row16.
template <int D>
inline void forward_row(const Params& p, const float* __restrict xt, float* __restrict ht, float* __restrict st,
                        float* __restrict v, int64_t n, const float* pf, bool stream = false) {
  const float vth = p.v_th, vr = p.v_reset;
  int64_t c0 = 0;
#if defined(__AVX512F__)
  c0 = forward_row16<D>(p, xt, ht, st, v, n, pf, stream);
#endif
  for (int64_t c = c0; c < n; c += 64) {
    const int64_t e = c + 64 < n ? c + 64 : n;
    if (pf)
      for (int j = 0; j < 64; j += 16) __builtin_prefetch(pf + c + j, 0, 3);
    if (p.hard) {
      for (int64_t i = c; i < e; ++i) {
        float h = charge<D>(v[i], xt[i], p);
        bool f = (h - vth) >= 0.0f;
        if (ht) ht[i] = h;
        if (st) st[i] = f ? 1.0f : 0.0f;
        v[i] = f ? vr : h;
      }
    } else {
      for (int64_t i = c; i < e; ++i) {
        float h = charge<D>(v[i], xt[i], p);
        bool f = (h - vth) >= 0.0f;
        if (ht) ht[i] = h;
        if (st) st[i] = f ? 1.0f : 0.0f;
        v[i] = f ? h - vth : h;
      }
    }
  }
}

// Runs the forward loop over one block and writes the spikes.
template <int D>
void forward_block(const Params& p, const float* x, float* s, float* v, float* stage, int64_t i0, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = p.v_rest;
  for (int64_t t = 0; t < p.T; ++t) {
    const float* ahead = t + kAheadFwd < p.T ? x + (t + kAheadFwd) * p.M + i0 : nullptr;
#if defined(__AVX512F__)
    (void)stage;  // the vector loop writes the spikes in place
    float* const st = s + t * p.M + i0;
    const bool stream = p.stream && (reinterpret_cast<uintptr_t>(st) & 63) == 0;
    forward_row<D>(p, x + t * p.M + i0, nullptr, st, v, n, ahead, stream);
#else
    forward_row<D>(p, x + t * p.M + i0, nullptr, stage, v, n, ahead);
    store_out(s + t * p.M + i0, stage, n, p.stream);
#endif
  }
}

#if defined(__AVX512F__)
// The BPTT step of backward_block (below) for the sigmoid gate, 16 lanes at a time; returns how many
// elements it did (the rest go through the scalar loop). The gate's derivative α·s·(1-s) is written
// as α·e/(1+e)² with e = exp(-α|z|) (symmetric, no overflow), e from the Cephes polynomial scaled
// with vscalefps, and 1/(1+e) from rcp14 plus one Newton step (~1 ulp): no division, ~30 vector
// operations per 16 elements instead of ~50. Gradients only, so float rounding-level agreement.
template <int D, bool HARD, bool KEEP>
int64_t bptt_sigmoid16(const float* __restrict ht, const float* __restrict gst, float* __restrict gxt,
                       float* __restrict gvr, const float* pf, bool stream, int64_t n, float vth, float vr, float a,
                       float kk) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
  const __m512 vthv = _mm512_set1_ps(vth), vrv = _mm512_set1_ps(vr), av = _mm512_set1_ps(a);
  const __m512 nega = _mm512_set1_ps(-a), lo = _mm512_set1_ps(-87.0f);
  const __m512 negvth = _mm512_set1_ps(-vth);
  const __m512 kv = _mm512_set1_ps(kk), negk = _mm512_set1_ps(-kk);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 c1 = _mm512_set1_ps(-0.693359375f), c2 = _mm512_set1_ps(2.12194440e-4f);
  const __m512 p0 = _mm512_set1_ps(1.9875691500e-4f), p1 = _mm512_set1_ps(1.3981999507e-3f);
  const __m512 p2 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f);
  const __m512 p4 = _mm512_set1_ps(1.6666665459e-1f), p5 = _mm512_set1_ps(5.0000001201e-1f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (pf) _mm_prefetch(reinterpret_cast<const char*>(pf + i), _MM_HINT_T0);
    const __m512 h = _mm512_loadu_ps(ht + i), g = _mm512_loadu_ps(gvr + i), gs = _mm512_loadu_ps(gst + i);
    const __m512 z = _mm512_sub_ps(h, vthv);
    const __mmask16 fired = _mm512_cmp_ps_mask(z, zero, _CMP_GE_OQ);
    __m512 x = _mm512_max_ps(_mm512_mul_ps(_mm512_abs_ps(z), nega), lo);
    const __m512 m = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(m, c1, x);
    r = _mm512_fmadd_ps(m, c2, r);
    __m512 q = _mm512_fmadd_ps(p0, r, p1);
    q = _mm512_fmadd_ps(q, r, p2);
    q = _mm512_fmadd_ps(q, r, p3);
    q = _mm512_fmadd_ps(q, r, p4);
    q = _mm512_fmadd_ps(q, r, p5);
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r), one);
    const __m512 e = _mm512_scalef_ps(y, m);
    const __m512 d = _mm512_add_ps(e, one);
    __m512 rc = _mm512_rcp14_ps(d);
    rc = _mm512_mul_ps(rc, _mm512_fnmadd_ps(d, rc, two));
    const __m512 sg = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(e, av), rc), rc);
    // gsum = dL/dS + g·dV/dS; dV/dS: hard (V_reset - H), soft -theta, 0 when the reset is detached.
    __m512 gsum = gs;
    if constexpr (KEEP) gsum = _mm512_fmadd_ps(g, HARD ? _mm512_sub_ps(vrv, h) : negvth, gs);
    // dL/dH = g·(1 - hard·S) + gsum·sg
    __m512 gh;
    if constexpr (HARD) {
      const __m512 via_s = _mm512_mul_ps(gsum, sg);
      gh = _mm512_mask_add_ps(via_s, static_cast<__mmask16>(~fired), via_s, g);
    } else {
      gh = _mm512_fmadd_ps(gsum, sg, g);
    }
    const __m512 gxv = D == IF ? gh : _mm512_mul_ps(gh, kv);
    if (stream) _mm512_stream_ps(gxt + i, gxv);  // gxt is then 64-byte aligned
    else _mm512_storeu_ps(gxt + i, gxv);
    _mm512_storeu_ps(gvr + i, D == IF ? gh : _mm512_fmadd_ps(gh, negk, gh));
  }
  return i;
}
#endif

// BPTT over one block whose H for all T is in hs. Meanwhile it recomputes H of the thread's next
// block (next_n > 0) into next_hs, one time step per reverse step (its V in next_v), so that the
// reads of X for the next block overlap this block's reads of dL/dS and its arithmetic.
template <int D, int G>
void backward_block(const Params& p, const float* x, const float* gs, float* gx, const float* hs, float* gv,
                    float* gk_acc, float* stage, int64_t i0, int64_t n, float* next_hs, float* next_v,
                    int64_t next_i0, int64_t next_n) {
  if (next_n)
    for (int64_t i = 0; i < next_n; ++i) next_v[i] = p.v_rest;
  const float vth = p.v_th, vr = p.v_reset, a = p.alpha, w = p.width, k = p.k, inv_tau = 1.0f / p.tau;
  const float hard = p.hard ? 1.0f : 0.0f;
  const float keep = p.detach ? 0.0f : 1.0f;
  for (int64_t i = 0; i < n; ++i) gv[i] = 0.0f;
  if constexpr (D == PLIF) {
    for (int64_t i = 0; i < n; ++i) gk_acc[i] = 0.0f;
  }
  for (int64_t t = p.T - 1; t >= 0; --t) {
    const float* __restrict ht = hs + t * n;
    // H(t-1) for V(t-1) (parametric LIF's dL/dk); at t = 0, V(-1) = V_rest.
    const bool first = t == 0;
    const float* __restrict hp = first ? ht : hs + (t - 1) * n;
    const float firstf = first ? 1.0f : 0.0f;
    const float* __restrict gst = gs + t * p.M + i0;
    const float* __restrict xt = x + t * p.M + i0;
    if (next_n) {
      const int64_t u = p.T - 1 - t;
      forward_row<D>(p, x + u * p.M + next_i0, next_hs + u * next_n, nullptr, next_v, next_n,
                     u + kAhead < p.T ? x + (u + kAhead) * p.M + next_i0 : nullptr);
    }
    // The sigmoid path streams dL/dX straight to gx when it can; the others go through stage.
    float* const gx_row = gx + t * p.M + i0;
    bool direct = false;
#if defined(__AVX512F__)
    direct = G == SIGMOID && p.stream && (reinterpret_cast<uintptr_t>(gx_row) & 63) == 0;
#endif
    float* __restrict gxt = direct ? gx_row : stage;
    float* __restrict gvr = gv;
    float* __restrict acc = gk_acc;
    int64_t i0v = 0;
#if defined(__AVX512F__)
    if constexpr (G == SIGMOID) {
      const float* pf = t >= kAhead ? gst - kAhead * p.M : nullptr;
      const float kk = D == LIF ? inv_tau : k;
      if (p.hard && !p.detach) i0v = bptt_sigmoid16<D, true, true>(ht, gst, gxt, gvr, pf, direct, n, vth, vr, a, kk);
      else if (p.hard) i0v = bptt_sigmoid16<D, true, false>(ht, gst, gxt, gvr, pf, direct, n, vth, vr, a, kk);
      else if (!p.detach) i0v = bptt_sigmoid16<D, false, true>(ht, gst, gxt, gvr, pf, direct, n, vth, vr, a, kk);
      else i0v = bptt_sigmoid16<D, false, false>(ht, gst, gxt, gvr, pf, direct, n, vth, vr, a, kk);
    }
#endif
    for (int64_t i = i0v; i < n; ++i) {
      float h = ht[i];
      float z = h - vth;
      float sp = z >= 0.0f ? 1.0f : 0.0f;
      float sg = gate_derivative<G>(z, a, w);
      float g = gvr[i];
      // dV/dS: hard (V_reset - H), soft -theta; zero when the reset is detached.
      float dvds = fma_(hard, vr - h, (hard - 1.0f) * vth);
      float gsum = fma_(keep * g, dvds, gst[i]);
      float gh = fma_(g, 1.0f - hard * sp, gsum * sg);
      float gxi;
      if constexpr (D == IF) {
        gxi = gh;
        gvr[i] = gh;
      } else if constexpr (D == LIF) {
        gxi = gh * inv_tau;
        gvr[i] = fma_(gh, -inv_tau, gh);
      } else {
        gxi = gh * k;
        gvr[i] = fma_(gh, -k, gh);
      }
      gxt[i] = gxi;
    }
    if constexpr (D == PLIF) {
      // dL/dk += dL/dH · (X - (V(t-1) - V_rest)), with dL/dH = dL/dX / k.
      for (int64_t i = 0; i < n; ++i) {
        float hq = hp[i];
        float fired = (hq - vth) >= 0.0f ? 1.0f : 0.0f;
        float vp = fired * (hard * vr + (1.0f - hard) * (hq - vth)) + (1.0f - fired) * hq;
        vp = firstf * p.v_rest + (1.0f - firstf) * vp;
        acc[i] += (gxt[i] + gvr[i]) * (xt[i] - (vp - p.v_rest));
      }
    }
    if (!direct) store_out(gx_row, stage, n, p.stream);
  }
}

int64_t block_size(int64_t T, int64_t M) {
  // Keep two blocks' H for all T (the one in BPTT, the next being recomputed) within ~256 KiB (L2).
  int64_t b = 32768 / (T > 0 ? T : 1);
  b = b < 64 ? 64 : (b > 4096 ? 4096 : b);
  b = (b / 16) * 16;
  return b < M ? b : M;
}

struct Task {
  const Params* p;
  const float* x;
  float* s;
  const float* gs;
  float* gx;
  double* gk_part;  // one per block
  int64_t nblocks, bs, first, last;
  bool backward;
};

template <int D, int G>
void run_task(const Task& tk) {
  const Params& p = *tk.p;
  std::vector<float> v(tk.bs), v2(tk.backward ? tk.bs : 0);
  // Two H buffers: the block in BPTT and the next one being recomputed.
  std::vector<float> hs(tk.backward ? static_cast<size_t>(2 * p.T * tk.bs) : 0);
  std::vector<float> acc(D == PLIF ? tk.bs : 0);
  std::vector<float> stage(tk.bs);
  auto size = [&](int64_t b) { return (b * tk.bs + tk.bs <= p.M) ? tk.bs : p.M - b * tk.bs; };
  if (tk.backward && tk.first < tk.last) {
    const int64_t n = size(tk.first);
    for (int64_t i = 0; i < n; ++i) v[i] = p.v_rest;
    for (int64_t t = 0; t < p.T; ++t)
      forward_row<D>(p, tk.x + t * p.M + tk.first * tk.bs, hs.data() + t * n, nullptr, v.data(), n,
                     t + kAheadFwd < p.T ? tk.x + (t + kAheadFwd) * p.M + tk.first * tk.bs : nullptr);
  }
  for (int64_t b = tk.first; b < tk.last; ++b) {
    int64_t i0 = b * tk.bs;
    int64_t n = size(b);
    if (!tk.backward) {
      forward_block<D>(p, tk.x, tk.s, v.data(), stage.data(), i0, n);
    } else {
      float* cur = hs.data() + ((b - tk.first) & 1) * p.T * tk.bs;
      float* nxt = hs.data() + (((b - tk.first) & 1) ^ 1) * p.T * tk.bs;
      const int64_t nn = b + 1 < tk.last ? size(b + 1) : 0;
      backward_block<D, G>(p, tk.x, tk.gs, tk.gx, cur, v.data(), acc.data(), stage.data(), i0, n, nxt, v2.data(),
                           i0 + tk.bs, nn);
      if constexpr (D == PLIF) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += acc[i];
        tk.gk_part[b] = sum;
      }
    }
  }
  store_fence();
}

template <int D>
void dispatch_gate(const Task& tk) {
  switch (tk.p->gate) {
    case SIGMOID: run_task<D, SIGMOID>(tk); break;
    case ATAN: run_task<D, ATAN>(tk); break;
    case PIECEWISE_QUADRATIC: run_task<D, PIECEWISE_QUADRATIC>(tk); break;
    case FAST_SIGMOID: run_task<D, FAST_SIGMOID>(tk); break;
    case ERF: run_task<D, ERF>(tk); break;
    case TRIANGLE: run_task<D, TRIANGLE>(tk); break;
    default: run_task<D, STRAIGHT_THROUGH>(tk); break;
  }
}

void run_any(const Task& tk, int dyn) {
  if (!tk.backward) {
    // The gate does not matter forward: instantiate once per dynamics.
    if (dyn == IF) run_task<IF, SIGMOID>(tk);
    else if (dyn == LIF) run_task<LIF, SIGMOID>(tk);
    else run_task<PLIF, SIGMOID>(tk);
    return;
  }
  if (dyn == IF) dispatch_gate<IF>(tk);
  else if (dyn == LIF) dispatch_gate<LIF>(tk);
  else dispatch_gate<PLIF>(tk);
}

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

// pack_bytes in chunks, stopping at the first chunk that is not binary.
bool pack_range(const float* x, uint8_t* out, int64_t first, int64_t last) {
  const int64_t chunk = 4096;
  for (int64_t c = first; c < last; c += chunk)
    if (!pack_bytes(x, out, c, c + chunk < last ? c + chunk : last)) return false;
  return true;
}

// One row of a binary matrix as bits (words of 64, little-endian); false if a value is not 0 or 1.
inline bool pack_row(const float* __restrict x, int64_t K, uint64_t* __restrict words, int64_t nwords) {
  uint8_t* bytes = reinterpret_cast<uint8_t*>(words);
  const int64_t full = K / 8;
  bool ok = pack_bytes(x, bytes, 0, full);
  for (int64_t j = full; j < nwords * 8; ++j) {  // the partial byte and the padding
    uint32_t b = 0;
    for (int64_t i = 8 * j; i < K && i < 8 * j + 8; ++i) {
      b |= static_cast<uint32_t>(x[i] != 0.0f) << (i - 8 * j);
      ok = ok && (x[i] == 0.0f || x[i] == 1.0f);
    }
    bytes[j] = static_cast<uint8_t>(b);
  }
  return ok;
}

typedef float v16 __attribute__((vector_size(64)));

inline v16 vload(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void vstore(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// The indices of a row's set bits, in increasing order; returns how many.
inline int64_t bit_indices(const uint64_t* w, int64_t nwords, int32_t* idx) {
  int64_t n = 0;
  for (int64_t j = 0; j < nwords; ++j)
    for (uint64_t m = w[j]; m; m &= m - 1) idx[n++] = static_cast<int32_t>(j * 64 + __builtin_ctzll(m));
  return n;
}

// out = bias + sum of wt[i] (rows of length O) over the n indices; accumulators stay in registers.
void gather_row(const int32_t* idx, int64_t n, const float* wt, int64_t O, const float* bias, float* out) {
  int64_t o = 0;
  const v16 zero = {};
  for (; o + 64 <= O; o += 64) {
    v16 a0 = bias ? vload(bias + o) : zero, a1 = bias ? vload(bias + o + 16) : zero;
    v16 a2 = bias ? vload(bias + o + 32) : zero, a3 = bias ? vload(bias + o + 48) : zero;
    for (int64_t q = 0; q < n; ++q) {
      const float* r = wt + static_cast<int64_t>(idx[q]) * O + o;
      a0 += vload(r);
      a1 += vload(r + 16);
      a2 += vload(r + 32);
      a3 += vload(r + 48);
    }
    vstore(out + o, a0);
    vstore(out + o + 16, a1);
    vstore(out + o + 32, a2);
    vstore(out + o + 48, a3);
  }
  for (; o + 16 <= O; o += 16) {
    v16 a = bias ? vload(bias + o) : zero;
    for (int64_t q = 0; q < n; ++q) a += vload(wt + static_cast<int64_t>(idx[q]) * O + o);
    vstore(out + o, a);
  }
  if (o < O) {
    float a[16];
    const int64_t rest = O - o;
    for (int64_t k = 0; k < rest; ++k) a[k] = bias ? bias[o + k] : 0.0f;
    for (int64_t q = 0; q < n; ++q) {
      const float* r = wt + static_cast<int64_t>(idx[q]) * O + o;
      for (int64_t k = 0; k < rest; ++k) a[k] += r[k];
    }
    for (int64_t k = 0; k < rest; ++k) out[o + k] = a[k];
  }
}

// dst[i] += g (rows of length O) for the n indices i; g's tiles stay in registers.
void scatter_row(const int32_t* idx, int64_t n, const float* g, int64_t O, float* dst) {
  int64_t o = 0;
  for (; o + 64 <= O; o += 64) {
    const v16 g0 = vload(g + o), g1 = vload(g + o + 16), g2 = vload(g + o + 32), g3 = vload(g + o + 48);
    for (int64_t q = 0; q < n; ++q) {
      float* d = dst + static_cast<int64_t>(idx[q]) * O + o;
      vstore(d, vload(d) + g0);
      vstore(d + 16, vload(d + 16) + g1);
      vstore(d + 32, vload(d + 32) + g2);
      vstore(d + 48, vload(d + 48) + g3);
    }
  }
  for (; o + 16 <= O; o += 16) {
    const v16 g0 = vload(g + o);
    for (int64_t q = 0; q < n; ++q) {
      float* d = dst + static_cast<int64_t>(idx[q]) * O + o;
      vstore(d, vload(d) + g0);
    }
  }
  if (o < O) {
    for (int64_t q = 0; q < n; ++q) {
      float* d = dst + static_cast<int64_t>(idx[q]) * O;
      for (int64_t k = o; k < O; ++k) d[k] += g[k];
    }
  }
}

}  // namespace

extern "C" {

// out[r] = bias + sum of WT[i] over the i where x[r, i] = 1; x is [R, K] of 0/1, WT is [K, O].
// Writes the rows' bits (R x nwords words) for the weight gradient. Returns 0 if x is not binary.
// With out == nullptr it only packs the bits (the caller then multiplies densely).
int ss_spike_linear_forward(const float* x, int64_t R, int64_t K, const float* wt, const float* bias, float* out,
                            int64_t O, uint64_t* bits, int nthreads) {
  if (R <= 0) return 1;
  const int64_t nwords = (K + 63) / 64;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > R) nthreads = static_cast<int>(R > 0 ? R : 1);
  std::vector<int> ok(nthreads, 1);
  par_for(R, nthreads, [&](int slot, int64_t first, int64_t last) {
    std::vector<int32_t> idx(nwords * 64);
    for (int64_t r = first; r < last; ++r) {
      uint64_t* w = bits + r * nwords;
      if (!pack_row(x + r * K, K, w, nwords)) {
        ok[slot] = 0;
        return;
      }
      if (out) gather_row(idx.data(), bit_indices(w, nwords, idx.data()), wt, O, bias, out + r * O);
    }
  });
  for (int v : ok)
    if (!v) return 0;
  return 1;
}

// ss_spike_linear_wgrad's sums for wide outputs (O >= 64) while dL/dY fits in cache, with the same
// arithmetic: the rows split into nthreads ranges, each range summed in row order from zero, the
// range sums added in range order. The work is split by inputs instead: each thread transposes its
// words of the bit matrix into per-input row lists and sums gy's rows for its inputs in registers,
// writing each gw column once, so there are no per-thread [K, O] buffers to zero and add up. (The
// ranges follow the requested thread count, not the number OpenMP grants.)
__attribute__((noinline)) static void wgrad_gather(const uint64_t* bits, int64_t R, int64_t K, const float* gy,
                                                 int64_t O, float* gw, int nthreads) {
  const int64_t nwords = (K + 63) / 64;
  if (nthreads < 1) nthreads = 1;
  if (R < 64) nthreads = 1;
  const int nparts = nthreads;
  const int64_t rwords = (R + 63) / 64;
  static thread_local std::vector<uint64_t> kept;  // [K, rwords]: the rows each input fired in
  std::vector<uint64_t>& cols = kept;
  if (static_cast<int64_t>(cols.size()) < K * rwords) cols.resize(K * rwords);
  std::vector<int64_t> bounds(nparts + 1);
  for (int p = 0; p <= nparts; ++p) bounds[p] = R * p / nparts;
  par_for(nwords, nthreads, [&](int, int64_t jfirst, int64_t jlast) {
    const int64_t ifirst = jfirst * 64, ilast = std::min(jlast * 64, K);
    uint64_t* c = cols.data();
    std::memset(c + ifirst * rwords, 0, sizeof(uint64_t) * (ilast - ifirst) * rwords);
    for (int64_t r = 0; r < R; ++r) {
      const uint64_t* w = bits + r * nwords;
      const uint64_t bit = uint64_t{1} << (r & 63);
      const int64_t rw = r >> 6;
      for (int64_t j = jfirst; j < jlast; ++j)
        for (uint64_t m = w[j]; m; m &= m - 1) c[(j * 64 + __builtin_ctzll(m)) * rwords + rw] |= bit;
    }
    std::vector<int32_t> idx(R > 0 ? R : 1);
    std::vector<int64_t> split(nparts + 1);
    const v16 zero = {};
    for (int64_t i = ifirst; i < ilast; ++i) {
      const int64_t n = bit_indices(c + i * rwords, rwords, idx.data());
      split[0] = 0;
      for (int p = 1; p < nparts; ++p) {
        int64_t q = split[p - 1];
        while (q < n && idx[q] < bounds[p]) ++q;
        split[p] = q;
      }
      split[nparts] = n;
      int64_t o = 0;
      for (; o + 64 <= O; o += 64) {
        v16 t0 = zero, t1 = zero, t2 = zero, t3 = zero;
        for (int p = 0; p < nparts; ++p) {
          v16 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
          for (int64_t q = split[p]; q < split[p + 1]; ++q) {
            const float* g = gy + static_cast<int64_t>(idx[q]) * O + o;
            a0 += vload(g);
            a1 += vload(g + 16);
            a2 += vload(g + 32);
            a3 += vload(g + 48);
          }
          if (p == 0) {
            t0 = a0, t1 = a1, t2 = a2, t3 = a3;
          } else {
            t0 += a0, t1 += a1, t2 += a2, t3 += a3;
          }
        }
        float tmp[64];
        vstore(tmp, t0);
        vstore(tmp + 16, t1);
        vstore(tmp + 32, t2);
        vstore(tmp + 48, t3);
        for (int k = 0; k < 64; ++k) gw[(o + k) * K + i] = tmp[k];
      }
      for (; o + 16 <= O; o += 16) {
        v16 t = zero;
        for (int p = 0; p < nparts; ++p) {
          v16 a = zero;
          for (int64_t q = split[p]; q < split[p + 1]; ++q) a += vload(gy + static_cast<int64_t>(idx[q]) * O + o);
          t = p == 0 ? a : t + a;
        }
        float tmp[16];
        vstore(tmp, t);
        for (int k = 0; k < 16; ++k) gw[(o + k) * K + i] = tmp[k];
      }
      for (; o < O; ++o) {
        float t = 0.0f;
        for (int p = 0; p < nparts; ++p) {
          float a = 0.0f;
          for (int64_t q = split[p]; q < split[p + 1]; ++q) a += gy[static_cast<int64_t>(idx[q]) * O + o];
          t = p == 0 ? a : t + a;
        }
        gw[o * K + i] = t;
      }
    }
  });
}

// The gather reads each row of dL/dY once per active input: with 1024 rows it is ~1.3x faster than the
// scatter below for the 784x196 MNIST layer, with 12800 rows ~1.2x slower (dL/dY no longer in cache).
constexpr int64_t kGatherMaxFloats = int64_t{1} << 20;

// gw[o, i] = sum of gy[r, o] over the rows r with bit i set: the weight gradient [O, K]. Each thread
// scatters into its own [K, O] buffer (kept between calls), then the buffers are summed and
// transposed into gw in one pass.
void ss_spike_linear_wgrad(const uint64_t* bits, int64_t R, int64_t K, const float* gy, int64_t O, float* gw,
                           int nthreads) {
  if (K <= 0 || O <= 0) return;
  if (R <= 0) {
    std::memset(gw, 0, sizeof(float) * K * O);
    return;
  }
  if (O >= 64 && R * O <= kGatherMaxFloats) {
    wgrad_gather(bits, R, K, gy, O, gw, nthreads);
    return;
  }
  const int64_t nwords = (K + 63) / 64;
  if (nthreads < 1) nthreads = 1;
  if (R < 64) nthreads = 1;
  // One set per calling thread (safe across callers); the workers reach it through this reference,
  // not by name (a thread_local named inside the lambda would be each worker's own, empty, copy).
  static thread_local std::vector<std::vector<float>> kept;
  std::vector<std::vector<float>>& parts = kept;
  if (static_cast<int>(parts.size()) < nthreads) parts.resize(nthreads);
  for (int r = 0; r < nthreads; ++r) parts[r].assign(K * O, 0.0f);
  par_for(R, nthreads, [&](int slot, int64_t first, int64_t last) {
    float* dst = parts[slot].data();
    std::vector<int32_t> idx(nwords * 64);
    for (int64_t r = first; r < last; ++r)
      scatter_row(idx.data(), bit_indices(bits + r * nwords, nwords, idx.data()), gy + r * O, O, dst);
  });
  par_for(K, nthreads, [&](int, int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k)
      for (int64_t o = 0; o < O; ++o) {
        float sum = parts[0][k * O + o];
        for (int r = 1; r < nthreads; ++r) sum += parts[r][k * O + o];
        gw[o * K + k] = sum;
      }
  });
}

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


int ss_abi_version() { return 3; }

// dyn: 0 IF, 1 LIF, 2 PLIF. x, s: [T, M].
void ss_linear_forward(const float* x, float* s, int64_t T, int64_t M, int dyn, float tau, float k,
                       float v_rest, float v_th, float v_reset, int hard, int nthreads) {
  if (T <= 0 || M <= 0) return;  // empty input: nothing to do (and no block size to divide by)
  Params p{T, M, tau, k, v_rest, v_th, v_reset, 1.0f, 1.0f, hard, 0, 0, T * M >= kStreamFloats};
  const int64_t bs = block_size(T, M);
  const int64_t nblocks = (M + bs - 1) / bs;
  par_for(nblocks, nthreads, [&](int, int64_t first, int64_t last) {
    run_any(Task{&p, x, s, nullptr, nullptr, nullptr, nblocks, bs, first, last, false}, dyn);
  });
}

// gk_out: dL/dk for PLIF (summed over everything), else untouched.
void ss_linear_backward(const float* x, const float* gs, float* gx, double* gk_out, int64_t T, int64_t M,
                        int dyn, float tau, float k, float v_rest, float v_th, float v_reset, int hard,
                        int detach, int gate, float alpha, float width, int nthreads) {
  if (T <= 0 || M <= 0) {
    *gk_out = 0.0;
    return;
  }
  Params p{T, M, tau, k, v_rest, v_th, v_reset, alpha, width, hard, detach, gate, T * M >= kStreamFloats};
  const int64_t bs = block_size(T, M);
  const int64_t nblocks = (M + bs - 1) / bs;
  std::vector<double> parts(dyn == PLIF ? nblocks : 0, 0.0);
  par_for(nblocks, nthreads, [&](int, int64_t first, int64_t last) {
    run_any(Task{&p, x, nullptr, gs, gx, parts.data(), nblocks, bs, first, last, true}, dyn);
  });
  if (dyn == PLIF) {
    double sum = 0.0;
    for (double v : parts) sum += v;
    *gk_out = sum;
  }
}

// out[t, i] = 1 if u(t, i) < x[i] else 0, u uniform on the 24-bit grid of [0, 1).
void ss_poisson(const float* x, float* out, int64_t T, int64_t M, uint32_t s0, uint32_t s1, int nthreads) {
  if (T <= 0 || M <= 0) return;
  par_for(T, nthreads, [&](int, int64_t first, int64_t last) { poisson_rows(x, out, M, first, last, s0, s1); });
}

}  // extern "C"
