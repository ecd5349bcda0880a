// Python bindings of the rnnext kernel: checks at the boundary.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_sample(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnext's compiled kernel";
  bind_sample(m);
}
