// Fused char-RNN training kernel.
