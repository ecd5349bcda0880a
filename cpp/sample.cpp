// Sampling text from a trained char-RNN: one state per stream, no batching
// across streams and no beam search.
//
// Sizes: H hidden, V vocabulary, P prime length, L generated length.
//
//     h_t      = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
//     logits_t = h_t @ W_softmax + b_softmax
//     x_{t+1}  = argmax(logits_t), or a draw from softmax(logits_t / T)
//
// Results depend only on the inputs and (seed, stream index): the generator
// is our own, exp and tanh are our own polynomials rather than libm's, and
// no FMA is used on x86-64, so every instruction-set clone agrees bit for
// bit.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

#define RNNEXT_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RNNEXT_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RNNEXT_CLONES
#endif

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
// exp and tanh for x <= 0, written so that the loops calling them vectorise.
// x = n ln2 + r with |r| <= ln2 / 2; e^r - 1 is a Taylor polynomial whose
// truncation error is below the type's rounding error.

template <typename F>
struct Poly;

template <>
struct Poly<float> {
  using Bits = int32_t;
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float magic = 0x1.8p23f;  // adding it rounds to integer
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

// Returns 2^n and e^r - 1 for x = n ln2 + r; x must be >= Poly<F>::lowest.
template <typename F>
RNNEXT_INLINE void exp_parts(F x, F& scale, F& em1) {
  using P = Poly<F>;
  using Bits = typename P::Bits;

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

  // The low mantissa bits of t hold n; build 2^n from them.
  Bits tb, mb;
  std::memcpy(&tb, &t, sizeof tb);
  F m = P::magic;
  std::memcpy(&mb, &m, sizeof mb);
  Bits sb = (tb - mb + P::bias) << P::mantissa;
  std::memcpy(&scale, &sb, sizeof scale);
}

// e^x for x <= 0; exactly 0 below Poly<F>::lowest.
template <typename F>
RNNEXT_INLINE F exp_nonpositive(F x) {
  F clamped = x < Poly<F>::lowest ? Poly<F>::lowest : x;
  F scale, em1;
  exp_parts(clamped, scale, em1);
  F y = scale + scale * em1;
  return x < Poly<F>::lowest ? F(0) : y;
}

// tanh(y) = -e / (e + 2) with e = e^(-2|y|) - 1, accurate near 0.
template <typename F>
RNNEXT_INLINE F tanh_poly(F y) {
  F a = y < F(0) ? -y : y;
  F x = F(-2) * a;
  x = x < Poly<F>::lowest ? Poly<F>::lowest : x;
  F scale, em1;
  exp_parts(x, scale, em1);
  F e = (scale - F(1)) + scale * em1;
  F t = (F(0) - e) / (e + F(2));  // +0 at y = +0
  return y < F(0) ? -t : t;
}

// ---------------------------------------------------------------------------
// The kernel. It trusts its inputs: the binding layer has checked them.

template <typename F>
struct Net {
  const F* W_input;    // (V, H)
  const F* W_hidden;   // (H, H)
  const F* b_hidden;   // (H,)
  const F* W_softmax;  // (H, V)
  const F* b_softmax;  // (V,)
  int64_t H, V;
};

struct Plan {
  const int32_t* prime;  // (P,)
  int64_t P, L;
  double temperature;
  bool greedy;
  int64_t top_k;  // 0: all V
  uint64_t seed;
};

// h_next = tanh(W_input[x] + h @ W_hidden + b_hidden)
template <typename F>
RNNEXT_INLINE void recur(F* __restrict h_next, const F* __restrict h,
                         const F* __restrict W_input,
                         const F* __restrict W_hidden,
                         const F* __restrict b_hidden, int32_t x,
                         int64_t H) {
  const F* __restrict w_x = W_input + x * H;
  for (int64_t j = 0; j < H; ++j) h_next[j] = w_x[j] + b_hidden[j];
  for (int64_t i = 0; i < H; ++i) {
    F h_i = h[i];
    const F* __restrict w_i = W_hidden + i * H;
    for (int64_t j = 0; j < H; ++j) h_next[j] += h_i * w_i[j];
  }
  for (int64_t j = 0; j < H; ++j) h_next[j] = tanh_poly(h_next[j]);
}

// logits = h @ W_softmax + b_softmax
template <typename F>
RNNEXT_INLINE void project(F* __restrict logits, const F* __restrict h,
                           const F* __restrict W_softmax,
                           const F* __restrict b_softmax, int64_t H,
                           int64_t V) {
  for (int64_t v = 0; v < V; ++v) logits[v] = b_softmax[v];
  for (int64_t i = 0; i < H; ++i) {
    F h_i = h[i];
    const F* __restrict w_i = W_softmax + i * V;
    for (int64_t v = 0; v < V; ++v) logits[v] += h_i * w_i[v];
  }
}

// Lane-wise partial results in a fixed order, so the compiler can vectorise
// and the answer does not depend on the vector width.
constexpr int64_t kLanes = 16;

template <typename F>
RNNEXT_INLINE F max_of(const F* __restrict x, int64_t V) {
  F lane[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) lane[l] = x[0];
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes)
    for (int64_t l = 0; l < kLanes; ++l)
      lane[l] = x[v + l] > lane[l] ? x[v + l] : lane[l];
  F m = x[0];
  for (int64_t l = 0; l < kLanes; ++l) m = lane[l] > m ? lane[l] : m;
  for (; v < V; ++v) m = x[v] > m ? x[v] : m;
  return m;
}

template <typename F>
RNNEXT_INLINE double sum_of(const F* __restrict x, int64_t V) {
  double lane[kLanes] = {};
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lane[l] += double(x[v + l]);
  double s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += lane[l];
  for (; v < V; ++v) s += double(x[v]);
  return s;
}

// First index holding the largest logit; 0 if none compares equal (NaN).
template <typename F>
RNNEXT_INLINE int32_t argmax(const F* __restrict logits, int64_t V) {
  F m = max_of(logits, V);
  for (int64_t v = 0; v < V; ++v)
    if (logits[v] == m) return int32_t(v);
  return 0;
}

// Zeroes p outside the top_k logits, ties going to the lower index, so the
// kept set does not depend on how nth_element orders equal keys.
template <typename F>
RNNEXT_INLINE void keep_top_k(F* __restrict p, int32_t* __restrict order,
                              const F* __restrict logits, int64_t top_k,
                              int64_t V) {
  auto before = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  for (int64_t v = 0; v < V; ++v) order[v] = int32_t(v);
  std::nth_element(order, order + top_k - 1, order + V, before);
  int32_t last = order[top_k - 1];
  for (int64_t v = 0; v < V; ++v)
    if (before(last, int32_t(v))) p[v] = F(0);
}

// Draws an index with probability proportional to p (p >= 0, sum > 0).
template <typename F>
RNNEXT_INLINE int32_t draw(const F* __restrict p, double u, int32_t fallback,
                           int64_t V) {
  double target = u * sum_of(p, V);
  double cum = 0;
  int32_t last = fallback;
  for (int64_t v = 0; v < V; ++v) {
    cum += double(p[v]);
    if (p[v] > F(0)) last = int32_t(v);
    if (target < cum) return int32_t(v);
  }
  return last;  // rounding put target at or past the final sum
}

// Next character from logits: p = exp((logits - max) / T), then a draw.
template <typename F>
RNNEXT_INLINE int32_t choose(F* __restrict p, int32_t* __restrict order,
                             const F* __restrict logits, const Plan& plan,
                             Rng& rng, int64_t V) {
  if (plan.greedy) return argmax(logits, V);

  // A temperature below the type's smallest normal would round to 0.
  F T = std::max(F(plan.temperature), std::numeric_limits<F>::min());
  F m = max_of(logits, V);
  for (int64_t v = 0; v < V; ++v) p[v] = exp_nonpositive((logits[v] - m) / T);
  if (plan.top_k > 0 && plan.top_k < V) keep_top_k(p, order, logits, plan.top_k, V);
  int32_t fallback = argmax(logits, V);
  return draw(p, rng.uniform(), fallback, V);
}

// One stream: warm up on the prime, then generate L characters into out.
// work holds 2H + 2V elements, order V.
template <typename F>
RNNEXT_INLINE void stream(int32_t* __restrict out, F* __restrict work,
                          int32_t* __restrict order, const Net<F>& net,
                          const Plan& plan, uint64_t index) {
  const int64_t H = net.H, V = net.V;
  F* h = work;
  F* h_next = work + H;
  F* logits = work + 2 * H;
  F* p = work + 2 * H + V;
  Rng rng(plan.seed, index);

  for (int64_t j = 0; j < H; ++j) h[j] = F(0);
  for (int64_t t = 0; t < plan.P; ++t) {
    recur(h_next, h, net.W_input, net.W_hidden, net.b_hidden, plan.prime[t], H);
    std::swap(h, h_next);
  }

  for (int64_t t = 0; t < plan.L; ++t) {
    project(logits, h, net.W_softmax, net.b_softmax, H, V);
    int32_t x = choose(p, order, logits, plan, rng, V);
    out[t] = x;
    if (t + 1 == plan.L) break;
    recur(h_next, h, net.W_input, net.W_hidden, net.b_hidden, x, H);
    std::swap(h, h_next);
  }
}

// One entry per dtype, compiled for several instruction sets and chosen at
// load time from what the CPU supports.
RNNEXT_CLONES void stream_f32(int32_t* out, float* work, int32_t* order,
                              const Net<float>& net, const Plan& plan,
                              uint64_t index) {
  stream(out, work, order, net, plan, index);
}

RNNEXT_CLONES void stream_f64(int32_t* out, double* work, int32_t* order,
                              const Net<double>& net, const Plan& plan,
                              uint64_t index) {
  stream(out, work, order, net, plan, index);
}

void run_stream(int32_t* out, float* work, int32_t* order,
                const Net<float>& net, const Plan& plan, uint64_t index) {
  stream_f32(out, work, order, net, plan, index);
}

void run_stream(int32_t* out, double* work, int32_t* order,
                const Net<double>& net, const Plan& plan, uint64_t index) {
  stream_f64(out, work, order, net, plan, index);
}

// out: (num, L). Streams are independent, so threads only split the rows.
template <typename F>
void sample_streams(int32_t* out, const Net<F>& net, const Plan& plan,
                    int64_t num, int threads) {
  const int64_t stride = 2 * net.H + 2 * net.V;
  std::vector<F> work(size_t(threads) * size_t(stride));
  std::vector<int32_t> order(size_t(threads) * size_t(net.V));

#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < num; ++i) {
    int thread = omp_get_thread_num();
    run_stream(out + i * plan.L, work.data() + thread * stride,
               order.data() + thread * net.V, net, plan, uint64_t(i));
  }
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
  Net<F> net{W_input.data(),   W_hidden.data(),  b_hidden.data(),
             W_softmax.data(), b_softmax.data(), Wi.shape(1),
             Wi.shape(0)};
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

py::array_t<int32_t> sample(const py::array& W_input,
                            const py::array& W_hidden,
                            const py::array& b_hidden,
                            const py::array& W_softmax,
                            const py::array& b_softmax,
                            const py::array& prime_ids, int64_t length,
                            double temperature, bool greedy, int64_t top_k,
                            const py::int_& seed, int64_t num,
                            int64_t num_threads) {
  // dtype: float32 or float64, the same for all five
  py::dtype dt = W_input.dtype();
  bool f32 = dt.is(py::dtype::of<float>());
  bool f64 = dt.is(py::dtype::of<double>());
  if (!f32 && !f64)
    throw py::type_error("W_input must be float32 or float64, got " +
                         std::string(py::str(dt)));
  const std::pair<const py::array*, const char*> rest[] = {
      {&W_hidden, "W_hidden"},
      {&b_hidden, "b_hidden"},
      {&W_softmax, "W_softmax"},
      {&b_softmax, "b_softmax"}};
  for (auto [a, name] : rest)
    if (!a->dtype().is(dt))
      throw py::type_error(std::string(name) + " must have W_input's dtype " +
                           std::string(py::str(dt)) + ", got " +
                           std::string(py::str(a->dtype())));

  // shapes, all read off W_input (V, H)
  if (W_input.ndim() != 2 || W_input.shape(0) < 1 || W_input.shape(1) < 1)
    throw py::value_error("W_input must have shape (V, H) with V, H >= 1, got " +
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
    auto ids = py::array_t<int64_t, py::array::c_style |
                                        py::array::forcecast>::ensure(prime_ids);
    const int64_t* x = ids.data();
    for (size_t t = 0; t < prime.size(); ++t) {
      if (x[t] < 0 || x[t] >= V)
        throw py::value_error("prime_ids[" + std::to_string(t) + "] = " +
                              std::to_string(x[t]) + " is outside [0, V) = [0, " +
                              std::to_string(V) + ")");
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
    throw py::value_error("num_threads must be >= 0 (0: OpenMP's default), got " +
                          std::to_string(num_threads));
  unsigned long long seed_value = PyLong_AsUnsignedLongLong(seed.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed must be an int in [0, 2**64), got " +
                          std::string(py::repr(seed)));
  }
  int threads = num_threads > 0 ? int(std::min<int64_t>(num_threads, 1 << 16))
                                : omp_get_max_threads();
  threads = int(std::min<int64_t>(threads, num));

  Plan plan{nullptr, int64_t(prime.size()), length, temperature,
            greedy,  top_k,                 uint64_t(seed_value)};
  if (f32)
    return sample_typed<float>(W_input, W_hidden, b_hidden, W_softmax,
                               b_softmax, prime, plan, num, threads);
  return sample_typed<double>(W_input, W_hidden, b_hidden, W_softmax,
                              b_softmax, prime, plan, num, threads);
}

}  // namespace

void bind_sample(py::module_& m) {
  m.def("sample", &sample, py::arg("W_input"), py::arg("W_hidden"),
        py::arg("b_hidden"), py::arg("W_softmax"), py::arg("b_softmax"),
        py::arg("prime_ids"), py::arg("length"), py::arg("temperature"),
        py::arg("greedy"), py::arg("top_k"), py::arg("seed"), py::arg("num"),
        py::arg("num_threads") = 0,
        "Generate (num, length) int32 character ids from a char-RNN.\n\n"
        "Each stream starts from a zero state, reads prime_ids, then emits\n"
        "length ids: argmax if greedy, else a draw from softmax(logits / "
        "temperature)\nlimited to the top_k largest logits (0: all). Stream i "
        "draws from a\ngenerator seeded by (seed, i), so the result does not "
        "depend on\nnum_threads (0: OpenMP's default).");
}
