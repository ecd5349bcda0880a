// The kernel compiled for one instruction set; see kernel_impl.hpp.
#define RNNEXT_ISA baseline
#define RNNEXT_VBYTES 16
#define RNNEXT_MR 4
#define RNNEXT_NR 2
#define RNNEXT_ROWS 8
#include "kernel_impl.hpp"
