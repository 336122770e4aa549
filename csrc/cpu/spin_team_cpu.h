// A helper thread that shares the short parallel phases of a small greedy selection with the
// calling thread, and spins between them instead of sleeping.
//
// The package's idle OpenMP threads sleep (_openmp.py), so an OpenMP team costs a futex wake-up
// of its threads at every region; a small selection's steps (a sweep over a few thousand pairs,
// a product over a few thousand rows: tens of microseconds) do not repay that, and ran on one
// thread. A SpinTeam lives for one selection: the caller leads (SpinTeam::Leading) and the
// helper waits for each phase in a pause loop, so handing it a phase costs a cache line's trip
// between cores. A helper that finds no phase for a while sleeps on a futex until the next one,
// and the leader never waits for a helper that has not started a chunk, so a helper the OS has
// preempted only slows the phase whose chunk it holds.
//
// Each phase's first half of the chunks is the leader's; the helper claims the second half from
// the last chunk down, from one atomic word (phase tag, first and last chunk not yet claimed), so
// a helper late from one phase can never take a chunk of the next one, and the leader, done with
// its half, claims what the helper has not yet taken from the other end. At an even pace each
// thread takes the same chunks every step, so the data a chunk updates (the scores of its pairs)
// stays in that thread's cache, and the two touch the shared word only at the end of a phase.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#ifdef __linux__
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace activerm {

class SpinTeam {
 public:
  // Whoever calls run() while a Leading is alive on their thread shares its phases with the
  // team; the helper's own calls (and everyone else's) run alone.
  class Leading {
   public:
    explicit Leading(SpinTeam& team) : previous_(led()) { led() = &team; }
    Leading(const Leading&) = delete;
    Leading& operator=(const Leading&) = delete;
    ~Leading() { led() = previous_; }

   private:
    SpinTeam* previous_;
  };

  // Whether a core is free for a helper now: no thread but the caller's is running or waiting
  // to run (Linux's /proc/loadavg counts them), on a machine with a core more than the others
  // take. Beside a busy process a spinning helper would take turns on a core with it, and the
  // leader, too, would lose its core for whole time slices; a team then makes steps slower.
  // True where the count cannot be read (TeamTuner still times the helper against none).
  static bool core_free() {
#ifdef __linux__
    cpu_set_t usable;
    if (sched_getaffinity(0, sizeof(usable), &usable) != 0) return true;
    const int cpus = CPU_COUNT(&usable);
    const int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    char text[128] = {};
    const ssize_t size = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (size <= 0) return true;
    // "0.47 0.24 0.41 1/85 15883": the fourth field is running / all
    const char* field = text;
    for (int spaces = 0; spaces < 3 && field != nullptr; ++spaces) {
      field = std::strchr(field, ' ');
      if (field != nullptr) ++field;
    }
    if (field == nullptr) return true;
    const long running = std::strtol(field, nullptr, 10);  // this thread included
    return running >= 1 && running - 1 <= cpus - 2;
#else
    return true;
#endif
  }

  // The team the calling thread leads, or null.
  static SpinTeam* current() { return led(); }

  // job(c) for every c in [0, chunks) (at most kMaxChunks), some on the helper; returns once all
  // are done. Which thread runs a chunk must not change what it computes.
  template <class Job>
  void run(int64_t chunks, const Job& job) {
    if (!helping_) {  // the leader alone (TeamTuner found the helper slows the steps)
      for (int64_t c = 0; c < chunks; ++c) job(c);
      return;
    }
    job_ = &job;
    call_ = [](const void* j, int64_t c) { (*static_cast<const Job*>(j))(c); };
    done_.store(0, std::memory_order_relaxed);
    const int64_t own = chunks / 2;
    phase_ = (phase_ + 1) & kPhaseMask;
    state_.store(phase_ << kPhaseShift | static_cast<uint64_t>(chunks) << kLastShift |
                     static_cast<uint64_t>(own),
                 std::memory_order_seq_cst);
    wake();
    for (int64_t c = 0; c < own; ++c) job(c);
    int64_t done = own;
    while (claim_and_run(true)) ++done;
    while (done_.load(std::memory_order_acquire) != chunks - done) pause();
  }

  // Whether run() hands chunks to the helper (the leader's to set, between phases); a helper
  // with no phases to help with sleeps.
  void set_helping(bool helping) { helping_ = helping; }

  // The helper's loop: runs chunks of the phases it finds until finish().
  void help() {
    int64_t idle = 0;
    while (!finished_.load(std::memory_order_acquire)) {
      if (claim_and_run(false)) {
        idle = 0;
        continue;
      }
      if (++idle < kSpinsBeforeSleep && helping_) {
        pause();
        continue;
      }
      // no phase for a while (the leader's serial work, or a descheduled leader), or no help
      // wanted: sleep until the state word changes (a phase, or finish()). sleeping_ is set
      // before the word is read again, and the leader reads sleeping_ after it writes the word
      // (both seq_cst), so no wake-up is lost; a word already read with chunks in it, or read
      // after finish(), ends the wait at once.
      const uint64_t seen = state_.load(std::memory_order_seq_cst);
      sleeping_.store(true, std::memory_order_seq_cst);
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wakeup_.wait(lock, [&] {
          return state_.load(std::memory_order_seq_cst) != seen || has_chunks(seen) ||
                 finished_.load(std::memory_order_seq_cst);
        });
      }
      sleeping_.store(false, std::memory_order_relaxed);
      idle = 0;
    }
  }

  // Ends help() (the leader calls it once its last phase is done).
  void finish() {
    finished_.store(true, std::memory_order_seq_cst);
    phase_ = (phase_ + 1) & kPhaseMask;  // a new value without chunks: wakes a sleeping helper
    state_.store(phase_ << kPhaseShift, std::memory_order_seq_cst);
    wake();
  }

  static constexpr int64_t kMaxChunks = (int64_t{1} << 16) - 1;

 private:
  // state_: phase tag << 32 | one past the last unclaimed chunk << 16 | first unclaimed chunk
  static constexpr int kPhaseShift = 32;
  static constexpr int kLastShift = 16;
  static constexpr uint64_t kPhaseMask = 0xFFFFFFFFu;
  static constexpr uint64_t kChunkMask = 0xFFFFu;
  // about 50 microseconds of pause loop
  static constexpr int64_t kSpinsBeforeSleep = 1 << 12;

  static SpinTeam*& led() {
    thread_local SpinTeam* team = nullptr;
    return team;
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // After a new state word: wakes the helper if it sleeps (taking the mutex orders the notice
  // after the helper's check of the word or while it waits).
  void wake() {
    if (!sleeping_.load(std::memory_order_seq_cst)) return;
    { std::lock_guard<std::mutex> lock(mutex_); }
    wakeup_.notify_one();
  }

  static bool has_chunks(uint64_t s) { return (s & kChunkMask) < ((s >> kLastShift) & kChunkMask); }

  // Claims a chunk of the current phase (the first unclaimed one for the leader, the last for
  // the helper) and runs it; false when none is left.
  bool claim_and_run(bool leader) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (!has_chunks(s)) return false;
      const uint64_t first = s & kChunkMask;
      const uint64_t end = (s >> kLastShift) & kChunkMask;
      const uint64_t taken = leader ? s + 1 : s - (uint64_t{1} << kLastShift);
      if (state_.compare_exchange_weak(s, taken, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        // the phase cannot end (nor job_ change) before this chunk is counted done
        call_(job_, static_cast<int64_t>(leader ? first : end - 1));
        if (!leader) done_.fetch_add(1, std::memory_order_release);  // what the leader waits on
        return true;
      }
    }
  }

  alignas(64) std::atomic<uint64_t> state_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  alignas(64) std::atomic<bool> sleeping_{false};
  std::atomic<bool> finished_{false};
  std::mutex mutex_;
  std::condition_variable wakeup_;
  const void* job_ = nullptr;
  void (*call_)(const void*, int64_t) = nullptr;
  uint64_t phase_ = 0;  // the leader's
  std::atomic<bool> helping_{true};
};

}  // namespace activerm
