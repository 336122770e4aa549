// The exact lazy sweep of the CPU greedy engine (Minoux's lazy greedy, made bit-identical).
//
// A pair's score only falls from step to step (every downdate subtracts c (v_i - v_j)^2 >= 0,
// and rounding is monotone), so a score last brought up to date at an earlier step bounds its
// current value from above. The lazy sweep keeps every candidate in a bucket of that bound and
// refreshes, from the highest bucket down, only the candidates whose bound could still win;
// it stops once the best refreshed score lies above every bucket left. Refreshing applies the
// downdates a candidate missed in order, from the kept projections v_t = Phi u_t and
// coefficients c_t, with the dense sweep's arithmetic (downdated_quadform, combined_score), so
// scores, picks and gains equal the dense engine's bit for bit, ties to the lowest index
// included. With E members the bound is the combined score of max(w_e q_e, 0), which no later
// score exceeds.
//
// It replaces greedy_sweep and composes with the dense greedy_apply (which writes the
// projections and coefficients this sweep records) in run_steps, for one process or for a
// shard whose proposals a caller exchanges. Memory (bytes): 8 (n + 1) K E for the projections
// and coefficients of K steps, 4 P for the candidates not yet refreshed, at most 3 (16 + 16 E) P
// for the records of refreshed ones (each 16 + 16 E bytes; a bucket holds at most twice its
// records, plus a copy while it grows), 12 P of scratch and O(buckets); memory_bound() states it
// before anything is allocated.
#pragma once

#include <cstdint>
#include <vector>

#include "activerm/greedy_workspace.h"
#include "activerm/views.h"

namespace activerm {

class LazyGreedyCpu {
 public:
  // `capacity`: the most downdates (steps after the first) this sweep will record.
  LazyGreedyCpu(const GreedyProblem& problem, int64_t capacity);

  // Whether the problem's sizes fit the compact candidate records (fewer than 2^32 pairs,
  // fewer than 2^31 responses).
  static bool supports(const GreedyProblem& problem);
  // Bytes the sweep may hold for this problem and capacity, at most.
  static int64_t memory_bound(const GreedyProblem& problem, int64_t capacity);

  // greedy_sweep's contract: with `downdate` record the last applied choice's step (and retire
  // the pair if it was this shard's), else start afresh from state.scores; then write the best
  // pair to the workspace's GreedyChoice. Pairs greedy_apply masks in state.scores for a
  // per-prompt quota (views.h: PromptQuota) leave the race as they are next refreshed.
  void sweep(const GreedyProblem& problem, GreedyState state, bool downdate);
  // The whole selection: run_steps over this sweep and CpuKernels::greedy_apply.
  void run(const GreedyProblem& problem, GreedyState state, int64_t k, int64_t* chosen,
           double* gains);

  // Counters since construction: sweeps, candidates refreshed, downdates applied in refreshes.
  int64_t sweeps() const { return sweeps_; }
  int64_t refreshed() const { return refreshed_; }
  int64_t downdates() const { return downdates_; }

 private:
  struct Best {
    double score;
    int64_t index;  // local; -1: none
    int64_t bucket;
    int64_t position;
  };

  void rebuild(const GreedyProblem& problem, GreedyState state);
  void record_step(const GreedyBuffers& buffers);
  void retire_last(const GreedyProblem& problem, const GreedyChoice& applied);
  void bring_up_to_date(int64_t bucket);
  int64_t bucket_of(double bound) const;
  void take_unrefreshed(const GreedyProblem& problem, GreedyState state, int64_t bucket);
  void refresh_bucket(int64_t bucket, Best& best);

  int64_t n_;
  int64_t members_;
  int64_t stride_;  // doubles per candidate record
  int64_t capacity_;
  int64_t steps_ = 0;  // downdates recorded since the last rebuild
  uint64_t top_bits_ = 0;
  std::vector<double> history_;       // (n, capacity, E) v_t of every response
  std::vector<double> coefficients_;  // (capacity, E) c_t
  std::vector<uint32_t> unrefreshed_;  // pairs never refreshed, by bucket, in index order
  std::vector<int64_t> unrefreshed_start_;
  std::vector<char> unrefreshed_taken_;
  std::vector<std::vector<double>> buckets_;  // refreshed candidate records, by bucket
  std::vector<int64_t> places_;  // scratch of the counting scatters
  std::vector<double> scratch_scores_;
  std::vector<int32_t> scratch_buckets_;
  Best last_{0.0, -1, 0, 0};
  // With a per-prompt quota, state.scores: a refreshed record whose pair's score there is NaN
  // (masked by greedy_apply once its prompt is full) leaves the race. Null without a quota.
  const double* masked_ = nullptr;
  int64_t sweeps_ = 0;
  int64_t refreshed_ = 0;
  int64_t downdates_ = 0;
};

}  // namespace activerm
