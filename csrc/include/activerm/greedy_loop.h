// The single-process greedy selection, composed once from a backend's primitives: sweep, then k
// times apply and sweep. After a "none" choice (index -1) every primitive leaves the state alone
// and records -1, so the loop needs no look at the results and the CUDA backend enqueues all k
// steps without waiting.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

// A backend may watch the steps (the CPU tunes its thread count); `pace.begin(t)` and
// `pace.end(t)` bracket step t.
struct UnwatchedSteps {
  void begin(int64_t) {}
  void end(int64_t) {}
};

// The loop itself over any sweep(downdate) and apply(step, prepare_next): the dense engine's
// primitives or the lazy sweep (lazy_greedy_cpu.h) with the dense apply.
template <class Sweep, class Apply, class Pace = UnwatchedSteps>
void run_steps(int64_t k, Sweep&& sweep, Apply&& apply, Pace&& pace = Pace{}) {
  if (k <= 0) return;
  sweep(false);
  for (int64_t t = 0; t < k; ++t) {
    pace.begin(t);
    const bool prepare_next = t + 1 < k;
    apply(t, prepare_next);
    if (prepare_next) sweep(true);
    pace.end(t);
  }
}

template <class Kernels, class Pace = UnwatchedSteps>
void run_greedy_steps(const GreedyProblem& problem, GreedyState state, int64_t k,
                      int64_t* chosen, double* gains, void* stream, Pace&& pace = Pace{}) {
  run_steps(
      k, [&](bool downdate) { Kernels::greedy_sweep(problem, state, downdate, stream); },
      [&](int64_t t, bool prepare_next) {
        Kernels::greedy_apply(problem, state, t, chosen, gains, prepare_next, stream);
      },
      pace);
}

}  // namespace activerm
