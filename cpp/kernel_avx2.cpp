// The kernel compiled for one instruction set; see kernel_impl.hpp.
#define RNNEXT_ISA avx2
#define RNNEXT_VBYTES 32
#define RNNEXT_MR 6
#define RNNEXT_NR 2
#define RNNEXT_ROWS 12
#include "kernel_impl.hpp"
