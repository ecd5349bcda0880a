# This machine's floating-point peak, measured two ways: a loop of
# independent fused multiply-adds compiled here (the FLOP limit the tables
# quote) and a large float32 matrix product through NumPy's BLAS (what a
# library reaches in practice). Needs a C compiler for the first; without
# one it returns None and the caller says so.
#
#     python benchmarks/peak.py
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

# 12 independent chains per thread hide the FMA latency (4 cycles, 2 units)
# and still fit in the 16 AVX2 registers with the two operands; each FMA of
# W float32 lanes is 2 W FLOP.
_CHAINS = 12
_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#if !defined(WIDTH) || !defined(CHAINS)
#error "define WIDTH (256 or 512) and CHAINS"
#endif
#if WIDTH == 512
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define LANES 16
#else
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define LANES 8
#endif

int main(int argc, char** argv) {
  long n = atol(argv[1]);
  int threads = atoi(argv[2]);
  float sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    vec a[CHAINS];
    vec x = SET1(0.999999f), y = SET1(1e-7f);
    for (int k = 0; k < CHAINS; ++k) a[k] = SET1((float)k);
    for (long i = 0; i < n; ++i) {
#pragma GCC unroll 16
      for (int k = 0; k < CHAINS; ++k) a[k] = FMA(a[k], x, y);
    }
    float lanes[LANES];
    for (int k = 1; k < CHAINS; ++k) a[0] = FMA(a[k], x, a[0]);
    __builtin_memcpy(lanes, &a[0], sizeof lanes);
    sink += lanes[0];
  }
  double dt = omp_get_wtime() - t0;
  printf("%.6f %g\n", dt, sink);
  return 0;
}
"""


def fma_peak(threads: int, width: int, seconds: float = 0.5) -> float | None:
    """GFLOP/s of `threads` threads each running FMAs `width` bits wide."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None
    flag = "-mavx512f" if width == 512 else "-mavx2"
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        src.write_text(_SOURCE)
        cmd = [cc, "-O2", flag, "-mfma", "-fopenmp", f"-DWIDTH={width}"]
        cmd.append(f"-DCHAINS={_CHAINS}")
        build = subprocess.run(
            [*cmd, str(src), "-o", str(exe)], capture_output=True, text=True
        )
        if build.returncode != 0:
            return None

        def run(n: int) -> float:
            out = subprocess.run(
                [str(exe), str(n), str(threads)],
                capture_output=True,
                text=True,
                check=True,
            )
            return float(out.stdout.split()[0])

        # grow n until one run takes long enough, then keep the best of 5
        n = 1 << 20
        try:
            while run(n) < seconds / 4:
                n *= 2
            best = min(run(n) for _ in range(5))
        except subprocess.CalledProcessError:  # e.g. no AVX-512 here
            return None
    flop = 2 * (width // 32) * _CHAINS * n * threads
    return flop / best / 1e9


def sgemm_gflops(threads: int = 1, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 product through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    limit = threadpool_limits(threads) if threadpool_limits else None
    try:
        a @ b  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return 2 * n**3 / best / 1e9


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    for width in (512, 256):
        for threads in sorted({1, cores}):
            g = fma_peak(threads, width)
            shown = "no C compiler or no such ISA" if g is None else f"{g:.1f}"
            print(f"FMA loop, {width}-bit, {threads} thread(s): {shown} GFLOP/s")
    print(f"NumPy sgemm 2048^3, 1 thread: {sgemm_gflops(1):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
