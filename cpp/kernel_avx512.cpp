// The kernel compiled for one instruction set; see kernel_impl.hpp.
#define RNNEXT_ISA avx512
#define RNNEXT_VBYTES 64
#define RNNEXT_MR 8
#define RNNEXT_NR 3
#define RNNEXT_ROWS 8
#include "kernel_impl.hpp"
