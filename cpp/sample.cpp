// Sampling from a trained char-RNN (placeholder until written).
#include <pybind11/pybind11.h>
void bind_sample(pybind11::module_& m) { (void)m; }
