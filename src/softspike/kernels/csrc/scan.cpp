// Fused multi-step kernels for the linear neurons (IF, LIF, parametric LIF).
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

#include "softspike.h"

using namespace ss;

namespace {

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

void run_any(const Task& tk, int dyn) {
  if (!tk.backward) {
    // The gate does not matter forward: instantiate once per dynamics.
    SS_DISPATCH_DYN(dyn, D, run_task<D, SIGMOID>(tk))
    return;
  }
  SS_DISPATCH_DYN(dyn, D, SS_DISPATCH_GATE(tk.p->gate, G, run_task<D, G>(tk)))
}

}  // namespace

extern "C" {

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


}  // extern "C"
