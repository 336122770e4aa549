// The OpenMP team size a CPU greedy selection (dense or lazy) runs its steps with, retuned as the
// machine's load changes. Used as the `pace` of run_steps (greedy_loop.h).
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace activerm {

// Picks, again and again during a selection, the OpenMP team size that makes steps fastest. On
// a machine shared with other work a team larger than the free cores waits at every barrier for
// a thread the OS has preempted (bench/bench_contention.py times this beside busy processes), while
// alone the full team is fastest. Each round times the current team and its neighbours (half,
// double) for kTrySteps steps each, moves to the fastest, and keeps it for kKeepSteps steps.
// Results do not depend on the team (every sum has a fixed order); only the time does. The
// caller's setting is restored at the end.
class TeamTuner {
 public:
  TeamTuner() : full_(omp_get_max_threads()), team_(full_) { plan_round(); }
  TeamTuner(const TeamTuner&) = delete;
  TeamTuner& operator=(const TeamTuner&) = delete;
  ~TeamTuner() { omp_set_num_threads(full_); }

  void begin(int64_t) {
    omp_set_num_threads(trying() ? candidates_[position_ / kTrySteps] : team_);
    started_ = std::chrono::steady_clock::now();
  }

  void end(int64_t) {
    if (trying()) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      const int tried = position_ / kTrySteps;
      if (position_ % kTrySteps == 0 || seconds < fastest_[tried]) fastest_[tried] = seconds;
      if (position_ + 1 == count_ * kTrySteps) {
        int best = 0;
        for (int c = 1; c < count_; ++c) {
          if (fastest_[c] < fastest_[best]) best = c;
        }
        team_ = candidates_[best];
      }
    }
    if (++position_ == count_ * kTrySteps + kKeepSteps) plan_round();
  }

 private:
  static constexpr int kTrySteps = 2;
  static constexpr int kKeepSteps = 60;

  bool trying() const { return position_ < count_ * kTrySteps; }

  void plan_round() {
    position_ = 0;
    count_ = 0;
    candidates_[count_++] = team_;
    if (team_ > 1) candidates_[count_++] = team_ / 2;
    if (team_ < full_) candidates_[count_++] = std::min(full_, 2 * team_);
    if (count_ == 1) position_ = kTrySteps;  // one core: nothing to try
  }

  int full_;
  int team_;
  int candidates_[3] = {};
  double fastest_[3] = {};
  int count_ = 0;
  int position_ = 0;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace activerm
