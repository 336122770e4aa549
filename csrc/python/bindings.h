// One pybind11 binding for both backends: every kernel takes raw addresses (NumPy's
// ctypes.data or torch's data_ptr()), sizes, dtype flags and a stream handle. The Python
// wrapper validates, allocates and keeps the arrays alive; the GIL is released while a kernel runs.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

namespace py = pybind11;

template <class T>
T* address(std::uintptr_t value) {
  return reinterpret_cast<T*>(value);
}

template <class Kernels>
void bind_kernels(py::module_& m) {
  using std::uintptr_t;
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.attr("backend") = Kernels::kName;

  m.def(
      "pair_diff",
      [](uintptr_t features, bool features_double, int64_t n, int64_t d, uintptr_t pairs,
         bool pairs_int64, int64_t count, uintptr_t out, uintptr_t stream) {
        Kernels::pair_diff({address<const void>(features), features_double, n, d},
                           {address<const void>(pairs), pairs_int64, count}, address<void>(out),
                           address<void>(stream));
      },
      py::arg("features"), py::arg("features_double"), py::arg("n"), py::arg("d"),
      py::arg("pairs"), py::arg("pairs_int64"), py::arg("count"), py::arg("out"),
      py::arg("stream"), release);

  m.def(
      "fisher_weights",
      [](uintptr_t rewards, bool rewards_double, int64_t members, int64_t n, uintptr_t pairs,
         bool pairs_int64, int64_t count, uintptr_t out, uintptr_t stream) {
        Kernels::fisher_weights(address<const void>(rewards), rewards_double, members, n,
                                {address<const void>(pairs), pairs_int64, count},
                                address<double>(out), address<void>(stream));
      },
      py::arg("rewards"), py::arg("rewards_double"), py::arg("members"), py::arg("n"),
      py::arg("pairs"), py::arg("pairs_int64"), py::arg("count"), py::arg("out"),
      py::arg("stream"), release);

  m.def(
      "pair_quadform",
      [](uintptr_t features, bool features_double, int64_t n, int64_t d, uintptr_t pairs,
         bool pairs_int64, int64_t count, uintptr_t projected, double scale, uintptr_t out,
         uintptr_t stream) {
        Kernels::pair_quadform({address<const void>(features), features_double, n, d},
                               {address<const void>(pairs), pairs_int64, count},
                               address<const double>(projected), scale, address<double>(out),
                               address<void>(stream));
      },
      py::arg("features"), py::arg("features_double"), py::arg("n"), py::arg("d"),
      py::arg("pairs"), py::arg("pairs_int64"), py::arg("count"), py::arg("projected"),
      py::arg("scale"), py::arg("out"), py::arg("stream"), release);

  m.def(
      "laplacian_features",
      [](uintptr_t features, bool features_double, int64_t n, int64_t d, uintptr_t pairs,
         bool pairs_int64, int64_t count, uintptr_t weights, uintptr_t out, uintptr_t stream) {
        Kernels::laplacian_features({address<const void>(features), features_double, n, d},
                                    {address<const void>(pairs), pairs_int64, count},
                                    address<const double>(weights), address<double>(out),
                                    address<void>(stream));
      },
      py::arg("features"), py::arg("features_double"), py::arg("n"), py::arg("d"),
      py::arg("pairs"), py::arg("pairs_int64"), py::arg("count"), py::arg("weights"),
      py::arg("out"), py::arg("stream"), release);

  m.def(
      "greedy_logdet",
      [](uintptr_t features, bool features_double, int64_t n, int64_t d, uintptr_t pairs,
         bool pairs_int64, int64_t count, uintptr_t weights, uintptr_t quadforms,
         uintptr_t inverse, uintptr_t projection, uintptr_t direction, uintptr_t difference,
         uintptr_t scratch, int64_t k, uintptr_t chosen, uintptr_t gains, uintptr_t stream) {
        GreedyWorkspace workspace{address<const double>(weights), address<double>(quadforms),
                                  address<double>(inverse),       address<double>(projection),
                                  address<double>(direction),     address<double>(difference),
                                  address<void>(scratch)};
        Kernels::greedy_logdet({address<const void>(features), features_double, n, d},
                               {address<const void>(pairs), pairs_int64, count}, workspace, k,
                               address<int64_t>(chosen), address<double>(gains),
                               address<void>(stream));
      },
      py::arg("features"), py::arg("features_double"), py::arg("n"), py::arg("d"),
      py::arg("pairs"), py::arg("pairs_int64"), py::arg("count"), py::arg("weights"),
      py::arg("quadforms"), py::arg("inverse"), py::arg("projection"), py::arg("direction"),
      py::arg("difference"), py::arg("scratch"), py::arg("k"), py::arg("chosen"),
      py::arg("gains"), py::arg("stream"), release);

  m.def("greedy_scratch_bytes", &Kernels::greedy_scratch_bytes, py::arg("count"));
}

}  // namespace activerm
