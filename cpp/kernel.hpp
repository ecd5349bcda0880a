// The fused char-RNN kernel's interface: one job struct, one entry point per
// dtype. Shapes and ranges are checked by the bindings; the kernel trusts
// what it is given.
//
// Legend: B rows, T steps, H hidden, V vocabulary; F the float type.
#pragma once

#include <cstdint>

namespace rnnext {

enum class Mode { evaluate, gradients, adagrad };

// Character ids (B, T) where the caller holds them: an integer type of
// `width` bytes in native byte order, at any byte strides and alignment,
// every id in [0, V) (so signed and unsigned types read alike).
struct IdView {
  const char* data;
  long row, col;  // strides in bytes
  int width;      // 1, 2, 4 or 8
};

template <class F>
struct Job {
  // parameters, row-major: W_input (V, H), W_hidden (H, H), b_hidden (H),
  // W_softmax (H, V), b_softmax (V); written only in Mode::adagrad
  F* param[5];
  // Mode::gradients: the five parameter gradients, same shapes (written)
  F* grad[5];
  F* grad_h0;  // (B, H), Mode::gradients
  // Mode::adagrad: accumulators, same shapes as the parameters (updated)
  F* accum[5];
  IdView X;          // (B, T) input ids
  IdView Y;          // (B, T) target ids
  const F* h0;       // (B, H)
  F* hT;             // (B, H) final state (written)
  long B, T, H, V;
  Mode mode;
  double lr, eps;
  double clip;       // > 0: clip each gradient element to [-clip, clip]
  double clip_norm;  // > 0: rescale gradients whose global norm exceeds it
  int threads;       // >= 1
};

// Result of one call. In Mode::adagrad the update is skipped when the loss,
// the gradient norm or any updated weight or accumulator would not be
// finite, and `updated` says whether it happened.
struct Outcome {
  double loss;       // mean cross-entropy over the B*T tokens, in nats
  double grad_norm;  // global norm of the parameter gradients (before clipping)
  bool updated;
};

Outcome run(const Job<float>& job);
Outcome run(const Job<double>& job);

// Name of the instruction set the kernel dispatched to: "avx512", "avx2" or
// "baseline".
const char* isa();

}  // namespace rnnext
