// How both backends carve GreedyState::workspace: the GreedyChoice first (the record a caller
// may read and rewrite between sweep and apply), then float64 arrays of every member's step
// quantities, then whatever the backend adds (its `extra` bytes). Pure C++: host code of both
// backends includes it.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

struct GreedyBuffers {
  GreedyChoice* choice;
  double* downdate;    // (E) c_e = w / (1 + w q*), the score downdate of the last choice
  double* reference;   // (1 + E): 1 while the first choice since a fresh sweep is still to
                       // come, then each member's w q* of that choice
  double* difference;  // (E, d) d*_e, the chosen pair's scaled feature difference
  double* transformed; // (E, d) f_e = S_e^T d*_e
  double* direction;   // (E, d) u_e = S_e f_e = F_e^-1 d*_e, times the feature scale after use
  double* projection;  // (n, E) v_e = Phi_e u_e, a response's members side by side
  void* extra;         // the backend's own scratch
};

// Byte offsets of the buffers above for a problem; `total` includes the backend's extra bytes.
struct GreedyLayout {
  int64_t downdate, reference, difference, transformed, direction, projection, extra, total;

  GreedyLayout(const GreedyProblem& problem, int64_t extra_bytes) {
    const int64_t e = problem.members;
    const int64_t d = problem.features.d;
    const int64_t bytes = static_cast<int64_t>(sizeof(double));
    downdate = static_cast<int64_t>(sizeof(GreedyChoice));
    reference = downdate + e * bytes;
    difference = reference + (1 + e) * bytes;
    transformed = difference + e * d * bytes;
    direction = transformed + e * d * bytes;
    projection = direction + e * d * bytes;
    extra = projection + e * problem.features.n * bytes;
    total = extra + extra_bytes;
  }

  GreedyBuffers carve(void* workspace) const {
    char* base = static_cast<char*>(workspace);
    return {reinterpret_cast<GreedyChoice*>(base),
            reinterpret_cast<double*>(base + downdate),
            reinterpret_cast<double*>(base + reference),
            reinterpret_cast<double*>(base + difference),
            reinterpret_cast<double*>(base + transformed),
            reinterpret_cast<double*>(base + direction),
            reinterpret_cast<double*>(base + projection),
            base + extra};
  }
};

}  // namespace activerm
