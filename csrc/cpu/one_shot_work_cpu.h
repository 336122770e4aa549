// When a kernel that runs once per call, rather than once per greedy step, takes the OpenMP team.
#pragma once

#include <cstdint>

namespace activerm {

// Multiply-adds (or their equivalent) from which a one-shot kernel runs on the team: about
// 0.4 ms on one core. A team wakes the package's sleeping threads, and beside a busy process
// one of them may wait a scheduler slice (milliseconds) for a core while the others wait for
// it at the barrier. The greedy steps notice that and move to fewer threads (TeamTuner); a
// single call cannot, so below this it stays on one thread, which at these sizes costs a
// fraction of a millisecond at most (bench/bench_contention.py --cases small times a small
// selection beside a busy process).
constexpr int64_t kOneShotParallelWork = int64_t{1} << 20;

// What one pair of a kernel without a d-long inner loop counts as: a Bradley-Terry weight
// (an exponential and a division per member), a generated pair (a hash and a division), a
// lazy bound (a logarithm per member). Compared as count >= kOneShotParallelWork / kPairWork,
// so that an implicit pool's count (up to 2^62) cannot overflow the product.
constexpr int64_t kPairWork = 16;

}  // namespace activerm
