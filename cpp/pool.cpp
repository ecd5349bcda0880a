// The kernel's task pool: threads started on first use, shared by every
// caller, each job's tasks taken one at a time from an atomic counter.
#include "pool.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace rnnext {
namespace {

struct Job {
  void (*task)(void*, long);
  void* ctx;
  long n;
  int helpers_wanted;
  std::atomic<long> next{0}, done{0};
  std::atomic<int> helpers{0};

  // Runs tasks until none are left to take.
  void work() {
    for (long i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      task(ctx, i);
      done.fetch_add(1, std::memory_order_release);
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
      while (int(threads_.size()) < job->helpers_wanted)
        threads_.emplace_back([this] { serve(); });
      open_.push_back(job);
      posted_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    job->work();
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
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return posted_.load(std::memory_order_relaxed) != seen || !open_.empty();
        });
        seen = posted_.load(std::memory_order_relaxed);
        for (auto& j : open_)
          if (j->helpers.load(std::memory_order_relaxed) < j->helpers_wanted) {
            job = j;
            if (j->helpers.fetch_add(1) + 1 == j->helpers_wanted) close(j.get());
            break;
          }
      }
      if (job) job->work();
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
  if (threads <= 1) {
    for (long i = 0; i < n; ++i) task(ctx, i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->task = task, job->ctx = ctx, job->n = n;
  job->helpers_wanted = threads - 1;
  the_pool().run(job);
}

}  // namespace rnnext
