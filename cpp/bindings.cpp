// Python bindings of the training kernel. Everything a caller passes is
// checked here (dtype, shape, contiguity, id range, option values) and
// refused with a TypeError or ValueError that says what was expected; the
// kernel itself trusts its inputs. Sampling is bound in sample.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
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
  if (!a.dtype().is(py::dtype::of<T>()))
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

template <class I>
void copy_ids(const py::array& a, int32_t* out, long V, const std::string& name) {
  const long B = long(a.shape(0)), T = long(a.shape(1));
  const char* base = static_cast<const char*>(a.data());
  for (long b = 0; b < B; ++b)
    for (long t = 0; t < T; ++t) {
      I x = *reinterpret_cast<const I*>(base + b * a.strides(0) + t * a.strides(1));
      if (!(x >= 0 && static_cast<uint64_t>(x) < static_cast<uint64_t>(V)))
        throw py::value_error(name + "[" + std::to_string(b) + ", " +
                              std::to_string(t) + "] = " + std::to_string(x) +
                              " is not a valid id: expected 0 <= id < " +
                              std::to_string(V) + " (the vocabulary size)");
      out[b * T + t] = int32_t(x);
    }
}

// Character ids: any integer dtype and strides, every value in [0, V).
std::vector<int32_t> read_ids(const py::handle& obj, const std::string& name,
                              long V) {
  py::array a = as_array(obj, name);
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
  std::vector<int32_t> ids(std::size_t(a.shape(0) * a.shape(1)));
  const auto size = a.dtype().itemsize();
  if (kind == 'i') {
    if (size == 1) copy_ids<int8_t>(a, ids.data(), V, name);
    else if (size == 2) copy_ids<int16_t>(a, ids.data(), V, name);
    else if (size == 4) copy_ids<int32_t>(a, ids.data(), V, name);
    else copy_ids<int64_t>(a, ids.data(), V, name);
  } else {
    if (size == 1) copy_ids<uint8_t>(a, ids.data(), V, name);
    else if (size == 2) copy_ids<uint16_t>(a, ids.data(), V, name);
    else if (size == 4) copy_ids<uint32_t>(a, ids.data(), V, name);
    else copy_ids<uint64_t>(a, ids.data(), V, name);
  }
  return ids;
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
  std::vector<int32_t> X, Y;
  py::array_t<T> h0, hT;
  rnnext::Job<T> job{};
};

template <class T>
void prepare(Call<T>& c, const py::tuple& params, const py::handle& X,
             const py::handle& Y, const py::handle& h0, int threads,
             bool in_place) {
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
    c.keep.push_back(in_place ? write_float<T>(params[k], param_names[k], shapes[k])
                              : read_float<T>(params[k], param_names[k], shapes[k]));
    c.job.param[k] = c.keep.back().mutable_data();
  }
  if (threads < 1)
    throw py::value_error("num_threads must be at least 1, got " +
                          std::to_string(threads));

  c.X = read_ids(X, "X", V);
  c.Y = read_ids(Y, "Y", V);
  py::array x = as_array(X, "X"), y = as_array(Y, "Y");
  if (x.shape(0) != y.shape(0) || x.shape(1) != y.shape(1))
    throw py::value_error("X and Y must have the same shape, got " +
                          shape_str(x) + " and " + shape_str(y));
  const long B = long(x.shape(0)), T_ = long(x.shape(1));
  c.h0 = read_float<T>(h0, "h0", {B, H});
  c.hT = py::array_t<T>({B, H});

  rnnext::Job<T>& j = c.job;
  j.X = c.X.data();
  j.Y = c.Y.data();
  j.h0 = c.h0.data();
  j.hT = c.hT.mutable_data();
  j.B = B, j.T = T_, j.H = H, j.V = V;
  j.threads = threads;
}

template <class T>
py::tuple evaluate(const py::tuple& params, const py::handle& X,
                   const py::handle& Y, const py::handle& h0, int threads) {
  Call<T> c;
  prepare(c, params, X, Y, h0, threads, false);
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
  prepare(c, params, X, Y, h0, threads, false);
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
  prepare(c, params, X, Y, h0, threads, true);
  if (accums.size() != 5)
    throw py::value_error("expected 5 accumulator arrays, got " +
                          std::to_string(accums.size()));
  for (int k = 0; k < 5; ++k) {
    std::vector<long> shape(c.keep[k].shape(), c.keep[k].shape() + c.keep[k].ndim());
    c.keep.push_back(write_float<T>(
        accums[k], std::string("accumulator of ") + param_names[k], shape));
    c.job.accum[k] = c.keep.back().mutable_data();
  }
  rnnext::Job<T>& j = c.job;
  j.mode = rnnext::Mode::adagrad;
  j.lr = read_option(lr, "lr", true);
  j.eps = read_option(eps, "eps", false);
  j.clip = read_option(clip, "clip", false);
  j.clip_norm = read_option(clip_norm, "clip_norm", false);
  if (j.clip > 0 && j.clip_norm > 0)
    throw py::value_error("clip and clip_norm cannot both be set: choose one");
  rnnext::Outcome out;
  {
    py::gil_scoped_release release;
    out = rnnext::run(j);
  }
  return py::make_tuple(out.loss, c.hT, out.grad_norm, out.updated);
}

// Calls f<float> or f<double> by the dtype of the first parameter.
template <class F32, class F64>
auto by_dtype(const py::tuple& params, F32 f32, F64 f64) {
  if (params.size() < 1)
    throw py::value_error("expected 5 parameter arrays, got none");
  py::array wi = as_array(params[0], "W_input");
  if (wi.dtype().is(py::dtype::of<float>())) return f32();
  if (wi.dtype().is(py::dtype::of<double>())) return f64();
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

  m.def("isa", &rnnext::isa,
        "The instruction set the kernel dispatched to on this CPU.");

  bind_sample(m);
}
