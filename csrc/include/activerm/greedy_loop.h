// The single-process greedy selection, composed once from a backend's primitives: sweep, then k
// times apply and sweep. After a "none" choice (index -1) every primitive leaves the state alone
// and records -1, so the loop needs no look at the results and the CUDA backend enqueues all k
// steps without waiting.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

template <class Kernels>
void run_greedy_steps(const GreedyProblem& problem, GreedyState state, int64_t k,
                      int64_t* chosen, double* gains, void* stream) {
  if (k <= 0) return;
  Kernels::greedy_sweep(problem, state, false, stream);
  for (int64_t t = 0; t < k; ++t) {
    const bool prepare_next = t + 1 < k;
    Kernels::greedy_apply(problem, state, t, chosen, gains, prepare_next, stream);
    if (prepare_next) Kernels::greedy_sweep(problem, state, true, stream);
  }
}

}  // namespace activerm
