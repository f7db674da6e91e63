// Max pooling (no padding, dilation 1) that keeps, per output, the window position of its maximum
// as one byte, where nn.MaxPool2d keeps an int64 index: 8x less memory for backward.
//
// Called through ctypes by softspike/kernels/spike_pool.py, which checks the arguments. Tensors
// are [N, C, H, W] addressed by their strides (contiguous or channels-last alike); g = {N, C, H, W,
// OH, OW, kh, kw, sh, sw}. The maximum is the first largest value in row-major window order, a NaN
// winning as in PyTorch, so outputs and the routed gradients are bit for bit nn.MaxPool2d's. On
// spikes (0/1) the maximum is the OR of the window and the position the first one that fired.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

struct Strides {
  int64_t n, c, h, w;
};

inline Strides strides_of(const int64_t* s) { return Strides{s[0], s[1], s[2], s[3]}; }

}  // namespace

extern "C" {

// xs, ys: the strides of x and of y / idx (same layout).
void ss_max_pool_forward(const float* x, float* y, uint8_t* idx, const int64_t* g, const int64_t* xs,
                         const int64_t* ys, int nthreads) {
  const int64_t N = g[0], C = g[1], OH = g[4], OW = g[5], kh = g[6], kw = g[7], sh = g[8], sw = g[9];
  const Strides X = strides_of(xs), Y = strides_of(ys);
  if (X.c == 1 && Y.c == 1) {  // channels-last: a pixel's channels are contiguous, the inner loop runs over them
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t r = 0; r < N * OH; ++r) {
      const int64_t n = r / OH, oy = r % OH;
      for (int64_t ox = 0; ox < OW; ++ox) {
        const float* w0 = x + n * X.n + oy * sh * X.h + ox * sw * X.w;
        float* yo = y + n * Y.n + oy * Y.h + ox * Y.w;
        uint8_t* io = idx + n * Y.n + oy * Y.h + ox * Y.w;
        for (int64_t c = 0; c < C; ++c) {
          yo[c] = w0[c];
          io[c] = 0;
        }
        for (int64_t ky = 0; ky < kh; ++ky)
          for (int64_t kx = 0; kx < kw; ++kx) {
            const float* wk = w0 + ky * X.h + kx * X.w;
            const uint8_t k = static_cast<uint8_t>(ky * kw + kx);
            for (int64_t c = 0; c < C; ++c) {
              const float v = wk[c];
              const bool take = v > yo[c] || v != v;  // v != v: NaN, PyTorch's rule
              yo[c] = take ? v : yo[c];
              io[c] = take ? k : io[c];
            }
          }
      }
    }
    return;
  }
  const int64_t planes = N * C;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t n = p / C, c = p % C;
    const float* xp = x + n * X.n + c * X.c;
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        const float* w0 = xp + oy * sh * X.h + ox * sw * X.w;
        float m = w0[0];
        int best = 0;
        for (int64_t ky = 0; ky < kh; ++ky)
          for (int64_t kx = 0; kx < kw; ++kx) {
            const float v = w0[ky * X.h + kx * X.w];
            if (v > m || std::isnan(v)) {  // PyTorch's rule: a later NaN wins too
              m = v;
              best = static_cast<int>(ky * kw + kx);
            }
          }
        const int64_t o = n * Y.n + c * Y.c + oy * Y.h + ox * Y.w;
        y[o] = m;
        idx[o] = static_cast<uint8_t>(best);
      }
  }
}

// gx (strides xs, zeroed here) += gy (strides gs) routed to each window's maximum (idx, strides ys).
void ss_max_pool_backward(const float* gy, const uint8_t* idx, float* gx, const int64_t* g, const int64_t* xs,
                          const int64_t* ys, const int64_t* gs, int nthreads) {
  const int64_t N = g[0], C = g[1], H = g[2], W = g[3], OH = g[4], OW = g[5], kw = g[7], sh = g[8], sw = g[9];
  const Strides X = strides_of(xs), Y = strides_of(ys), G = strides_of(gs);
  std::memset(gx, 0, sizeof(float) * N * C * H * W);  // x is dense: its strides cover N·C·H·W floats
  if (X.c == 1 && Y.c == 1 && G.c == 1) {  // channels-last throughout
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t n = 0; n < N; ++n)  // windows may overlap along rows: one image per thread
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const uint8_t* io = idx + n * Y.n + oy * Y.h + ox * Y.w;
          const float* go = gy + n * G.n + oy * G.h + ox * G.w;
          float* w0 = gx + n * X.n + oy * sh * X.h + ox * sw * X.w;
          for (int64_t c = 0; c < C; ++c) w0[(io[c] / kw) * X.h + (io[c] % kw) * X.w + c] += go[c];
        }
    return;
  }
  const int64_t planes = N * C;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {  // a plane's windows only reach that plane: no two threads meet
    const int64_t n = p / C, c = p % C;
    float* gp = gx + n * X.n + c * X.c;
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int k = idx[n * Y.n + c * Y.c + oy * Y.h + ox * Y.w];
        gp[(oy * sh + k / kw) * X.h + (ox * sw + k % kw) * X.w] += gy[n * G.n + c * G.c + oy * G.h + ox * G.w];
      }
  }
}

}  // extern "C"
