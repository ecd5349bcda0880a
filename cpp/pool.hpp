// A task pool for the kernel: run tasks 0 .. n-1 on up to `threads` threads.
#pragma once

namespace rnnext {

// Runs task(ctx, i) once for each i in [0, n), on the calling thread and up
// to threads - 1 pool threads, and returns when all are done. Tasks are
// handed out one at a time, so which thread runs a task varies; results are
// reproducible as long as each task writes only its own outputs. The caller
// never waits for a pool thread that has not started a task, so a busy
// machine (or a forked child with no pool threads) only loses parallelism.
void parallel_for(long n, int threads, void (*task)(void* ctx, long i),
                  void* ctx);

}  // namespace rnnext
