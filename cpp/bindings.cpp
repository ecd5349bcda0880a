// Python bindings of the training kernel. Everything a caller passes is
// checked here (dtype, shape, contiguity, id range, option values) and
// refused with a TypeError or ValueError that says what was expected; the
// kernel itself trusts its inputs. Sampling is bound in sample.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernel.hpp"

namespace py = pybind11;

void bind_sample(py::module_& m);

namespace {

const char* param_names[5] = {"W_input", "W_hidden", "b_hidden", "W_softmax",
                              "b_softmax"};

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string shape_str(const std::vector<long>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::string dtype_str(const py::array& a) {
  return py::str(a.dtype()).cast<std::string>();
}

// Whether a's dtype is T's (by equivalence, not identity: an unpickled
// array has its own dtype object).
template <class T>
bool has_dtype(const py::array& a) {
  return py::isinstance<py::array_t<T>>(a);
}

py::array as_array(const py::handle& obj, const std::string& name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a numpy array, got " +
                         py::str(py::type::of(obj).attr("__name__"))
                             .cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}

void check_shape(const py::array& a, const std::string& name,
                 const std::vector<long>& shape) {
  bool ok = a.ndim() == py::ssize_t(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i)
    ok = a.shape(i) == shape[i];
  if (!ok)
    throw py::value_error(name + " has shape " + shape_str(a) +
                          ", expected " + shape_str(shape));
}

// A floating-point array read by the kernel: converted to a C-contiguous
// array of T if it is another float type or not contiguous.
template <class T>
py::array_t<T> read_float(const py::handle& obj, const std::string& name,
                          const std::vector<long>& shape) {
  py::array a = as_array(obj, name);
  if (a.dtype().kind() != 'f')
    throw py::type_error(name + " must be a floating-point array, got dtype " +
                         dtype_str(a));
  check_shape(a, name, shape);
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

// A floating-point array the kernel updates in place: must already be a
// writeable, C-contiguous array of T.
template <class T>
py::array_t<T> write_float(const py::handle& obj, const std::string& name,
                           const std::vector<long>& shape) {
  py::array a = as_array(obj, name);
  if (!has_dtype<T>(a))
    throw py::type_error(name + " has dtype " + dtype_str(a) + ", expected " +
                         py::str(py::dtype::of<T>()).cast<std::string>() +
                         " (it is updated in place, so it is not converted)");
  check_shape(a, name, shape);
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(name +
                          " must be C-contiguous (it is updated in place)");
  if (!a.writeable()) throw py::value_error(name + " is read-only");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// A 2-D array of character ids of any integer dtype and strides, checked
// here and then read by the kernel where it is (see rnnext::IdView).
struct Ids {
  const char* data;
  py::ssize_t stride[2];
  long rows, cols;
  char kind;
  py::ssize_t size;

  // (ids may be unaligned: a view at any byte offset of a buffer)
  template <class I>
  static I get(const char* p) {
    I x;
    std::memcpy(&x, p, sizeof x);
    return x;
  }

  template <class I>
  I at(long r, long c) const {
    return get<I>(data + r * stride[0] + c * stride[1]);
  }

  // bad = the first (row, col) of the columns c0 .. c0+n-1 with an id
  // outside [0, V), if any. Contiguous ids are first read in a loop that
  // vectorizes, rows that follow one another in memory as one run; only if
  // that finds a bad id are they read again, one at a time.
  template <class I>
  void check(long c0, long n, long V, long* bad) const {
    const uint64_t top = uint64_t(V);
    const py::ssize_t s = stride[1];
    // the quick pass compares in I's own width: x >= 0 and x < lim, or
    // only x >= 0 when every such x of I is below V
    constexpr I most = std::numeric_limits<I>::max();
    const bool all = top > uint64_t(most);
    const I lim = all ? most : I(V);
    if (s == py::ssize_t(sizeof(I))) {
      const bool flat = stride[0] == n * s;
      const long runs = flat ? 1 : rows, len = flat ? rows * n : n;
      int ok = 1;
      for (long r = 0; r < runs; ++r) {
        const char* p = data + r * stride[0] + c0 * s;
        for (long c = 0; c < len; ++c) {
          const I x = get<I>(p + c * s);
          ok &= int(x >= I(0)) & int(all | (x < lim));
        }
      }
      if (ok) return;
    }
    for (long r = 0; r < rows; ++r)
      for (long c = 0; c < n; ++c)
        if (!(uint64_t(at<I>(r, c0 + c)) < top)) {
          bad[0] = r, bad[1] = c0 + c;
          return;
        }
  }

  void check(long c0, long n, long V, long* bad) const {
    const bool s = kind == 'i';
    switch (size) {
      case 1: return s ? check<int8_t>(c0, n, V, bad) : check<uint8_t>(c0, n, V, bad);
      case 2: return s ? check<int16_t>(c0, n, V, bad) : check<uint16_t>(c0, n, V, bad);
      case 4: return s ? check<int32_t>(c0, n, V, bad) : check<uint32_t>(c0, n, V, bad);
      default: return s ? check<int64_t>(c0, n, V, bad) : check<uint64_t>(c0, n, V, bad);
    }
  }

  std::string value(long r, long c) const {
    const bool s = kind == 'i';
    switch (size) {
      case 1: return s ? std::to_string(at<int8_t>(r, c)) : std::to_string(at<uint8_t>(r, c));
      case 2: return s ? std::to_string(at<int16_t>(r, c)) : std::to_string(at<uint16_t>(r, c));
      case 4: return s ? std::to_string(at<int32_t>(r, c)) : std::to_string(at<uint32_t>(r, c));
      default: return s ? std::to_string(at<int64_t>(r, c)) : std::to_string(at<uint64_t>(r, c));
    }
  }
};

// a must stay alive while the view is used; ids of non-native byte order
// are first converted (a is replaced by the converted copy).
Ids ids_view(py::array& a, const std::string& name) {
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(name + " must be an integer array of character ids, "
                         "got dtype " + dtype_str(a));
  if (a.ndim() != 2)
    throw py::value_error(name + " must have shape (rows, steps), got shape " +
                          shape_str(a));
  if (a.shape(0) < 1 || a.shape(1) < 1)
    throw py::value_error(name + " has shape " + shape_str(a) +
                          ": expected at least one row and one step");
  const char order = a.dtype().byteorder();
  const char native = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? '<' : '>';
  if (order != '=' && order != '|' && order != native)
    a = a.attr("astype")(a.dtype().attr("newbyteorder")("="));
  return Ids{static_cast<const char*>(a.data()), {a.strides(0), a.strides(1)},
             long(a.shape(0)), long(a.shape(1)), kind, a.dtype().itemsize()};
}

// Checks the columns c0 .. c0+n-1 of ids.
void check_range(const Ids& ids, long c0, long n, long V,
                 const std::string& name) {
  long bad[2] = {-1, -1};
  ids.check(c0, n, V, bad);
  if (bad[0] >= 0)
    throw py::value_error(name + "[" + std::to_string(bad[0]) + ", " +
                          std::to_string(bad[1]) + "] = " +
                          ids.value(bad[0], bad[1]) +
                          " is not a valid id: expected 0 <= id < " +
                          std::to_string(V) + " (the vocabulary size)");
}

// The columns from c0 of checked ids, as the kernel reads them.
rnnext::IdView kernel_view(const Ids& ids, long c0) {
  return {ids.data + c0 * ids.stride[1], long(ids.stride[0]),
          long(ids.stride[1]), int(ids.size)};
}

// Character ids (rows, steps), every value in [0, V), read by the kernel
// where they are; a (or the copy that replaces it, see ids_view) must stay
// alive while it runs.
rnnext::IdView check_ids(py::array& a, const std::string& name, long V) {
  Ids ids = ids_view(a, name);
  check_range(ids, 0, ids.cols, V, name);
  return kernel_view(ids, 0);
}

double read_option(double x, const char* name, bool positive) {
  if (!std::isfinite(x) || x < 0 || (positive && x == 0))
    throw py::value_error(std::string(name) + " must be a finite number " +
                          (positive ? "> 0" : ">= 0") + ", got " +
                          py::str(py::float_(x)).cast<std::string>());
  return x;
}

// Everything one kernel call needs, owned while the GIL is released.
template <class T>
struct Call {
  std::vector<py::array_t<T>> keep;
  py::array X, Y;  // the ids
  py::array_t<T> h0, hT;
  rnnext::Job<T> job{};
};

// Parameters (and accumulators, when updating) into c.job; sets V and H.
template <class T>
void prepare_params(Call<T>& c, const py::tuple& params,
                    const py::tuple* accums, int threads) {
  if (params.size() != 5)
    throw py::value_error("expected 5 parameter arrays, got " +
                          std::to_string(params.size()));
  py::array wi = as_array(params[0], "W_input");
  if (wi.ndim() != 2 || wi.shape(0) < 1 || wi.shape(1) < 1)
    throw py::value_error("W_input must have shape (vocab_size, hidden_size) "
                          "with both at least 1, got shape " + shape_str(wi));
  const long V = long(wi.shape(0)), H = long(wi.shape(1));
  const std::vector<long> shapes[5] = {{V, H}, {H, H}, {H}, {H, V}, {V}};
  for (int k = 0; k < 5; ++k) {
    c.keep.push_back(accums ? write_float<T>(params[k], param_names[k], shapes[k])
                            : read_float<T>(params[k], param_names[k], shapes[k]));
    // only written when updating, so a read-only array serves otherwise
    c.job.param[k] = const_cast<T*>(c.keep.back().data());
  }
  if (accums) {
    if (accums->size() != 5)
      throw py::value_error("expected 5 accumulator arrays, got " +
                            std::to_string(accums->size()));
    for (int k = 0; k < 5; ++k) {
      c.keep.push_back(write_float<T>((*accums)[k],
                                      std::string("accumulator of ") +
                                          param_names[k],
                                      shapes[k]));
      c.job.accum[k] = c.keep.back().mutable_data();
    }
  }
  if (threads < 1)
    throw py::value_error("num_threads must be at least 1, got " +
                          std::to_string(threads));
  c.job.V = V, c.job.H = H, c.job.threads = threads;
}

// The initial state (B, H) and the final state's array.
template <class T>
void prepare_state(Call<T>& c, long B, long T_, const py::handle& h0) {
  c.h0 = read_float<T>(h0, "h0", {B, c.job.H});
  c.hT = py::array_t<T>({B, c.job.H});
  c.job.h0 = c.h0.data();
  c.job.hT = c.hT.mutable_data();
  c.job.B = B, c.job.T = T_;
}

template <class T>
void prepare(Call<T>& c, const py::tuple& params, const py::tuple* accums,
             const py::handle& X, const py::handle& Y, const py::handle& h0,
             int threads) {
  prepare_params(c, params, accums, threads);
  c.X = as_array(X, "X");
  c.job.X = check_ids(c.X, "X", c.job.V);
  c.Y = as_array(Y, "Y");
  c.job.Y = check_ids(c.Y, "Y", c.job.V);
  if (c.X.shape(0) != c.Y.shape(0) || c.X.shape(1) != c.Y.shape(1))
    throw py::value_error("X and Y must have the same shape, got " +
                          shape_str(c.X) + " and " + shape_str(c.Y));
  prepare_state(c, long(c.X.shape(0)), long(c.X.shape(1)), h0);
}

// Adagrad options into c.job.
template <class T>
void prepare_adagrad(Call<T>& c, double lr, double eps, double clip,
                     double clip_norm) {
  rnnext::Job<T>& j = c.job;
  j.mode = rnnext::Mode::adagrad;
  j.lr = read_option(lr, "lr", true);
  j.eps = read_option(eps, "eps", false);
  j.clip = read_option(clip, "clip", false);
  j.clip_norm = read_option(clip_norm, "clip_norm", false);
  if (j.clip > 0 && j.clip_norm > 0)
    throw py::value_error("clip and clip_norm cannot both be set: choose one");
}

template <class T>
py::tuple evaluate(const py::tuple& params, const py::handle& X,
                   const py::handle& Y, const py::handle& h0, int threads) {
  Call<T> c;
  prepare(c, params, nullptr, X, Y, h0, threads);
  c.job.mode = rnnext::Mode::evaluate;
  rnnext::Outcome out;
  {
    py::gil_scoped_release release;
    out = rnnext::run(c.job);
  }
  return py::make_tuple(out.loss, c.hT);
}

template <class T>
py::tuple loss_and_grads(const py::tuple& params, const py::handle& X,
                         const py::handle& Y, const py::handle& h0,
                         int threads) {
  Call<T> c;
  prepare(c, params, nullptr, X, Y, h0, threads);
  c.job.mode = rnnext::Mode::gradients;
  py::list grads;
  for (int k = 0; k < 5; ++k) {
    py::array_t<T> g(c.keep[k].request().shape);
    c.job.grad[k] = g.mutable_data();
    grads.append(g);
  }
  py::array_t<T> dh0({c.job.B, c.job.H});
  c.job.grad_h0 = dh0.mutable_data();
  grads.append(dh0);
  rnnext::Outcome out;
  {
    py::gil_scoped_release release;
    out = rnnext::run(c.job);
  }
  return py::make_tuple(out.loss, py::tuple(grads), c.hT);
}

template <class T>
py::tuple adagrad_step(const py::tuple& params, const py::tuple& accums,
                       const py::handle& X, const py::handle& Y,
                       const py::handle& h0, double lr, double eps,
                       double clip, double clip_norm, int threads) {
  Call<T> c;
  prepare(c, params, &accums, X, Y, h0, threads);
  prepare_adagrad(c, lr, eps, clip, clip_norm);
  rnnext::Outcome out;
  {
    py::gil_scoped_release release;
    out = rnnext::run(c.job);
  }
  return py::make_tuple(out.loss, c.hT, out.grad_norm, out.updated);
}

// `count` fused steps over consecutive feeds of `rows` (B, L + 1): feed i
// reads X = rows[:, i*T : (i+1)*T] and Y one column later, and starts from
// the state the previous feed ended in. Stops at the first step that was not
// applied (its loss is not finite), leaving the rest of the losses NaN.
template <class T>
py::tuple adagrad_steps(const py::tuple& params, const py::tuple& accums,
                        const py::handle& rows, long steps, long start,
                        long count, const py::handle& h0, double lr,
                        double eps, double clip, double clip_norm,
                        int threads) {
  Call<T> c;
  prepare_params(c, params, &accums, threads);
  prepare_adagrad(c, lr, eps, clip, clip_norm);
  py::array ra = as_array(rows, "rows");
  Ids ids = ids_view(ra, "rows");
  if (steps < 1 || start < 0 || count < 1)
    throw py::value_error("steps and count must be at least 1 and start at "
                          "least 0, got steps=" + std::to_string(steps) +
                          ", start=" + std::to_string(start) +
                          ", count=" + std::to_string(count));
  // the feeds read columns up to (start + count) * steps + 1
  long need;
  const bool overflow = __builtin_add_overflow(start, count, &need) ||
                        __builtin_mul_overflow(need, steps, &need) ||
                        __builtin_add_overflow(need, 1L, &need);
  if (overflow || need > ids.cols)
    throw py::value_error(
        std::to_string(count) + " feeds from feed " + std::to_string(start) +
        ", of " + std::to_string(steps) +
        " steps each, need rows with at least " +
        (overflow ? std::string("2**63") : std::to_string(need)) +
        " columns, got shape " + shape_str(ra));
  check_range(ids, start * steps, count * steps + 1, c.job.V, "rows");
  prepare_state(c, ids.rows, steps, h0);

  const long B = ids.rows, H = c.job.H;
  py::array_t<double> losses(count);
  double* loss = losses.mutable_data();
  for (long k = 0; k < count; ++k) loss[k] = std::nan("");
  std::vector<T> h(std::size_t(B * H));
  {
    py::gil_scoped_release release;
    rnnext::Job<T> j = c.job;
    T* state[2] = {c.hT.mutable_data(), h.data()};
    for (long k = 0; k < count; ++k) {
      const long col = (start + k) * steps;
      j.X = kernel_view(ids, col);
      j.Y = kernel_view(ids, col + 1);
      j.h0 = k == 0 ? c.job.h0 : state[(k + 1) % 2];
      j.hT = state[k % 2];
      rnnext::Outcome out = rnnext::run(j);
      loss[k] = out.loss;
      if (!out.updated) {
        // not applied: report it as not finite, keep the state before it
        if (std::isfinite(loss[k])) loss[k] = std::nan("");
        if (j.h0 != state[0]) std::copy(j.h0, j.h0 + B * H, state[0]);
        break;
      }
      if (k == count - 1 && j.hT != state[0])
        std::copy(state[1], state[1] + B * H, state[0]);
    }
  }
  return py::make_tuple(losses, c.hT);
}

// Calls f<float> or f<double> by the dtype of the first parameter.
template <class F32, class F64>
auto by_dtype(const py::tuple& params, F32 f32, F64 f64) {
  if (params.size() < 1)
    throw py::value_error("expected 5 parameter arrays, got none");
  py::array wi = as_array(params[0], "W_input");
  if (has_dtype<float>(wi)) return f32();
  if (has_dtype<double>(wi)) return f64();
  throw py::type_error("parameters must be float32 or float64, got W_input of "
                       "dtype " + dtype_str(wi));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnext's compiled kernel: the fused char-RNN step and sampling";

  m.def(
      "evaluate",
      [](const py::tuple& p, py::handle X, py::handle Y, py::handle h0,
         int threads) {
        return by_dtype(
            p, [&] { return evaluate<float>(p, X, Y, h0, threads); },
            [&] { return evaluate<double>(p, X, Y, h0, threads); });
      },
      py::arg("params"), py::arg("X"), py::arg("Y"), py::arg("h0"),
      py::arg("num_threads"),
      "Mean cross-entropy of Y given X from state h0: (loss, h_T).");

  m.def(
      "loss_and_grads",
      [](const py::tuple& p, py::handle X, py::handle Y, py::handle h0,
         int threads) {
        return by_dtype(
            p, [&] { return loss_and_grads<float>(p, X, Y, h0, threads); },
            [&] { return loss_and_grads<double>(p, X, Y, h0, threads); });
      },
      py::arg("params"), py::arg("X"), py::arg("Y"), py::arg("h0"),
      py::arg("num_threads"),
      "Loss, gradients of the five parameters and h0, and h_T.");

  m.def(
      "adagrad_step",
      [](const py::tuple& p, const py::tuple& a, py::handle X, py::handle Y,
         py::handle h0, double lr, double eps, double clip, double clip_norm,
         int threads) {
        return by_dtype(
            p,
            [&] {
              return adagrad_step<float>(p, a, X, Y, h0, lr, eps, clip,
                                         clip_norm, threads);
            },
            [&] {
              return adagrad_step<double>(p, a, X, Y, h0, lr, eps, clip,
                                          clip_norm, threads);
            });
      },
      py::arg("params"), py::arg("accumulators"), py::arg("X"), py::arg("Y"),
      py::arg("h0"), py::arg("lr"), py::arg("eps"), py::arg("clip"),
      py::arg("clip_norm"), py::arg("num_threads"),
      "One fused forward, backward, clip and Adagrad update, in place: "
      "(loss, h_T, grad_norm, updated).");

  m.def(
      "adagrad_steps",
      [](const py::tuple& p, const py::tuple& a, py::handle rows, long steps,
         long start, long count, py::handle h0, double lr, double eps,
         double clip, double clip_norm, int threads) {
        return by_dtype(
            p,
            [&] {
              return adagrad_steps<float>(p, a, rows, steps, start, count, h0,
                                          lr, eps, clip, clip_norm, threads);
            },
            [&] {
              return adagrad_steps<double>(p, a, rows, steps, start, count, h0,
                                           lr, eps, clip, clip_norm, threads);
            });
      },
      py::arg("params"), py::arg("accumulators"), py::arg("rows"),
      py::arg("steps"), py::arg("start"), py::arg("count"), py::arg("h0"),
      py::arg("lr"), py::arg("eps"), py::arg("clip"), py::arg("clip_norm"),
      py::arg("num_threads"),
      "Fused Adagrad steps over `count` consecutive feeds of rows (B, L + 1), "
      "carrying the state: (losses, h_T).");

  m.def("isa", &rnnext::isa,
        "The instruction set the kernel dispatched to on this CPU.");

  bind_sample(m);
}
