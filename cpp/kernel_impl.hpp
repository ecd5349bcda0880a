// The fused char-RNN kernel, written once and compiled once per instruction
// set (kernel_avx512.cpp, kernel_avx2.cpp, kernel_baseline.cpp), each inside
// its own namespace so that no inline code is shared between them.
//
// Legend: B rows, T steps, H hidden, V vocabulary, N = T*B tokens. Hp and Vp
// are H and V rounded up to whole vectors; every buffer row is padded so that
// the inner loops run over whole vectors with no tail.
//
// One call: (1) blocks of rows run forward through all T steps, computing the
// softmax cross-entropy gradient as they go, then backward through time, and
// then the weight gradients of their own tokens, while these are in cache;
// (2) the blocks' gradients are summed in block order; (3) clipping and the
// Adagrad update, applied only if every new value is finite. Blocks do not
// depend on the thread count and every sum is taken in a fixed order, so
// results are bit-identical whatever the number of threads.
//
// Needs RNNEXT_ISA (namespace), RNNEXT_VBYTES (vector bytes), RNNEXT_MR and
// RNNEXT_NR (register tile: rows x vectors), RNNEXT_ROWS (rows per block).

#include <cstddef>
#include <cstdint>
#include <utility>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "kernel.hpp"
#include "pool.hpp"

namespace rnnext {

// The calling thread's scratch buffer number `slot` (0 or 1) of at least
// `bytes`, 64-byte aligned; nullptr if it cannot be had. scratch is buffer 0
// and throws std::bad_alloc instead.
void* scratch_or_null(std::size_t bytes, int slot) noexcept;
void* scratch(std::size_t bytes);

namespace RNNEXT_ISA {
namespace {

constexpr int MR = RNNEXT_MR;
constexpr int NR = RNNEXT_NR;
constexpr long ROWS = RNNEXT_ROWS;
constexpr long PACK_ABOVE = 512 * 1024;  // bytes of a block's states (see below)
constexpr long FOLD = 4;  // blocks whose partial gradients are summed first

template <class T>
struct simd;
template <>
struct simd<float> {
  typedef float v __attribute__((vector_size(RNNEXT_VBYTES), aligned(4), may_alias));
  typedef int32_t i
      __attribute__((vector_size(RNNEXT_VBYTES), aligned(4), may_alias));
  static constexpr int L = RNNEXT_VBYTES / 4;
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float lowest = -87.0f;  // exp below this flushes to 0
  static constexpr float round = 12582912.0f;  // 1.5 * 2^23
};
template <>
struct simd<double> {
  typedef double v __attribute__((vector_size(RNNEXT_VBYTES), aligned(8), may_alias));
  typedef int64_t i
      __attribute__((vector_size(RNNEXT_VBYTES), aligned(8), may_alias));
  static constexpr int L = RNNEXT_VBYTES / 8;
  static constexpr int mantissa = 52, bias = 1023, degree = 12;
  static constexpr double lowest = -708.0;
  static constexpr double round = 6755399441055744.0;  // 1.5 * 2^52
};

template <class T>
using vec = typename simd<T>::v;

template <class T>
inline vec<T> load(const T* p) {
  return *reinterpret_cast<const vec<T>*>(p);
}
template <class T>
inline void store(T* p, vec<T> x) {
  *reinterpret_cast<vec<T>*>(p) = x;
}
template <class T>
inline vec<T> splat(T a) {
  return vec<T>{} + a;
}
// x with its lanes rotated down by `half`, for tree reductions.
template <class T, int half, int... lane>
inline vec<T> rotate(vec<T> x, std::integer_sequence<int, lane...>) {
  typedef typename simd<T>::i I;
  return __builtin_shuffle(x, I{((lane + half) % simd<T>::L)...});
}
template <class T, int half = simd<T>::L / 2>
inline T hsum(vec<T> x) {
  x += rotate<T, half>(x, std::make_integer_sequence<int, simd<T>::L>{});
  if constexpr (half > 1) return hsum<T, half / 2>(x);
  else return x[0];
}
template <class T, int half = simd<T>::L / 2>
inline T hmax(vec<T> x) {
  vec<T> y = rotate<T, half>(x, std::make_integer_sequence<int, simd<T>::L>{});
  x = y > x ? y : x;
  if constexpr (half > 1) return hmax<T, half / 2>(x);
  else return x[0];
}
// a > b ? a : b and a < b ? a : b, lane by lane, in one instruction where
// there is one; b where either is NaN, so a clamp that takes its bound as
// a passes a NaN through.
template <class T>
inline vec<T> vmax(vec<T> a, vec<T> b) {
#if defined(__AVX512F__) && RNNEXT_VBYTES == 64
  if constexpr (sizeof(T) == 4)
    return vec<T>(_mm512_max_ps(__m512(a), __m512(b)));
  else
    return vec<T>(_mm512_max_pd(__m512d(a), __m512d(b)));
#elif defined(__AVX__) && RNNEXT_VBYTES == 32
  if constexpr (sizeof(T) == 4)
    return vec<T>(_mm256_max_ps(__m256(a), __m256(b)));
  else
    return vec<T>(_mm256_max_pd(__m256d(a), __m256d(b)));
#else
  return a > b ? a : b;
#endif
}
template <class T>
inline vec<T> vmin(vec<T> a, vec<T> b) {
#if defined(__AVX512F__) && RNNEXT_VBYTES == 64
  if constexpr (sizeof(T) == 4)
    return vec<T>(_mm512_min_ps(__m512(a), __m512(b)));
  else
    return vec<T>(_mm512_min_pd(__m512d(a), __m512d(b)));
#elif defined(__AVX__) && RNNEXT_VBYTES == 32
  if constexpr (sizeof(T) == 4)
    return vec<T>(_mm256_min_ps(__m256(a), __m256(b)));
  else
    return vec<T>(_mm256_min_pd(__m256d(a), __m256d(b)));
#else
  return a < b ? a : b;
#endif
}
inline long min(long a, long b) { return a < b ? a : b; }
constexpr long round_up(long n, long m) { return (n + m - 1) / m * m; }

// In each run of 2b lanes, lo holds x's first b lanes and then y's first
// b, hi their second b; returns lo + hi. Folding N vectors in pairs with b
// = 1, 2, .., N/2 leaves one vector whose lane r of each run of N lanes is
// a partial sum of the lanes of vector r.
template <class T, int b, int... j>
inline vec<T> fold(vec<T> x, vec<T> y, std::integer_sequence<int, j...>) {
  typedef typename simd<T>::i I;
  constexpr int L = simd<T>::L;
  return __builtin_shuffle(x, y, I{(j % (2 * b) < b ? j : L + j - b)...}) +
         __builtin_shuffle(x, y, I{(j % (2 * b) < b ? j + b : L + j)...});
}
// Each lane r < N plus lanes r + N, r + 2N, ..: rotations by L/2 .. N.
template <class T, int N, int half = simd<T>::L / 2>
inline vec<T> add_runs(vec<T> x) {
  if constexpr (half >= N) {
    x += rotate<T, half>(x, std::make_integer_sequence<int, simd<T>::L>{});
    return add_runs<T, N, half / 2>(x);
  } else {
    return x;
  }
}
// The sums of the lanes of v[0] .. v[N-1] in lanes 0 .. N-1, for N a power
// of 2 up to L: the horizontal sums of N rows in a few shuffles each,
// instead of a tree per row. Overwrites v.
template <class T, int N, int b = 1>
inline vec<T> row_sums(vec<T>* v) {
  if constexpr (b < N) {
#pragma GCC unroll 16
    for (int i = 0; i < N / b; i += 2)
      v[i / 2] = fold<T, b>(v[i], v[i + 1],
                            std::make_integer_sequence<int, simd<T>::L>{});
    return row_sums<T, N, 2 * b>(v);
  } else {
    return add_runs<T, N>(v[0]);
  }
}
// Whether a block's rows fit the lanes of one vector, for row_sums.
template <class T>
constexpr bool across = ROWS <= simd<T>::L && (ROWS & (ROWS - 1)) == 0;
// Per-row values of a block, in vectors: ROWS rounded up to a vector.
template <class T>
constexpr long RL = round_up(ROWS, simd<T>::L);

inline float sqrt_(float x) { return __builtin_sqrtf(x); }
inline double sqrt_(double x) { return __builtin_sqrt(x); }

// 1/1!, 1/2!, ..., 1/degree!
template <class T>
struct Taylor {
  T c[simd<T>::degree];
  constexpr Taylor() : c() {
    T f = 1;
    for (int k = 0; k < simd<T>::degree; ++k) c[k] = T(1) / f, f *= T(k + 2);
  }
};

// e = exp(x) and em1 = exp(x) - 1 for x <= 0, accurate to a few ulp:
// x = n ln2 + r with |r| <= ln2 / 2, e^r = 1 + r q(r) by Taylor series,
// 2^n built in the exponent bits (n read back from the rounding constant).
template <class T>
inline void exp_parts(vec<T> x, vec<T>& e, vec<T>& em1) {
  typedef simd<T> S;
  typedef typename S::i I;
  static constexpr Taylor<T> taylor{};
  const T ln2_hi = T(0.693145751953125), ln2_lo = T(1.428606820309417232e-06);
  vec<T> xc = vmax<T>(splat<T>(S::lowest), x);
  vec<T> nr = xc * T(1.4426950408889634) + S::round;
  vec<T> n = nr - S::round;
  vec<T> r = (xc - n * ln2_hi) - n * ln2_lo;

  vec<T> q = splat<T>(taylor.c[S::degree - 1]);
  for (int k = S::degree - 2; k >= 0; --k) q = q * r + taylor.c[k];
  vec<T> s = r * q;

  const vec<T> round = splat<T>(S::round);
  I bits = (reinterpret_cast<const I&>(nr) - reinterpret_cast<const I&>(round) +
            S::bias)
           << S::mantissa;
  e = (T(1) + s) * reinterpret_cast<vec<T>&>(bits);
  e = x < S::lowest ? vec<T>{} : e;
  em1 = n == T(0) ? s : e - T(1);
}

#if defined(__AVX512F__) && RNNEXT_VBYTES == 64
// x = n ln2 + r with |r| <= ln2 / 2, for x <= 0; x is first clamped where
// exp(x) rounds to 0, which keeps n finite.
template <class T>
inline void reduce_ln2(vec<T> x, vec<T>& n, vec<T>& r) {
  typedef simd<T> S;
  const T ln2_hi = T(0.693145751953125), ln2_lo = T(1.428606820309417232e-06);
  constexpr T floor = sizeof(T) == 4 ? T(-104) : T(-746);
  vec<T> xc = vmax<T>(splat<T>(floor), x);
  n = (xc * T(1.4426950408889634) + S::round) - S::round;
  r = (xc - n * ln2_hi) - n * ln2_lo;
}

// v 2^n by scalef, which rounds results below the smallest normal
// correctly (to a subnormal or to 0).
template <class T>
inline vec<T> scale2(vec<T> v, vec<T> n) {
  if constexpr (sizeof(T) == 4)
    return vec<T>(_mm512_scalef_ps(__m512(v), __m512(n)));
  else
    return vec<T>(_mm512_scalef_pd(__m512d(v), __m512d(n)));
}

// e^r - 1 = r q(r) by the Taylor series of exp_parts.
template <class T>
inline vec<T> expm1_reduced(vec<T> r) {
  typedef simd<T> S;
  static constexpr Taylor<T> taylor{};
  vec<T> q = splat<T>(taylor.c[S::degree - 1]);
  for (int k = S::degree - 2; k >= 0; --k) q = q * r + taylor.c[k];
  return r * q;
}
#endif

// exp(x) for x <= 0, -inf included, as in exp_parts. With AVX-512, 2^n is
// applied by scalef, in fewer instructions.
template <class T>
inline vec<T> vexp(vec<T> x) {
#if defined(__AVX512F__) && RNNEXT_VBYTES == 64
  vec<T> n, r;
  reduce_ln2<T>(x, n, r);
  vec<T> s;  // e^r - 1
  if constexpr (sizeof(T) == 4) {
    // e^r = 1 + r q(r), q of degree 4 fitted for the least maximum relative
    // error on [-ln2/2, ln2/2] (9.2e-8; 1.7e-7 as evaluated in float)
    vec<T> q = T(8.290304318e-03) * r + T(4.189790604e-02);
    q = q * r + T(1.666763617e-01);
    q = q * r + T(4.999914970e-01);
    q = q * r + T(9.999997072e-01);
    s = r * q;
  } else {
    s = expm1_reduced<T>(r);
  }
  return scale2<T>(s + T(1), n);
#else
  vec<T> e, em1;
  exp_parts<T>(x, e, em1);
  return e;
#endif
}

// tanh(x). In float, x P(x^2) / Q(x^2): P and Q of degree 4 fitted for the
// least maximum relative error on [0, 9] (2.1e-8; within 5.3 ulp as
// evaluated in float), x clamped to [-9, 9] and the result to [-1, 1];
// past 9.01, where tanh rounds to +-1, it is +-1, so that 1 - h^2 is 0
// there. Its chain of dependent operations is about half as long as the
// form by exp, and h_t waits on it. In double, -expm1(-2|x|) / (2 +
// expm1(-2|x|)) with the sign of x; with AVX-512, 2^n is applied by scalef.
template <class T>
inline vec<T> vtanh(vec<T> x) {
  if constexpr (sizeof(T) == 4) {
    const T c = T(9);
    vec<T> a = vmin<T>(splat<T>(c), vmax<T>(splat<T>(-c), x));
    vec<T> t = a * a;
    vec<T> p = t * T(1.335471467e-08) + T(2.060912448e-05);
    vec<T> q = t * T(7.776581015e-07) + T(3.285639104e-04);
    p = p * t + T(3.495590761e-03), q = q * t + T(2.587699331e-02);
    p = p * t + T(1.338102818e-01), q = q * t + T(4.671434462e-01);
    p = p * t + T(1), q = q * t + T(1);
    vec<T> y = a * p / q;
    y = vmin<T>(splat<T>(1), vmax<T>(splat<T>(-1), y));
    return x > T(9.01) ? splat<T>(1) : (x < T(-9.01) ? splat<T>(-1) : y);
  } else {
    vec<T> a = x < T(0) ? -x : x;
    vec<T> em1;
#if defined(__AVX512F__) && RNNEXT_VBYTES == 64
    vec<T> n, r;
    reduce_ln2<T>(T(-2) * a, n, r);
    vec<T> s = expm1_reduced<T>(r);
    em1 = n == T(0) ? s : scale2<T>(s + T(1), n) - T(1);
#else
    vec<T> e;
    exp_parts<T>(T(-2) * a, e, em1);
#endif
    vec<T> y = -em1 / (T(2) + em1);
    return x < T(0) ? -y : y;
  }
}

// C (+)= A B for one register tile of M rows and Q vectors:
// C[m][j] = sum_k A(m, k) B[k][j] with A(m, k) = A[m*sam + k*sak].
// Without ACC, the sums start from the row `init` if given, else from 0.
// With K2 > 1 the sum runs over K2 runs of K: run u starts at A + u*sa2 and
// Bm + u*sb2. With SUM, also sums[j] = sum_k B[k][j], in the same order:
// the additions take the pipes that the FMAs leave free.
template <class T, int M, int Q, bool ACC, bool SUM = false>
inline void tile(T* C, long ldc, const T* A, long sam, long sak, const T* Bm,
                 long ldb, long K, long K2, long sa2, long sb2, const T* init,
                 T* sums = nullptr) {
  constexpr int L = simd<T>::L;
  vec<T> c[M][Q], cs[Q] = {};
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q)
      c[m][q] = ACC    ? load(C + m * ldc + q * L)
                : init ? load(init + q * L)
                       : vec<T>{};

  for (long u = 0; u < K2; ++u)
  for (long k = 0; k < K; ++k) {
    const T* b = Bm + u * sb2 + k * ldb;
    const T* a = A + u * sa2 + k * sak;
    vec<T> bv[Q];
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q) bv[q] = load(b + q * L);
    if constexpr (SUM)
#pragma GCC unroll 4
      for (int q = 0; q < Q; ++q) cs[q] += bv[q];
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      T am = a[m * sam];
#pragma GCC unroll 4
      for (int q = 0; q < Q; ++q) c[m][q] += am * bv[q];
    }
  }

#pragma GCC unroll 8
  for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q) store(C + m * ldc + q * L, c[m][q]);
  if constexpr (SUM)
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q) store(sums + q * L, cs[q]);
}

// Picks the tile instantiation for an edge tile of m <= M rows, q <= Q vectors.
template <class T, bool ACC, bool SUM = false, int M = MR, int Q = NR>
inline void edge_tile(int m, int q, T* C, long ldc, const T* A, long sam,
                      long sak, const T* Bm, long ldb, long K, long K2,
                      long sa2, long sb2, const T* init, T* sums = nullptr) {
  if constexpr (M > 1)
    if (m < M)
      return edge_tile<T, ACC, SUM, M - 1, Q>(m, q, C, ldc, A, sam, sak, Bm,
                                              ldb, K, K2, sa2, sb2, init, sums);
  if constexpr (Q > 1)
    if (q < Q)
      return edge_tile<T, ACC, SUM, M, Q - 1>(m, q, C, ldc, A, sam, sak, Bm,
                                              ldb, K, K2, sa2, sb2, init, sums);
  tile<T, M, Q, ACC, SUM>(C, ldc, A, sam, sak, Bm, ldb, K, K2, sa2, sb2, init,
                          sums);
}

// C (M x N, N a whole number of vectors) (+)= A (M x K) B (K x N); without
// ACC, each row of C starts from `init` (N wide) if given.
template <class T, bool ACC>
inline void gemm(T* C, long ldc, const T* A, long sam, long sak, const T* Bm,
                 long ldb, long M, long N, long K, const T* init = nullptr) {
  constexpr int L = simd<T>::L;
  for (long j = 0; j < N; j += NR * L) {
    int q = int(min(NR, (N - j) / L));
    for (long i = 0; i < M; i += MR)
      edge_tile<T, ACC>(int(min(MR, M - i)), q, C + i * ldc + j, ldc,
                        A + i * sam, sam, sak, Bm + j, ldb, K, 1, 0, 0,
                        init ? init + j : nullptr);
  }
}

// Whether a tile of MR x NR has registers left for NR column sums.
constexpr bool fused_sums =
    MR * NR + 2 * NR + 1 <= (RNNEXT_VBYTES == 64 ? 32 : 16);

// C (M x N) = sum over K2 runs of K tokens of A_k^T B_k. Token k of run u
// is row u*rb + k of B (ldb wide); its values of A for rows i .. i+MR-1 of
// C start at A + i*ai + u*sa2 + k*sak, one apart. Where fused_sums, `sums`
// (if given) gets the sums of the tokens' rows of B (N wide), taken by the
// first row of tiles; elsewhere it is left alone.
template <class T>
inline void gemm_tn(T* C, long ldc, const T* A, long ai, long sak, long sa2,
                    const T* Bm, long ldb, long rb, long M, long N, long K,
                    long K2, T* sums = nullptr) {
  constexpr int L = simd<T>::L;
  for (long j = 0; j < N; j += NR * L) {
    const int q = int(min(NR, (N - j) / L));
    for (long i = 0; i < M; i += MR) {
      const int mi = int(min(MR, M - i));
      if (fused_sums && sums && i == 0)
        edge_tile<T, false, fused_sums>(mi, q, C + j, ldc, A, 1, sak, Bm + j,
                                        ldb, K, K2, sa2, rb * ldb, nullptr,
                                        sums + j);
      else
        edge_tile<T, false>(mi, q, C + i * ldc + j, ldc, A + i * ai, 1, sak,
                            Bm + j, ldb, K, K2, sa2, rb * ldb, nullptr);
    }
  }
}

// tl[c*RL + r] = logit Vf + c of row r, with its bias, for the columns past
// V's last whole vector: dot products with rows of W_softmax^T (in a tile
// each would cost a vector of FMAs per hidden unit). Rows past m get the
// bias alone.
template <class T>
inline void tail_logits(T* tl, const T* h, long Hq, long Hp, const T* WsT,
                        const T* bias, long Vf, long V, long m) {
  constexpr int L = simd<T>::L;
  for (long c = Vf; c < V; ++c) {
    T* out = tl + (c - Vf) * RL<T>;
    const T* wc = WsT + c * Hp;
    if constexpr (across<T>) {
      vec<T> a[ROWS];
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; ++r) {
        a[r] = vec<T>{};
        if (r < m)
          for (long j = 0; j < Hp; j += L)
            a[r] += load(h + r * Hq + j) * load(wc + j);
      }
      store(out, row_sums<T, ROWS>(a) + bias[c]);
    } else {
      for (long r = 0; r < RL<T>; ++r) {
        vec<T> a{};
        if (r < m)
          for (long j = 0; j < Hp; j += L)
            a += load(h + r * Hq + j) * load(wc + j);
        out[r] = bias[c] + hsum<T>(a);
      }
    }
  }
}

// Softmax cross-entropy of m <= ROWS rows of logits z (Vp wide, the bias
// added), row r's target at y[r * ys]. Columns 0 .. Vw-1 are whole vectors,
// -inf past V; when Vw < V, columns Vw .. V-1 (fewer than a vector) are in
// tl, laid out by tail_logits, and are taken for all the rows at once.
// -log p[y] = log(s) + mx - z[y] with mx the row's max (0 if `shifted`: the
// bias has a bound on every logit taken off) and s = sum exp(z - mx): adds
// mx - z[y] to `linear` and multiplies `product` by s (folding it into
// `logs` before it can overflow), so that the caller takes one logarithm
// for many rows. With `grad`, overwrites each row with (p - onehot(y)) * w,
// 0 past V. Each pass runs over all the rows before the next begins, so
// that their chains overlap.
template <class T>
inline void softmax_xent(T* z, long m, long Vp, long Vw, long V, T* tl,
                         bool shifted, const int32_t* y, long ys, bool grad,
                         T w, double& linear, double& product, double& logs) {
  constexpr int L = simd<T>::L;
  const long nt = Vw < V ? V - Vw : 0;  // columns in tl
  alignas(64) T mx[RL<T>] = {}, s[RL<T>] = {}, f[RL<T>];
  T zy[ROWS];
  for (long r = 0; r < m; ++r) {
    const T* zr = z + r * Vp;
    const long yr = y[r * ys];
    zy[r] = yr < Vw ? zr[yr] : tl[(yr - Vw) * RL<T> + r];
    if (shifted) continue;
    vec<T> mv = splat<T>(-__builtin_inf());
    for (long v = 0; v < Vw; v += L) {
      vec<T> x = load(zr + v);
      mv = x > mv ? x : mv;
    }
    T top = hmax<T>(mv);
    for (long c = 0; c < nt; ++c)
      top = tl[c * RL<T> + r] > top ? tl[c * RL<T> + r] : top;
    mx[r] = top;
  }

  // s = the sums of exp(z - mx): of each row's vectors, then of tl's
  // columns, all rows at once
  auto exps = [&](long r) {
    T* zr = z + r * Vp;
    vec<T> sv{};
    for (long v = 0; v < Vw; v += L) {
      vec<T> e = vexp<T>(shifted ? load(zr + v) : load(zr + v) - mx[r]);
      sv += e;
      if (grad) store(zr + v, e);
    }
    return sv;
  };
  if constexpr (across<T>) {
    vec<T> sv[ROWS];
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) sv[r] = r < m ? exps(r) : vec<T>{};
    store(s, row_sums<T, ROWS>(sv));
  } else {
    for (long r = 0; r < m; ++r) s[r] = hsum<T>(exps(r));
  }
  for (long i = 0; i < RL<T>; i += L) {
    vec<T> si = load(s + i);
    for (long c = 0; c < nt; ++c) {
      vec<T> e = vexp<T>(load(tl + c * RL<T> + i) - load(mx + i));
      store(tl + c * RL<T> + i, e);
      si += e;
    }
    store(s + i, si);
    if (grad) store(f + i, w / si);
  }

  for (long r = 0; r < m; ++r) {
    T* zr = z + r * Vp;
    linear += double(mx[r]) - double(zy[r]);
    if (grad) {
      const T fr = f[r];
      for (long v = 0; v < Vw; v += L) store(zr + v, load(zr + v) * fr);
      if (nt) {  // built in a register: a vector load of just-stored
                 // scalars would wait for them to reach the cache
        vec<T> tv{};
        for (long c = 0; c < nt; ++c) tv[c] = tl[c * RL<T> + r];
        store(zr + Vw, tv * fr);
      }
      zr[y[r * ys]] -= w;
    }
    product *= double(s[r]);
    if (!(product > 1e-150 && product < 1e150))
      logs += __builtin_log(product), product = 1;
  }
}

// out (m, T) = rows b0 .. b0+m-1 of ids, as int32 (see IdView). The ids
// were checked before the call, but the caller's array is not locked while
// it runs: an id that another thread has since put out of [0, V) is read
// as 0, so that no id indexes past the parameters.
template <class I>
void widen(const IdView& ids, long b0, long m, long T, long V, int32_t* out) {
  for (long r = 0; r < m; ++r) {
    const char* p = ids.data + (b0 + r) * ids.row;
    for (long t = 0; t < T; ++t) {
      I x;
      __builtin_memcpy(&x, p + t * ids.col, sizeof x);
      out[r * T + t] = uint64_t(x) < uint64_t(V) ? int32_t(x) : 0;
    }
  }
}
inline void widen(const IdView& ids, long b0, long m, long T, long V,
                  int32_t* out) {
  switch (ids.width) {
    case 1: return widen<uint8_t>(ids, b0, m, T, V, out);
    case 2: return widen<uint16_t>(ids, b0, m, T, V, out);
    case 4: return widen<uint32_t>(ids, b0, m, T, V, out);
    default: return widen<uint64_t>(ids, b0, m, T, V, out);
  }
}

// Parameters padded to whole vectors, plus transposed copies for backward.
template <class T>
struct Padded {
  T *Wi, *Wh, *bh, *Ws, *bs;  // (V, Hp) (H, Hp) (Hp) (H, Vp) (Vp)
  T *WhT, *WsT;               // (H, Hp) (V, Hp)
  // Since |h| <= 1, no logit exceeds max_v (b_softmax[v] + sum_k
  // |W_softmax[k, v]|). When that bound is within `slack` of the largest
  // logit any row must have, max_v (b_softmax[v] - sum_k |W_softmax[k,
  // v]|), it serves every row as the softmax's shift: nothing overflows,
  // the largest term of each row's sum stays above e^-slack, and no pass
  // over the row is needed for its max.
  bool bounded;
  T* bsh;  // (Vp) b_softmax - that bound, when bounded
};

// A block's values lie together, in a region of their own: its rows, step
// by step. Blocks run on different threads, and regions are whole cache
// lines and a gap apart, so that no line, nor one that a core's prefetcher
// fetches with its neighbour, holds two blocks' values.
template <class T>
struct Work {
  // states and their gradients have rows Hq apart: Hp, or one vector more
  // when Hp would make them a whole number of 4 KB pages, which would put
  // the same column of successive rows into the same few cache sets
  long Hq;
  T* region;  // the first block's
  long span;  // elements from one block's region to the next
  // offsets in a region: (T + 1, ROWS, Hq) states h_0 .. h_T; (T, ROWS, Vp)
  // logits, then their gradient (one step when evaluating); (T, ROWS, Hq)
  // gradient through the output, then through tanh; (ROWS, Hq) gradient
  // flowing back in time, finally dL/dh0; (Hp) a column of dW_softmax;
  // (P) the block's share of the five parameter gradients, laid out as G;
  // (2, ROWS, T) its rows' input and target ids, as int32
  long at_logits, at_dz, at_dh, at_tail, at_partial, at_ids;
  T* G[5];  // padded parameter gradients, shaped as Padded's first five
  long P;   // elements of the five padded parameters together
  T* A[5];  // Mode::adagrad: the updated accumulators, shaped as G

  T* states(long blk) const { return region + blk * span; }
  T* logits(long blk) const { return states(blk) + at_logits; }
  T* dz(long blk) const { return states(blk) + at_dz; }
  T* dh(long blk) const { return states(blk) + at_dh; }
  T* tail(long blk) const { return states(blk) + at_tail; }
  T* partial(long blk) const { return states(blk) + at_partial; }
  int32_t* ids(long blk) const {
    return reinterpret_cast<int32_t*>(states(blk) + at_ids);
  }

  // Lays out the regions from the first cache line at or after `at`;
  // returns the elements they take from `at`.
  long lay_out(T* at, long blocks, long steps, long Vp, long Hp, bool grad) {
    constexpr long line = 64 / long(sizeof(T)), gap = 4 * line;
    region = reinterpret_cast<T*>(
        (reinterpret_cast<std::uintptr_t>(at) + 63) / 64 * 64);
    at_logits = (steps + 1) * ROWS * Hq;
    at_dz = at_logits + (grad ? steps : 1) * ROWS * Vp;
    at_dh = at_dz + (grad ? steps * ROWS * Hq : 0);
    at_tail = at_dh + (grad ? ROWS * Hq : 0);
    at_partial = round_up(at_tail + (grad ? Hp : 0), line);
    at_ids = round_up(at_partial + (grad ? P : 0), line);
    const long ids = 2 * ROWS * steps * 4 / long(sizeof(T));
    span = round_up(at_ids + ids, line) + gap;
    return blocks * span + line;
  }
};

// Forward through T steps for rows b0 .. b0+m, then (with gradients)
// backward through time. Returns the summed loss of the block's tokens.
template <class T>
double block(const Job<T>& J, const Padded<T>& P, const Work<T>& W, long blk) {
  constexpr int L = simd<T>::L;
  const long B = J.B, H = J.H, V = J.V;
  const long Hp = round_up(H, L), Vp = round_up(V, L), Hq = W.Hq;
  const long b0 = blk * ROWS, m = min(ROWS, B - b0);
  const bool grad = J.mode != Mode::evaluate;
  const T w = T(1.0 / double(B * J.T));
  const long Vf = V / L * L;  // columns of V in whole vectors
  const bool dots = V > Vf && (V - Vf) * (Hp / L + 8) < H;
  // the loss is sum log(s) + linear; s is in [e^-slack, V] (see Padded), so
  // the product of many s stays a normal double if it is folded into the
  // sum whenever it leaves [1e-150, 1e150]
  double linear = 0, logs = 0, product = 1;
  alignas(64) T tl[simd<T>::L * RL<T>];  // tail_logits' columns
  // which lanes of a row's last vector hold h (the rest is padding)
  typename simd<T>::i keep;
  for (int u = 0; u < L; ++u) keep[u] = Hp - L + u < H;

  T* const hs = W.states(blk);  // h_t of row r at hs + (t*ROWS + r)*Hq
  T* const dl = W.logits(blk);
  T* const dz = W.dz(blk);
  int32_t* const x = W.ids(blk);  // x_t of row r at x[r*T + t], y likewise
  int32_t* const y = x + ROWS * J.T;
  widen(J.X, b0, m, J.T, V, x);
  widen(J.Y, b0, m, J.T, V, y);

  // h_0, padded
  for (long r = 0; r < m; ++r) {
    T* h = hs + r * Hq;
    for (long j = 0; j < H; ++j) h[j] = J.h0[(b0 + r) * H + j];
    for (long j = H; j < Hp; ++j) h[j] = T(0);
  }

  for (long t = 0; t < J.T; ++t) {
    const T* hp = hs + t * ROWS * Hq;
    T* h = hs + (t + 1) * ROWS * Hq;

    // h_t = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
    for (long r = 0; r < m; ++r) {
      const T* wi = P.Wi + long(x[r * J.T + t]) * Hp;
      for (long j = 0; j < Hp; j += L)
        store(h + r * Hq + j, load(wi + j) + load(P.bh + j));
    }
    gemm<T, true>(h, Hq, hp, Hq, 1, P.Wh, Hp, m, Hp, H);
    for (long r = 0; r < m; ++r)
      for (long j = 0; j < Hp; j += L)
        store(h + r * Hq + j, vtanh<T>(load(h + r * Hq + j)));
    // an infinite h_{t-1} leaves NaN (inf * 0) in the padding past H, which
    // tail_logits' dot products read: it is set back to 0
    if (H < Hp)
      for (long r = 0; r < m; ++r) {
        T* last = h + r * Hq + Hp - L;
        store(last, keep ? load(last) : vec<T>{});
      }

    // logits_t = h_t @ W_softmax + b_softmax, the sums started from the
    // bias, then the loss and its gradient; the columns past V's last whole
    // vector, when few, apart (see tail_logits)
    T* z = grad ? dl + t * ROWS * Vp : dl;
    const T* bias = P.bounded ? P.bsh : P.bs;
    gemm<T, false>(z, Vp, h, Hq, 1, P.Ws, Vp, m, dots ? Vf : Vp, H, bias);
    if (dots) tail_logits(tl, h, Hq, Hp, P.WsT, bias, Vf, V, m);
    softmax_xent(z, m, Vp, dots ? Vf : Vp, V, tl, P.bounded, y + t, J.T, grad,
                 w, linear, product, logs);

    // dh_t from the output: dL/dlogits_t @ W_softmax^T
    if (grad)
      gemm<T, false>(dz + t * ROWS * Hq, Hq, z, Vp, 1, P.WsT, Hp, m, Hp, V);
  }
  for (long r = 0; r < m; ++r)
    for (long j = 0; j < H; ++j)
      J.hT[(b0 + r) * H + j] = hs[(J.T * ROWS + r) * Hq + j];
  const double loss = logs + __builtin_log(product) + linear;
  if (!grad) return loss;

  T* dh = W.dh(blk);
  for (long r = 0; r < m; ++r)
    for (long j = 0; j < Hp; j += L) store(dh + r * Hq + j, vec<T>{});
  for (long t = J.T - 1; t >= 0; --t) {
    const T* h = hs + (t + 1) * ROWS * Hq;
    T* dzt = dz + t * ROWS * Hq;

    // through h_t = tanh(z_t): dz_t = (dh_out + dh_next) * (1 - h_t^2)
    for (long r = 0; r < m; ++r)
      for (long j = r * Hq; j < r * Hq + Hp; j += L) {
        vec<T> hv = load(h + j);
        store(dzt + j, (load(dzt + j) + load(dh + j)) * (T(1) - hv * hv));
      }

    // through z_t = ... + h_{t-1} @ W_hidden: dh_{t-1} = dz_t @ W_hidden^T
    gemm<T, false>(dh, Hq, dzt, Hq, 1, P.WhT, Hp, m, Hp, H);
  }
  return loss;
}

// The weight gradients of one block's tokens, written to its partial
// (the five padded gradients, laid out as Padded's first five). Run by the
// thread that just computed the block, while its activations are in cache.
template <class T>
void block_gradients(const Job<T>& J, const Work<T>& W, long blk) {
  constexpr int L = simd<T>::L;
  const long B = J.B, H = J.H, V = J.V, Tn = J.T, S = ROWS;
  const long Hp = round_up(H, L), Vp = round_up(V, L), Hq = W.Hq;
  const long b0 = blk * ROWS, m = min(ROWS, B - b0);
  T* g = W.partial(blk);
  T *dWi = g, *dWh = dWi + V * Hp, *dbh = dWh + H * Hp, *dWs = dbh + Hp,
    *dbs = dWs + H * Vp;
  // token (t, r) at dl + (t*S + r)*Vp, dz + (t*S + r)*Hq; h_{t-1} likewise
  // at h, h_t one step (S rows) on
  const T* dl = W.logits(blk);
  const T* dz = W.dz(blk);
  const T* h = W.states(blk);
  const int32_t* x = W.ids(blk);  // x_t of row r at x[r*T + t]

  // dW_softmax = sum h_t^T dlogits_t, dW_hidden = sum h_{t-1}^T dz_t; the
  // columns of V past its last whole vector are taken apart below
  const long Vf = V / L * L;
  // When the block's states are too large for this core's cache, each
  // tile's reads of h, one row per token, would stride across pages: h_0 ..
  // h_T are packed instead, for each run of MR hidden units the tokens in
  // order, MR values each. Both ways do the same arithmetic; a thread that
  // cannot have the buffer (a pool thread must not throw) takes the first.
  const long n = (Tn + 1) * m, Hm = round_up(H, MR);
  const std::size_t pack = std::size_t(n * Hm) * sizeof(T);
  T* hk = n * Hp * long(sizeof(T)) > PACK_ABOVE
              ? static_cast<T*>(scratch_or_null(pack, 1))
              : nullptr;
  if (hk) {
    // (a tile reads no values past H, so none are written)
    for (long t = 0; t <= Tn; ++t)
      for (long r = 0; r < m; ++r) {
        const T* src = h + (t * S + r) * Hq;
        T* dst = hk + (t * m + r) * MR;
        long i = 0;
        for (; i + MR <= H; i += MR)
          for (int u = 0; u < MR; ++u) dst[i * n + u] = src[i + u];
        for (; i < H; ++i) dst[i / MR * MR * n + i % MR] = src[i];
      }
    gemm_tn(dWs, Vp, hk + m * MR, n, MR, m * MR, dl, Vp, S, H, Vf, m, Tn, dbs);
    gemm_tn(dWh, Hp, hk, n, MR, m * MR, dz, Hq, S, H, Hp, m, Tn, dbh);
  } else {
    gemm_tn(dWs, Vp, h + S * Hq, 1, Hq, S * Hq, dl, Vp, S, H, Vf, m, Tn, dbs);
    gemm_tn(dWh, Hp, h, 1, Hq, S * Hq, dz, Hq, S, H, Hp, m, Tn, dbh);
  }

  // out = the sum over the block's tokens of their rows of src (n columns,
  // token (t, r) at src + (t*S + r)*ld), each row times wt[(t*S + r)*ws]
  // if wt is given; a few vectors at a time, held in registers
  auto column_sums = [&](T* out, const T* src, long ld, long n, const T* wt,
                         long ws) {
    for (long j0 = 0; j0 < n; j0 += 4 * L) {
      const int q = int(min(4, (n - j0) / L));
      vec<T> a[4] = {};
      for (long t = 0; t < Tn; ++t)
        for (long r = 0; r < m; ++r) {
          const T* x = src + (t * S + r) * ld + j0;
          if (wt) {
            const T d = wt[(t * S + r) * ws];
            for (int u = 0; u < q; ++u) a[u] += d * load(x + u * L);
          } else {
            for (int u = 0; u < q; ++u) a[u] += load(x + u * L);
          }
        }
      for (int u = 0; u < q; ++u) store(out + j0 + u * L, a[u]);
    }
  };

  // column c of those: sum dlogits_t[c] h_t, a vector over H (in a tile
  // over H it would cost a whole vector of FMAs per hidden unit and token)
  T* col = W.tail(blk);
  if (Vf < Vp)
    for (long k = 0; k < H; ++k) store(dWs + k * Vp + Vf, vec<T>{});
  for (long c = Vf; c < V; ++c) {
    column_sums(col, h + S * Hq, Hq, Hp, dl + c, Vp);
    for (long k = 0; k < H; ++k) dWs[k * Vp + c] = col[k];
  }

  // db_softmax, db_hidden, where the products above did not take them;
  // dW_input[x] += dz, in token order
  if (fused_sums) {
    column_sums(dbs + Vf, dl + Vf, Vp, Vp - Vf, nullptr, 0);
  } else {
    column_sums(dbs, dl, Vp, Vp, nullptr, 0);
    column_sums(dbh, dz, Hq, Hp, nullptr, 0);
  }
  for (long i = 0; i < V * Hp; i += L) store(dWi + i, vec<T>{});
  for (long t = 0; t < Tn; ++t)
    for (long r = 0; r < m; ++r) {
      const T* z = dz + (t * S + r) * Hq;
      T* wi = dWi + long(x[r * Tn + t]) * Hp;
      for (long j = 0; j < Hp; j += L) store(wi + j, load(wi + j) + load(z + j));
    }
}

// Shapes of the five parameters as (rows, cols), and their padded widths.
template <class T>
void shapes(const Job<T>& J, long rows[5], long cols[5], long ld[5]) {
  constexpr int L = simd<T>::L;
  const long H = J.H, V = J.V, Hp = round_up(H, L), Vp = round_up(V, L);
  const long r[5] = {V, H, 1, H, 1}, c[5] = {H, H, H, V, V};
  const long l[5] = {Hp, Hp, Hp, Vp, Vp};
  for (int p = 0; p < 5; ++p) rows[p] = r[p], cols[p] = c[p], ld[p] = l[p];
}

// The number of rows of the five parameters together.
template <class T>
inline long param_rows(const Job<T>& J) {
  return 2 * J.H + J.V + 2;
}

// The update of n values: g becomes the new weights, an the new
// accumulators; g is scaled by s, then clipped to [-cl, cl] if cl > 0.
// Returns 1 if a new value is not finite.
template <class T>
int adagrad(T* __restrict g, T* __restrict an, const T* __restrict w,
            const T* __restrict a, long n, T s, T lr, T eps, T cl) {
  for (long j = 0; j < n; ++j) {
    T gj = g[j] * s;
    if (cl > 0) gj = gj < -cl ? -cl : (gj > cl ? cl : gj);
    an[j] = a[j] + gj * gj;
    g[j] = w[j] - lr * gj / (sqrt_(an[j]) + eps);
  }
  // x - x is 0 for every finite x, NaN for inf and NaN
  int any = 0;
  for (long j = 0; j < n; ++j)
    any |= int(g[j] - g[j] != T(0)) | int(an[j] - an[j] != T(0));
  return any;
}

// What the phases of one call share; the phases after the blocks work on
// groups of consecutive parameter rows.
template <class T>
struct Context {
  const Job<T>& J;
  const Padded<T>& P;
  const Work<T>& W;
  const long *rows, *cols, *ld;
  long prows, groups;
  double* block_loss;
  double* row_sq;   // per parameter row: squared gradient norm
  int* bad;         // set if an updated value is not finite
  long* finished;   // per group of FOLD blocks: how many have their partials
  long blocks;
  bool update_now;  // the update is taken with the sums (no clipping by norm)
  T scale;          // of the gradients, for clipping by norm

  // Once the last block of b's group has its partial, whichever thread
  // computed that block sums the group's partials in block order into the
  // group's first. The groups do not depend on the thread count, so neither
  // does the order of any sum, and most groups are summed where their
  // partials are in cache.
  void fold(long b) const {
    constexpr int L = simd<T>::L;
    const long b0 = b / FOLD * FOLD, n = min(FOLD, blocks - b0);
    if (__atomic_add_fetch(&finished[b / FOLD], 1, __ATOMIC_ACQ_REL) != n) return;
    T* g = W.partial(b0);
    for (long j = 0; j < W.P; j += L) {
      vec<T> s = load(g + j);
      for (long i = 1; i < n; ++i) s += load(W.partial(b0 + i) + j);
      store(g + j, s);
    }
  }

  // Calls fn(k, i0, i1, r0, offset) for each parameter k with rows in task
  // g: its rows i0 .. i1-1, which are parameter rows r0 .. of the five and
  // start at `offset` in the padded five laid end to end.
  template <class Fn>
  void for_runs(long g, Fn&& fn) const {
    const long g0 = prows * g / groups, g1 = prows * (g + 1) / groups;
    long r = 0, offset = 0;
    for (int k = 0; k < 5; r += rows[k], offset += rows[k] * ld[k], ++k) {
      const long i0 = g0 > r ? g0 - r : 0, i1 = min(rows[k], g1 - r);
      if (i0 < i1) fn(k, i0, i1, r + i0, offset + i0 * ld[k]);
    }
  }

  // Calls fn(unpadded, padded, n) on pieces of rows i0 .. i1-1 of parameter
  // k: n elements at `unpadded` in its own layout and at `padded` in the
  // padded one; the rows are one piece when no padding separates them.
  template <class Fn>
  void for_pieces(int k, long i0, long i1, Fn&& fn) const {
    if (cols[k] == ld[k]) return fn(i0 * cols[k], i0 * ld[k], (i1 - i0) * cols[k]);
    for (long i = i0; i < i1; ++i) fn(i * cols[k], i * ld[k], cols[k]);
  }

  // accum += g*g; w -= lr * g / (sqrt(accum) + eps) for rows i0 .. i1-1 of
  // parameter k, into W.A and W.G, so that nothing changes if a new value
  // is not finite (which sets *bad)
  void update(int k, long i0, long i1) const {
    const T lr = T(J.lr), eps = T(J.eps), cl = J.clip > 0 ? T(J.clip) : T(0);
    int any = 0;
    for_pieces(k, i0, i1, [&](long u, long p, long n) {
      any |= adagrad(W.G[k] + p, W.A[k] + p, J.param[k] + u, J.accum[k] + u, n,
                     scale, lr, eps, cl);
    });
    if (any) __atomic_store_n(bad, 1, __ATOMIC_RELAXED);
  }
};

template <class T>
Outcome fused(const Job<T>& J) {
  constexpr int L = simd<T>::L;
  const long B = J.B, H = J.H, V = J.V, N = J.T * B;
  const long Hp = round_up(H, L), Vp = round_up(V, L);
  const long blocks = (B + ROWS - 1) / ROWS;
  const bool grad = J.mode != Mode::evaluate;
  long rows[5], cols[5], ld[5];
  shapes(J, rows, cols, ld);

  // one allocation: padded parameters, gradients and accumulators, the
  // blocks' regions, losses
  const long padded = V * Hp + H * Hp + Hp + H * Vp + Vp;
  Work<T> W{};
  W.Hq = Hp * long(sizeof(T)) % 4096 == 0 ? Hp + L : Hp;
  W.P = padded;
  const int copies = J.mode == Mode::adagrad ? 3 : (grad ? 2 : 1);
  const long regions = W.lay_out(nullptr, blocks, J.T, Vp, Hp, grad);
  const long total = padded * copies + H * Hp + V * Hp + Vp + regions;
  // 8-byte slots, one per block, one per parameter row, one per group of
  // FOLD blocks and one more, then 64-byte aligned
  const long folds = (blocks + FOLD - 1) / FOLD;
  const long losses = round_up(blocks + param_rows(J) + folds + 1, 8);
  double* block_loss = static_cast<double*>(
      scratch(std::size_t(losses + total) * sizeof(double)));
  double* row_sq = block_loss + blocks;
  T* mem = reinterpret_cast<T*>(block_loss + losses);

  T* p = mem;
  auto take = [&p](long n) { T* q = p; p += n; return q; };
  Padded<T> P;
  T** pp[5] = {&P.Wi, &P.Wh, &P.bh, &P.Ws, &P.bs};
  for (int k = 0; k < 5; ++k) *pp[k] = take(rows[k] * ld[k]);
  P.WhT = grad ? take(H * Hp) : nullptr;
  P.WsT = take(V * Hp);
  P.bsh = take(Vp);
  if (grad)
    for (int k = 0; k < 5; ++k) W.G[k] = take(rows[k] * ld[k]);
  if (J.mode == Mode::adagrad)
    for (int k = 0; k < 5; ++k) W.A[k] = take(rows[k] * ld[k]);
  W.lay_out(take(regions), blocks, J.T, Vp, Hp, grad);

  // after the blocks, the parameter rows are split into `groups` tasks, each
  // of consecutive rows; small loops are not worth waking threads for
  const long prows = param_rows(J);
  const long groups = padded > 65536 ? min(prows, 4L * J.threads) : 1;
  long* finished = reinterpret_cast<long*>(row_sq + prows);
  for (long g = 0; g < folds; ++g) finished[g] = 0;
  int* bad = reinterpret_cast<int*>(finished + folds);
  *bad = 0;
  const bool update_now = J.mode == Mode::adagrad && !(J.clip_norm > 0);
  Context<T> ctx{J, P, W, rows, cols, ld, prows, groups, block_loss,
                 row_sq, bad, finished, blocks, update_now, T(1)};

  // parameter rows padded with zeros (b_softmax with -inf, so padded logits
  // vanish) and the transposes, a share in each task
  parallel_for(groups, J.threads, [](void* c, long g) {
    const Context<T>& x = *static_cast<const Context<T>*>(c);
    const Job<T>& J = x.J;
    const long H = J.H, V = J.V, Hp = x.ld[1], ng = x.groups;
    x.for_runs(g, [&](int k, long i0, long i1, long, long) {
      const T pad = k == 4 ? -__builtin_inf() : T(0);
      T* const dst[5] = {x.P.Wi, x.P.Wh, x.P.bh, x.P.Ws, x.P.bs};
      x.for_pieces(k, i0, i1, [&](long u, long p, long n) {
        for (long j = 0; j < n; ++j) dst[k][p + j] = J.param[k][u + j];
      });
      if (x.cols[k] < x.ld[k])
        for (long i = i0; i < i1; ++i)
          for (long j = x.cols[k]; j < x.ld[k]; ++j) dst[k][i * x.ld[k] + j] = pad;
    });
    // rows c0 .. c1-1 of dst (Hp wide) = columns c0 .. c1-1 of src (H rows,
    // n wide), zero past H; eight rows of src at a time, read along them
    auto transpose = [&](T* dst, const T* src, long n, long c0, long c1) {
      for (long i0 = 0; i0 < Hp; i0 += 8)
        for (long c = c0; c < c1; ++c)
          for (long i = i0; i < i0 + 8 && i < Hp; ++i)
            dst[c * Hp + i] = i < H ? src[i * n + c] : T(0);
    };
    if (J.mode != Mode::evaluate)
      transpose(x.P.WhT, J.param[1], H, H * g / ng, H * (g + 1) / ng);
    transpose(x.P.WsT, J.param[3], V, V * g / ng, V * (g + 1) / ng);
  }, &ctx);

  // the logits' bound (see Padded), from the rows of W_softmax^T
  T hi = -__builtin_inf(), lo = -__builtin_inf();
  for (long v = 0; v < V; ++v) {
    vec<T> a{};
    for (long i = 0; i < Hp; i += L) {
      vec<T> x = load(P.WsT + v * Hp + i);
      a += x < T(0) ? -x : x;
    }
    const T sum = hsum<T>(a), b = J.param[4][v];
    hi = b + sum > hi ? b + sum : hi;
    lo = b - sum > lo ? b - sum : lo;
  }
  const T slack = sizeof(T) == 4 ? T(60) : T(300);
  P.bounded = hi - lo <= slack;  // false for inf and NaN
  if (P.bounded)
    for (long v = 0; v < Vp; v += L) store(P.bsh + v, load(P.bs + v) - hi);

  parallel_for(blocks, J.threads, [](void* c, long b) {
    const Context<T>& x = *static_cast<const Context<T>*>(c);
    x.block_loss[b] = block(x.J, x.P, x.W, b);
    if (x.J.mode != Mode::evaluate) {
      block_gradients(x.J, x.W, b);
      x.fold(b);
    }
  }, &ctx);

  Outcome out{0.0, 0.0, false};
  for (long b = 0; b < blocks; ++b) out.loss += block_loss[b];
  out.loss /= double(N);
  if (!grad) return out;

  // the groups' sums of partials summed in order, each row's squared norm
  // (eight running sums, then paired), and the update unless clipping by norm
  // needs the total norm first
  parallel_for(groups, J.threads, [](void* c, long g) {
    const Context<T>& x = *static_cast<const Context<T>*>(c);
    x.for_runs(g, [&](int k, long i0, long i1, long r0, long offset) {
      constexpr int L = simd<T>::L;
      const long ld = x.ld[k], n = x.cols[k];
      const T* gp = x.W.partial(0) + offset;  // blocks are W.span apart
      T* gr = x.W.G[k] + i0 * ld;
      for (long j = 0; j < (i1 - i0) * ld; j += L) {
        vec<T> s = load(gp + j);
        for (long b = FOLD; b < x.blocks; b += FOLD)
          s += load(gp + b * x.W.span + j);
        store(gr + j, s);
      }
      for (long i = 0; i < i1 - i0; ++i) {
        const T* row = gr + i * ld;
        double s[8] = {};
        long j = 0;
        for (; j + 8 <= n; j += 8)
          for (int u = 0; u < 8; ++u) s[u] += double(row[j + u]) * double(row[j + u]);
        for (; j < n; ++j) s[0] += double(row[j]) * double(row[j]);
        x.row_sq[r0 + i] =
            ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      }
      if (x.update_now) x.update(k, i0, i1);
    });
  }, &ctx);
  double sq = 0;
  for (long r = 0; r < prows; ++r) sq += row_sq[r];
  out.grad_norm = __builtin_sqrt(sq);

  if (J.mode == Mode::gradients) {
    for (int k = 0; k < 5; ++k)
      for (long i = 0; i < rows[k]; ++i)
        for (long j = 0; j < cols[k]; ++j)
          J.grad[k][i * cols[k] + j] = W.G[k][i * ld[k] + j];
    for (long b = 0; b < B; ++b)
      for (long j = 0; j < H; ++j)
        J.grad_h0[b * H + j] = W.dh(b / ROWS)[b % ROWS * W.Hq + j];
    return out;
  }
  if (!__builtin_isfinite(out.loss) || !__builtin_isfinite(out.grad_norm))
    return out;

  if (!update_now) {
    if (out.grad_norm > J.clip_norm) ctx.scale = T(J.clip_norm / out.grad_norm);
    parallel_for(groups, J.threads, [](void* c, long g) {
      const Context<T>& x = *static_cast<const Context<T>*>(c);
      x.for_runs(g, [&](int k, long i0, long i1, long, long) { x.update(k, i0, i1); });
    }, &ctx);
  }
  if (*ctx.bad) return out;

  parallel_for(groups, J.threads, [](void* c, long g) {
    const Context<T>& x = *static_cast<const Context<T>*>(c);
    x.for_runs(g, [&](int k, long i0, long i1, long, long) {
      x.for_pieces(k, i0, i1, [&](long u, long p, long n) {
        for (long j = 0; j < n; ++j) {
          x.J.param[k][u + j] = x.W.G[k][p + j];
          x.J.accum[k][u + j] = x.W.A[k][p + j];
        }
      });
    });
  }, &ctx);
  out.updated = true;
  return out;
}

}  // namespace

Outcome run_f32(const Job<float>& job) { return fused(job); }
Outcome run_f64(const Job<double>& job) { return fused(job); }

}  // namespace RNNEXT_ISA
}  // namespace rnnext
