// The kernel's task pool: threads started on first use, shared by every
// caller, each job's tasks taken one at a time from an atomic counter.
#include "pool.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace rnnext {
namespace {

// Tasks are split into one contiguous run per participant (the caller is
// participant 0, helpers are numbered as they join). Each takes its own run
// from the front, so the same tasks land on the same thread call after call
// and their data stays in that core's cache; a participant that runs out
// takes from the back of the others' runs, so a late or descheduled thread
// costs only its share of the parallelism.
struct Job {
  void (*task)(void*, long);
  void* ctx;
  long n;
  int parts;  // participants wanted: the caller and parts - 1 helpers
  std::atomic<int> helpers{0};
  std::atomic<long> done{0};
  // per part, the tasks still to take: front in the low 32 bits, end high
  std::unique_ptr<std::atomic<uint64_t>[]> runs;

  static uint64_t pack(uint64_t front, uint64_t end) { return end << 32 | front; }

  void split() {
    runs.reset(new std::atomic<uint64_t>[size_t(parts)]);
    for (int p = 0; p < parts; ++p)
      runs[size_t(p)].store(pack(uint64_t(n * p / parts), uint64_t(n * (p + 1) / parts)),
                            std::memory_order_relaxed);
  }

  // One task of run p, its first (own run) or last (another's); -1 if none.
  long take(int p, bool own) {
    std::atomic<uint64_t>& run = runs[size_t(p)];
    uint64_t r = run.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t front = r & 0xffffffffu, end = r >> 32;
      if (front >= end) return -1;
      const uint64_t next = own ? pack(front + 1, end) : pack(front, end - 1);
      if (run.compare_exchange_weak(r, next, std::memory_order_relaxed))
        return long(own ? front : end - 1);
    }
  }

  // Runs tasks until none are left to take, participant p's own run first.
  void work(int p) {
    for (int k = 0; k < parts; ++k) {
      const int q = (p + k) % parts;
      for (long i; (i = take(q, k == 0)) >= 0;) {
        task(ctx, i);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  }
};

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class Pool {
 public:
  void run(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (int(threads_.size()) < job->parts - 1)
        threads_.emplace_back([this] { serve(); });
      open_.push_back(job);
      posted_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    job->work(0);
    {
      std::lock_guard<std::mutex> lock(mu_);
      close(job.get());
    }
    // wait only for tasks that other threads have already started
    for (int spin = 0; job->done.load(std::memory_order_acquire) < job->n;)
      if (++spin % 64 != 0) pause();
      else std::this_thread::yield();
  }

 private:
  void close(Job* job) {
    for (std::size_t i = 0; i < open_.size(); ++i)
      if (open_[i].get() == job) {
        open_.erase(open_.begin() + long(i));
        return;
      }
  }

  void serve() {
    unsigned seen = posted_.load(std::memory_order_acquire);
    for (;;) {
      // a short spin catches the next step's job without a wake-up; the
      // yields give the core back when it is shared with the caller
      for (int spin = 0; spin < 40000; ++spin) {
        if (posted_.load(std::memory_order_acquire) != seen) break;
        if (spin % 16 == 15) std::this_thread::yield();
        else pause();
      }
      std::shared_ptr<Job> job;
      int part = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return posted_.load(std::memory_order_relaxed) != seen || !open_.empty();
        });
        seen = posted_.load(std::memory_order_relaxed);
        for (auto& j : open_)
          if (j->helpers.load(std::memory_order_relaxed) < j->parts - 1) {
            job = j;
            part = j->helpers.fetch_add(1) + 1;
            if (part == j->parts - 1) close(j.get());
            break;
          }
      }
      if (job) job->work(part);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Job>> open_;  // jobs that take more helpers
  std::vector<std::thread> threads_;
  std::atomic<unsigned> posted_{0};
};

// One pool per process, never destroyed (its threads may be mid-wait at
// exit). A forked child starts a pool of its own.
Pool* pool = nullptr;
std::mutex pool_mu;

Pool& the_pool() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { pool = nullptr; });
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> lock(pool_mu);
  if (!pool) pool = new Pool;
  return *pool;
}

}  // namespace

void parallel_for(long n, int threads, void (*task)(void*, long), void* ctx) {
  if (n <= 0) return;
  if (threads > n) threads = int(n);
  // a run's bounds are packed in 32 bits each
  if (threads <= 1 || n > long(UINT32_MAX)) {
    for (long i = 0; i < n; ++i) task(ctx, i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->task = task, job->ctx = ctx, job->n = n;
  job->parts = threads;
  job->split();
  the_pool().run(job);
}

}  // namespace rnnext
