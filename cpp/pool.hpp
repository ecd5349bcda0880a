// A task pool for the kernel: run tasks 0 .. n-1 on up to `threads` threads.
#pragma once

namespace rnnext {

// Runs task(ctx, i) once for each i in [0, n), on the calling thread and up
// to threads - 1 pool threads, and returns when all are done. Each thread
// starts on its own contiguous share of the tasks, so a task usually runs on
// the same thread as in the last call, but not always; results are
// reproducible as long as each task writes only its own outputs. The caller
// never waits for a pool thread that has not started a task, so a busy
// machine (or a forked child with no pool threads) only loses parallelism.
void parallel_for(long n, int threads, void (*task)(void* ctx, long i),
                  void* ctx);

}  // namespace rnnext
