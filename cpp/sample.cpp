// Sampling text from a trained char-RNN: one state per stream, no batching
// across streams and no beam search.
//
// Sizes: H hidden, V vocabulary, P prime length, L generated length.
//
//     h_t      = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
//     logits_t = h_t @ W_softmax + b_softmax
//     x_{t+1}  = argmax(logits_t), or a draw from softmax(logits_t / T)
//
// Results depend only on the inputs and (seed, stream index), never on the
// thread count: the generator is our own, and exp and tanh are our own
// polynomials rather than libm's. The x86-64-v3 and -v4 builds agree bit for
// bit; the baseline build has no FMA, so its roundings, and after a long
// run its text, can differ.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "pool.hpp"

namespace py = pybind11;

// Helpers are inlined into each instruction-set clone of the entry points.
#define RNNEXT_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RNNEXT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RNNEXT_CLONES
#endif

namespace {

// ---------------------------------------------------------------------------
// Random numbers: splitmix64 seeds a xoshiro256** generator per stream.

RNNEXT_INLINE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

RNNEXT_INLINE uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

struct Rng {
  uint64_t s[4];

  // For one seed, distinct streams get distinct keys because mix64 is a
  // bijection; splitmix64 then spreads each key over the four state words.
  Rng(uint64_t seed, uint64_t stream) {
    uint64_t key = mix64(seed) ^ mix64(stream + 0x9E3779B97F4A7C15ull);
    for (uint64_t& w : s) {
      key += 0x9E3779B97F4A7C15ull;
      w = mix64(key);
    }
  }

  RNNEXT_INLINE uint64_t next() {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  RNNEXT_INLINE double uniform() { return (next() >> 11) * 0x1.0p-53; }
};

// ---------------------------------------------------------------------------
// e^x for x <= 0 and tanh, free of branches so that loops calling them
// vectorise. x = n ln2 + r with |r| <= ln2 / 2, and e^r - 1 is a Taylor
// polynomial whose truncation error is below the type's rounding error.

template <typename F>
struct Poly;

template <>
struct Poly<float> {
  using Bits = int32_t;
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float magic = 0x1.8p23f;  // t + magic rounds t to integer
  static constexpr float log2e = 0x1.715476p+0f;
  static constexpr float ln2_hi = 0x1.63p-1f;  // n * ln2_hi is exact
  static constexpr float ln2_lo = -0x1.bd0106p-13f;
  static constexpr float lowest = -87.0f;  // e^lowest is still normal
};

template <>
struct Poly<double> {
  using Bits = int64_t;
  static constexpr int mantissa = 52, bias = 1023, degree = 13;
  static constexpr double magic = 0x1.8p52;
  static constexpr double log2e = 0x1.71547652b82fep+0;
  static constexpr double ln2_hi = 0x1.62e42fefa38p-1;
  static constexpr double ln2_lo = 0x1.ef35793c7673p-45;
  static constexpr double lowest = -708.0;
};

template <typename F>
RNNEXT_INLINE typename Poly<F>::Bits to_bits(F x) {
  typename Poly<F>::Bits b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

template <typename F>
RNNEXT_INLINE F from_bits(typename Poly<F>::Bits b) {
  F x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// 2^n and e^r - 1 for x = n ln2 + r; x must be >= Poly<F>::lowest.
template <typename F>
RNNEXT_INLINE void exp_parts(F x, F& scale, F& em1) {
  using P = Poly<F>;

  F t = x * P::log2e + P::magic;
  F n = t - P::magic;
  F r = (x - n * P::ln2_hi) - n * P::ln2_lo;

  // e^r - 1 = r (1 + r/2! + ... + r^(d-1)/d!), Horner over 1/k!
  F coef[P::degree];
  F factorial = F(1);
  for (int k = 1; k <= P::degree; ++k) {
    factorial *= F(k);
    coef[k - 1] = F(1) / factorial;
  }
  F q = coef[P::degree - 1];
  for (int k = P::degree - 2; k >= 0; --k) q = q * r + coef[k];
  em1 = q * r;

  // The low mantissa bits of t hold n; 2^n is n + bias in the exponent.
  scale =
      from_bits<F>((to_bits(t) - to_bits(P::magic) + P::bias) << P::mantissa);
}

// The bits of |x|: as integers they order like |x|, and selects on them,
// unlike selects on floats, never stop the vectoriser.
template <typename F>
RNNEXT_INLINE typename Poly<F>::Bits magnitude(F x) {
  return to_bits(x) & std::numeric_limits<typename Poly<F>::Bits>::max();
}

// -min(|x|, -lowest), which exp_parts accepts; over is all ones where |x|
// was past the limit (or NaN), else 0.
template <typename F>
RNNEXT_INLINE F clamp_negative(F x, typename Poly<F>::Bits& over) {
  using Bits = typename Poly<F>::Bits;
  const Bits limit = magnitude(Poly<F>::lowest);
  Bits m = magnitude(x);
  over = -Bits(m > limit);
  return -from_bits<F>((m & ~over) | (limit & over));
}

// e^x for x <= 0: exactly 0 below Poly<F>::lowest, and for NaN.
template <typename F>
RNNEXT_INLINE F exp_nonpositive(F x) {
  typename Poly<F>::Bits over;
  F scale, em1;
  exp_parts(clamp_negative(x, over), scale, em1);
  F y = scale + scale * em1;
  return from_bits<F>(magnitude(y) & ~over);
}

// tanh(y) = -e / (e + 2) with e = e^(-2|y|) - 1, accurate near 0.
template <typename F>
RNNEXT_INLINE F tanh_poly(F y) {
  typename Poly<F>::Bits over;
  F scale, em1;
  exp_parts(clamp_negative(F(2) * y, over), scale, em1);
  F e = (scale - F(1)) + scale * em1;
  F t = (F(0) - e) / (e + F(2));  // +0 at y = +0
  return std::copysign(t, y);
}

// ---------------------------------------------------------------------------
// The kernel. It trusts its inputs: the binding layer has checked them.
//
// Products run over blocks of kLanes<F> columns, 64 bytes: one AVX-512
// register, two AVX2 or four SSE2 ones. The weights are copied once per call
// into rows padded to Hp, Vp (multiples of kLanes<F>), so no loop has a
// remainder. Padding holds 0, except in b_softmax, where it holds -inf so
// that padded logits are never chosen.

template <typename F>
constexpr int64_t kLanes = 64 / sizeof(F);

template <typename F>
struct BlockOf {
  typedef F type __attribute__((vector_size(64)));
};
template <typename F>
using Block = typename BlockOf<F>::type;

// Unaligned load of one block. Blocks pass by reference only: by value they
// would have a different calling convention in each clone.
template <typename F>
RNNEXT_INLINE void load(Block<F>& b, const F* p) {
  std::memcpy(&b, p, sizeof b);
}

template <typename F>
struct Net {
  const F* W_input;    // (V, Hp)
  const F* W_hidden;   // (H, Hp)
  const F* b_hidden;   // (Hp,)
  const F* W_softmax;  // (H, Vp)
  const F* b_softmax;  // (Vp,)
  int64_t H, V, Hp, Vp;
};

struct Plan {
  const int32_t* prime;  // (P,)
  int64_t P, L;
  double temperature;
  bool greedy;
  int64_t top_k;  // 0: all V
  uint64_t seed;
};

// y[0:kLanes] = bias[0:kLanes] + x[0:n] @ W[0:n, 0:kLanes] for W with row
// stride ld; y may be bias. Four partial sums shorten the chain of
// dependent adds.
template <typename F>
RNNEXT_INLINE void affine_block(F* y, const F* bias, const F* __restrict x,
                                const F* __restrict W, int64_t n, int64_t ld) {
  Block<F> a0, a1 = {}, a2 = {}, a3 = {}, w0, w1, w2, w3;
  load(a0, bias);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    load(w0, W + i * ld);
    load(w1, W + (i + 1) * ld);
    load(w2, W + (i + 2) * ld);
    load(w3, W + (i + 3) * ld);
    a0 += x[i] * w0;
    a1 += x[i + 1] * w1;
    a2 += x[i + 2] * w2;
    a3 += x[i + 3] * w3;
  }
  for (; i < n; ++i) {
    load(w0, W + i * ld);
    a0 += x[i] * w0;
  }
  a0 = (a0 + a1) + (a2 + a3);
  std::memcpy(y, &a0, sizeof a0);
}

// h_next = tanh(W_input[x] + h @ W_hidden + b_hidden)
template <typename F>
RNNEXT_INLINE void recur(F* __restrict h_next, const F* __restrict h,
                         const Net<F>& net, int32_t x) {
  const F* w_x = net.W_input + x * net.Hp;
  for (int64_t j = 0; j < net.Hp; ++j) h_next[j] = w_x[j] + net.b_hidden[j];
  for (int64_t j = 0; j < net.Hp; j += kLanes<F>)
    affine_block(h_next + j, h_next + j, h, net.W_hidden + j, net.H, net.Hp);
#pragma omp simd
  for (int64_t j = 0; j < net.Hp; ++j) h_next[j] = tanh_poly(h_next[j]);
}

// logits = h @ W_softmax + b_softmax
template <typename F>
RNNEXT_INLINE void project(F* __restrict logits, const F* __restrict h,
                           const Net<F>& net) {
  for (int64_t v = 0; v < net.Vp; v += kLanes<F>)
    affine_block(logits + v, net.b_softmax + v, h, net.W_softmax + v, net.H,
                 net.Vp);
}

// Largest element; its sign of zero may vary, which no caller depends on.
template <typename F>
RNNEXT_INLINE F max_of(const F* __restrict x, int64_t n) {
  F m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < n; ++v) m = x[v] > m ? x[v] : m;
  return m;
}

// Sum in double over kLanes<F> fixed lanes, so that the result does not
// depend on the vector width. n is a multiple of kLanes<F>.
template <typename F>
RNNEXT_INLINE double sum_of(const F* __restrict x, int64_t n) {
  constexpr int64_t K = kLanes<F>;
  double lane[K] = {};
  for (int64_t v = 0; v < n; v += K)
    for (int64_t l = 0; l < K; ++l) lane[l] += double(x[v + l]);
  double s = 0;
  for (int64_t l = 0; l < K; ++l) s += lane[l];
  return s;
}

// First index holding the largest logit; 0 if none compares equal (NaN).
template <typename F>
RNNEXT_INLINE int32_t argmax(const F* __restrict logits, int64_t V,
                             int64_t Vp) {
  F m = max_of(logits, Vp);
  for (int64_t v = 0; v < V; ++v)
    if (logits[v] == m) return int32_t(v);
  return 0;
}

// An integer that orders like x for every x, NaN included, with -0 == +0.
template <typename F>
RNNEXT_INLINE typename Poly<F>::Bits order_key(F x) {
  using Bits = typename Poly<F>::Bits;
  Bits b = to_bits(x + F(0));  // -0 becomes +0
  return b < 0 ? b ^ std::numeric_limits<Bits>::max() : b;
}

// Zeroes p outside the top_k largest logits, ties going to the lower index.
// keys is scratch of V elements.
template <typename F>
RNNEXT_INLINE void keep_top_k(F* __restrict p,
                              typename Poly<F>::Bits* __restrict keys,
                              const F* __restrict logits, int64_t top_k,
                              int64_t V) {
  using Bits = typename Poly<F>::Bits;
  for (int64_t v = 0; v < V; ++v) keys[v] = order_key(logits[v]);
  std::nth_element(keys, keys + top_k - 1, keys + V, std::greater<Bits>());
  const Bits kth = keys[top_k - 1];

  int64_t ties = top_k;  // how many keys equal to kth may still be kept
  for (int64_t v = 0; v < V; ++v) ties -= order_key(logits[v]) > kth;
  for (int64_t v = 0; v < V; ++v) {
    Bits key = order_key(logits[v]);
    if (key > kth) continue;
    if (key == kth && ties > 0)
      --ties;
    else
      p[v] = F(0);
  }
}

// Index drawn with probability p[v] / sum(p): the first v whose running
// sum passes u * sum(p). p >= 0, padded with zeros to Vp.
template <typename F>
RNNEXT_INLINE int32_t draw(const F* __restrict p, double u, int64_t V,
                           int64_t Vp) {
  double target = u * sum_of(p, Vp);
  double cum = 0;
  int32_t last = 0;
  for (int64_t v = 0; v < V; ++v) {
    cum += double(p[v]);
    if (p[v] > F(0)) last = int32_t(v);
    if (target < cum) return int32_t(v);
  }
  return last;  // rounding put target at or past the final running sum
}

// Next character: argmax, or a draw from p = exp((logits - max) / T).
template <typename F>
RNNEXT_INLINE int32_t choose(F* __restrict p,
                             typename Poly<F>::Bits* __restrict keys,
                             const F* __restrict logits, const Plan& plan,
                             Rng& rng, int64_t V, int64_t Vp) {
  if (plan.greedy) return argmax(logits, V, Vp);

  // A temperature below the type's smallest normal would round to 0.
  F T = std::max(F(plan.temperature), std::numeric_limits<F>::min());
  F m = max_of(logits, Vp);
#pragma omp simd
  for (int64_t v = 0; v < Vp; ++v) p[v] = exp_nonpositive((logits[v] - m) / T);
  if (plan.top_k > 0 && plan.top_k < V)
    keep_top_k(p, keys, logits, plan.top_k, V);
  return draw(p, rng.uniform(), V, Vp);
}

// One stream: warm up on the prime, then write L characters to out.
// work holds 2 Hp + 2 Vp elements, keys V.
template <typename F>
RNNEXT_INLINE void stream(int32_t* __restrict out, F* __restrict work,
                          typename Poly<F>::Bits* __restrict keys,
                          const Net<F>& net, const Plan& plan, uint64_t index) {
  F* h = work;
  F* h_next = work + net.Hp;
  F* logits = work + 2 * net.Hp;
  F* p = work + 2 * net.Hp + net.Vp;
  Rng rng(plan.seed, index);

  for (int64_t j = 0; j < net.Hp; ++j) h[j] = F(0);
  for (int64_t t = 0; t < plan.P; ++t) {
    recur(h_next, h, net, plan.prime[t]);
    std::swap(h, h_next);
  }

  for (int64_t t = 0; t < plan.L; ++t) {
    project(logits, h, net);
    int32_t x = choose(p, keys, logits, plan, rng, net.V, net.Vp);
    out[t] = x;
    if (t + 1 == plan.L) break;
    recur(h_next, h, net, x);
    std::swap(h, h_next);
  }
}

// One entry per dtype, compiled for several instruction sets and chosen at
// load time from what the CPU supports.
RNNEXT_CLONES void stream_f32(int32_t* out, float* work, int32_t* keys,
                              const Net<float>& net, const Plan& plan,
                              uint64_t index) {
  stream(out, work, keys, net, plan, index);
}

RNNEXT_CLONES void stream_f64(int32_t* out, double* work, int64_t* keys,
                              const Net<double>& net, const Plan& plan,
                              uint64_t index) {
  stream(out, work, keys, net, plan, index);
}

void run_stream(int32_t* out, float* work, int32_t* keys, const Net<float>& net,
                const Plan& plan, uint64_t index) {
  stream_f32(out, work, keys, net, plan, index);
}

void run_stream(int32_t* out, double* work, int64_t* keys,
                const Net<double>& net, const Plan& plan, uint64_t index) {
  stream_f64(out, work, keys, net, plan, index);
}

// out: (num, L). Streams are independent, so threads only split the rows:
// task g runs streams g, g + threads, ... with its own scratch.
template <typename F>
void sample_streams(int32_t* out, const Net<F>& net, const Plan& plan,
                    int64_t num, int threads) {
  const int64_t stride = 2 * net.Hp + 2 * net.Vp;
  std::vector<F> work(size_t(threads) * size_t(stride));
  std::vector<typename Poly<F>::Bits> keys(size_t(threads) * size_t(net.V));
  struct Context {
    int32_t* out;
    const Net<F>& net;
    const Plan& plan;
    int64_t num, stride;
    int threads;
    F* work;
    typename Poly<F>::Bits* keys;
  } ctx{out, net, plan, num, stride, threads, work.data(), keys.data()};
  rnnext::parallel_for(threads, threads, [](void* c, long g) {
    const Context& x = *static_cast<const Context*>(c);
    for (int64_t i = g; i < x.num; i += x.threads)
      run_stream(x.out + i * x.plan.L, x.work + g * x.stride,
                 x.keys + g * x.net.V, x.net, x.plan, uint64_t(i));
  }, &ctx);
}

// ---------------------------------------------------------------------------
// Binding: every check on user input happens here.

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(a.shape(d));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dims_str(std::vector<int64_t> dims) {
  std::string s = "(";
  for (size_t d = 0; d < dims.size(); ++d) {
    if (d) s += ", ";
    s += std::to_string(dims[d]);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

void check_shape(const py::array& a, const char* name, const char* letters,
                 std::vector<int64_t> dims) {
  bool ok = a.ndim() == py::ssize_t(dims.size());
  for (size_t d = 0; ok && d < dims.size(); ++d) ok = a.shape(d) == dims[d];
  if (!ok)
    throw py::value_error(std::string(name) + " must have shape " + letters +
                          " = " + dims_str(dims) + ", got " + shape_str(a));
}

template <typename F>
py::array_t<F, py::array::c_style> contiguous(const py::array& a,
                                              const char* name) {
  auto c = py::array_t<F, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!c) throw py::type_error(std::string(name) + ": cannot read as array");
  const F* x = c.data();
  for (py::ssize_t k = 0; k < c.size(); ++k)
    if (!std::isfinite(x[k]))
      throw py::value_error(std::string(name) +
                            " contains NaN or infinity; the model has "
                            "diverged or was not loaded correctly");
  return c;
}

// Copies the weights into rows padded to whole blocks (see Net).
template <typename F>
Net<F> pack(std::vector<F>& buf, const F* W_input, const F* W_hidden,
            const F* b_hidden, const F* W_softmax, const F* b_softmax,
            int64_t H, int64_t V) {
  constexpr int64_t K = kLanes<F>;
  const int64_t Hp = (H + K - 1) / K * K;
  const int64_t Vp = (V + K - 1) / K * K;
  buf.assign(size_t(V * Hp + H * Hp + Hp + H * Vp + Vp), F(0));
  F* Wi = buf.data();
  F* Wh = Wi + V * Hp;
  F* bh = Wh + H * Hp;
  F* Ws = bh + Hp;
  F* bs = Ws + H * Vp;
  for (int64_t v = 0; v < V; ++v)
    std::copy(W_input + v * H, W_input + (v + 1) * H, Wi + v * Hp);
  for (int64_t i = 0; i < H; ++i) {
    std::copy(W_hidden + i * H, W_hidden + (i + 1) * H, Wh + i * Hp);
    std::copy(W_softmax + i * V, W_softmax + (i + 1) * V, Ws + i * Vp);
  }
  std::copy(b_hidden, b_hidden + H, bh);
  std::copy(b_softmax, b_softmax + V, bs);
  std::fill(bs + V, bs + Vp, -std::numeric_limits<F>::infinity());
  return Net<F>{Wi, Wh, bh, Ws, bs, H, V, Hp, Vp};
}

template <typename F>
py::array_t<int32_t> sample_typed(const py::array& Wi, const py::array& Wh,
                                  const py::array& bh, const py::array& Ws,
                                  const py::array& bs,
                                  const std::vector<int32_t>& prime,
                                  const Plan& plan_in, int64_t num,
                                  int threads) {
  auto W_input = contiguous<F>(Wi, "W_input");
  auto W_hidden = contiguous<F>(Wh, "W_hidden");
  auto b_hidden = contiguous<F>(bh, "b_hidden");
  auto W_softmax = contiguous<F>(Ws, "W_softmax");
  auto b_softmax = contiguous<F>(bs, "b_softmax");
  std::vector<F> buf;
  Net<F> net =
      pack(buf, W_input.data(), W_hidden.data(), b_hidden.data(),
           W_softmax.data(), b_softmax.data(), Wi.shape(1), Wi.shape(0));
  Plan plan = plan_in;
  plan.prime = prime.data();

  py::array_t<int32_t> out({py::ssize_t(num), py::ssize_t(plan.L)});
  int32_t* out_ptr = out.mutable_data();
  {
    py::gil_scoped_release release;
    sample_streams(out_ptr, net, plan, num, threads);
  }
  return out;
}

py::array_t<int32_t> sample(const py::array& W_input, const py::array& W_hidden,
                            const py::array& b_hidden,
                            const py::array& W_softmax,
                            const py::array& b_softmax,
                            const py::array& prime_ids, int64_t length,
                            double temperature, bool greedy, int64_t top_k,
                            const py::object& seed, int64_t num,
                            int64_t num_threads) {
  // dtype: float32 or float64, the same for all five
  py::dtype dt = W_input.dtype();
  bool f32 = dt.equal(py::dtype::of<float>());
  bool f64 = dt.equal(py::dtype::of<double>());
  if (!f32 && !f64)
    throw py::type_error("W_input must be float32 or float64, got " +
                         std::string(py::str(dt)));
  const std::pair<const py::array*, const char*> rest[] = {
      {&W_hidden, "W_hidden"},
      {&b_hidden, "b_hidden"},
      {&W_softmax, "W_softmax"},
      {&b_softmax, "b_softmax"}};
  for (auto [a, name] : rest)
    if (!a->dtype().equal(dt))
      throw py::type_error(std::string(name) + " must have W_input's dtype " +
                           std::string(py::str(dt)) + ", got " +
                           std::string(py::str(a->dtype())));

  // shapes, all read off W_input (V, H)
  if (W_input.ndim() != 2 || W_input.shape(0) < 1 || W_input.shape(1) < 1)
    throw py::value_error(
        "W_input must have shape (V, H) with V, H >= 1, got " +
        shape_str(W_input));
  const int64_t V = W_input.shape(0), H = W_input.shape(1);
  if (V > std::numeric_limits<int32_t>::max())
    throw py::value_error("vocabulary size V = " + std::to_string(V) +
                          " does not fit int32");
  check_shape(W_hidden, "W_hidden", "(H, H)", {H, H});
  check_shape(b_hidden, "b_hidden", "(H,)", {H});
  check_shape(W_softmax, "W_softmax", "(H, V)", {H, V});
  check_shape(b_softmax, "b_softmax", "(V,)", {V});

  // prime ids: any integer dtype, 1-D, non-empty, each in [0, V)
  char kind = prime_ids.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("prime_ids must be an integer array, got dtype " +
                         std::string(py::str(prime_ids.dtype())));
  if (prime_ids.ndim() != 1)
    throw py::value_error("prime_ids must be 1-D, got shape " +
                          shape_str(prime_ids));
  if (prime_ids.shape(0) < 1)
    throw py::value_error(
        "prime_ids must hold at least one id (there is no start token to "
        "begin from), got an empty array");
  std::vector<int32_t> prime(size_t(prime_ids.shape(0)));
  {
    // uint64 ids past 2^63 become negative here and fail the range check
    auto ids =
        py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(
            prime_ids);
    const int64_t* x = ids.data();
    for (size_t t = 0; t < prime.size(); ++t) {
      if (x[t] < 0 || x[t] >= V)
        throw py::value_error(
            "prime_ids[" + std::to_string(t) + "] = " + std::to_string(x[t]) +
            " is outside [0, V) = [0, " + std::to_string(V) + ")");
      prime[t] = int32_t(x[t]);
    }
  }

  // options
  if (length < 1)
    throw py::value_error("length must be >= 1, got " + std::to_string(length));
  if (num < 1)
    throw py::value_error("num must be >= 1, got " + std::to_string(num));
  if (!std::isfinite(temperature) || !(temperature > 0))
    throw py::value_error("temperature must be finite and > 0, got " +
                          std::string(py::str(py::float_(temperature))));
  if (top_k < 0 || top_k > V)
    throw py::value_error("top_k must be in [0, V] = [0, " + std::to_string(V) +
                          "] (0 keeps all), got " + std::to_string(top_k));
  if (num_threads < 0)
    throw py::value_error(
        "num_threads must be >= 0 (0: one per core), got " +
        std::to_string(num_threads));
  PyObject* seed_int = PyNumber_Index(seed.ptr());
  if (!seed_int) {
    PyErr_Clear();
    throw py::type_error(std::string("seed must be an int, got ") +
                         Py_TYPE(seed.ptr())->tp_name);
  }
  unsigned long long seed_value = PyLong_AsUnsignedLongLong(seed_int);
  Py_DECREF(seed_int);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed must be an int in [0, 2**64), got " +
                          std::string(py::repr(seed)));
  }

  // no more threads than streams; past a few per core they only cost memory
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  int64_t threads = num_threads > 0 ? num_threads : cores;
  threads = std::min({threads, num, 4 * cores});

  Plan plan{nullptr, int64_t(prime.size()), length, temperature, greedy,
            top_k,   uint64_t(seed_value)};
  if (f32)
    return sample_typed<float>(W_input, W_hidden, b_hidden, W_softmax,
                               b_softmax, prime, plan, num, int(threads));
  return sample_typed<double>(W_input, W_hidden, b_hidden, W_softmax, b_softmax,
                              prime, plan, num, int(threads));
}

}  // namespace

void bind_sample(py::module_& m) {
  m.def("sample", &sample, py::arg("W_input"), py::arg("W_hidden"),
        py::arg("b_hidden"), py::arg("W_softmax"), py::arg("b_softmax"),
        py::arg("prime_ids"), py::arg("length"), py::arg("temperature"),
        py::arg("greedy"), py::arg("top_k"), py::arg("seed"), py::arg("num"),
        py::arg("num_threads") = 0,
        R"(Generate (num, length) int32 character ids from a char-RNN.

Each of num streams starts from a zero state, reads prime_ids (at least
one), then emits length ids: the argmax of the logits if greedy, else a draw
from softmax(logits / temperature) limited to the top_k largest logits
(0: all). Stream i draws from a generator seeded by (seed, i), so the
result does not depend on num_threads (0: one per core).)");
}
