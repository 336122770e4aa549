// One pybind11 binding for both backends. The views of views.h are bound as small classes the
// launch layer (python/activerm_fast/_launch.py) fills with raw addresses (torch's data_ptr()),
// sizes and dtype flags; kernels take those views, a stream handle and output addresses. The
// launch layer validates, allocates and keeps the arrays alive; the GIL is released while a
// kernel runs. Classes are module-local, so _core and _cuda each have their own.
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

inline void bind_views(py::module_& m) {
  using std::uintptr_t;
  py::class_<FeatureView>(m, "FeatureView", py::module_local())
      .def(py::init([](uintptr_t data, int32_t dtype, int64_t n, int64_t d, double scale) {
             return FeatureView{address<const void>(data), dtype, n, d, scale};
           }),
           py::arg("data"), py::arg("dtype"), py::arg("n"), py::arg("d"),
           py::arg("scale") = 1.0)
      .def_readonly("n", &FeatureView::n)
      .def_readonly("d", &FeatureView::d)
      .def_readonly("scale", &FeatureView::scale);
  py::class_<PairView>(m, "PairView", py::module_local())
      .def(py::init([](uintptr_t data, bool is_int64, int64_t count) {
             return PairView{address<const void>(data), is_int64, count};
           }),
           py::arg("data"), py::arg("is_int64"), py::arg("count"))
      .def_static(
          "generated",
          [](int32_t kind, uint64_t key, int64_t first, int64_t count, int64_t n,
             int64_t eligible, double spread, uintptr_t order, uintptr_t runs,
             uintptr_t draw_from) {
            PairView view{nullptr, true, count};
            view.implicit = ImplicitPairs{kind,
                                          key,
                                          first,
                                          n,
                                          eligible,
                                          spread,
                                          address<const int64_t>(order),
                                          address<const int64_t>(runs),
                                          address<const int64_t>(draw_from)};
            return view;
          },
          py::arg("kind"), py::arg("key"), py::arg("first"), py::arg("count"), py::arg("n"),
          py::arg("eligible"), py::arg("spread"), py::arg("order"), py::arg("runs"),
          py::arg("draw_from"))
      .def_readonly("count", &PairView::count);
  py::class_<PromptQuota>(m, "PromptQuota", py::module_local())
      .def(py::init([](int64_t limit, int64_t prompts, uintptr_t prompt_of, uintptr_t offsets,
                       uintptr_t pairs, uintptr_t used) {
             return PromptQuota{limit,
                                prompts,
                                address<const int64_t>(prompt_of),
                                address<const int64_t>(offsets),
                                address<const int64_t>(pairs),
                                address<int64_t>(used)};
           }),
           py::arg("limit"), py::arg("prompts"), py::arg("prompt_of"), py::arg("offsets"),
           py::arg("pairs"), py::arg("used"))
      .def_readonly("limit", &PromptQuota::limit)
      .def_readonly("prompts", &PromptQuota::prompts);
  py::class_<GreedyProblem>(m, "GreedyProblem", py::module_local())
      .def(py::init([](FeatureView features, int64_t members, int64_t member_stride,
                       PairView pairs, uintptr_t weights, int64_t first_index,
                       double refresh_tolerance) {
             return GreedyProblem{features,    members,
                                  member_stride, pairs,
                                  address<const double>(weights), first_index,
                                  refresh_tolerance};
           }),
           py::arg("features"), py::arg("members"), py::arg("member_stride"), py::arg("pairs"),
           py::arg("weights"), py::arg("first_index") = 0, py::arg("refresh_tolerance") = 0.0)
      .def_readwrite("refresh_tolerance", &GreedyProblem::refresh_tolerance)
      .def(
          "weights_from_rewards",
          [](GreedyProblem& problem, uintptr_t rewards, int64_t rows, int64_t n) {
            problem.fisher = RewardWeights{address<const double>(rewards), rows, n};
          },
          py::arg("rewards"), py::arg("rows"), py::arg("n"))
      .def_readwrite("quota", &GreedyProblem::quota);
  py::class_<GreedyState>(m, "GreedyState", py::module_local())
      .def(py::init([](uintptr_t scores, uintptr_t factor, uintptr_t workspace) {
             return GreedyState{address<double>(scores), address<double>(factor),
                                address<void>(workspace)};
           }),
           py::arg("scores"), py::arg("factor"), py::arg("workspace"));
  py::dict feature_dtypes;  // FeatureView's dtype codes by torch dtype name
  feature_dtypes["float32"] = kFeatureFloat32;
  feature_dtypes["float64"] = kFeatureFloat64;
  feature_dtypes["float16"] = kFeatureFloat16;
  feature_dtypes["bfloat16"] = kFeatureBFloat16;
  m.attr("feature_dtypes") = feature_dtypes;
  m.attr("max_members") = kMaxMembers;
  m.attr("refresh_choice") = kRefreshChoice;
  m.attr("choice_slots") = sizeof(GreedyChoice) / 8;
}

template <class Kernels>
void bind_kernels(py::module_& m) {
  using std::uintptr_t;
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.attr("backend") = Kernels::kName;
  bind_views(m);

  m.def(
      "pair_diff",
      [](FeatureView features, PairView pairs, uintptr_t out, uintptr_t stream) {
        Kernels::pair_diff(features, pairs, address<void>(out), address<void>(stream));
      },
      py::arg("features"), py::arg("pairs"), py::arg("out"), py::arg("stream"), release);

  m.def(
      "fisher_weights",
      [](uintptr_t rewards, bool rewards_double, int64_t members, int64_t n, PairView pairs,
         uintptr_t out, uintptr_t stream) {
        Kernels::fisher_weights(address<const void>(rewards), rewards_double, members, n, pairs,
                                address<double>(out), address<void>(stream));
      },
      py::arg("rewards"), py::arg("rewards_double"), py::arg("members"), py::arg("n"),
      py::arg("pairs"), py::arg("out"), py::arg("stream"), release);

  m.def(
      "pair_quadform",
      [](FeatureView features, PairView pairs, uintptr_t projected, double scale, uintptr_t out,
         uintptr_t stream) {
        Kernels::pair_quadform(features, pairs, address<const double>(projected), scale,
                               address<double>(out), address<void>(stream));
      },
      py::arg("features"), py::arg("pairs"), py::arg("projected"), py::arg("scale"),
      py::arg("out"), py::arg("stream"), release);

  m.def(
      "fisher_matrix",
      [](FeatureView features, PairView pairs, uintptr_t weights, uintptr_t out,
         uintptr_t stream) {
        Kernels::fisher_matrix(features, pairs, address<const double>(weights),
                               address<double>(out), address<void>(stream));
      },
      py::arg("features"), py::arg("pairs"), py::arg("weights"), py::arg("out"),
      py::arg("stream"), release);

  m.def(
      "fisher_product",
      [](FeatureView features, uintptr_t laplacian, uintptr_t workspace, uintptr_t out,
         uintptr_t stream) {
        Kernels::fisher_product(features, address<const double>(laplacian),
                                address<void>(workspace), address<double>(out),
                                address<void>(stream));
      },
      py::arg("features"), py::arg("laplacian"), py::arg("workspace"), py::arg("out"),
      py::arg("stream"), release);

  m.def(
      "implicit_pairs",
      [](PairView pairs, uintptr_t out, uintptr_t stream) {
        Kernels::implicit_pairs(pairs, address<int64_t>(out), address<void>(stream));
      },
      py::arg("pairs"), py::arg("out"), py::arg("stream"), release);

  m.def("greedy_workspace_bytes", &Kernels::greedy_workspace_bytes, py::arg("problem"));
  m.def("greedy_zeroed_bytes", &Kernels::greedy_zeroed_bytes, py::arg("problem"));
  m.def(
      "greedy_sweep",
      [](const GreedyProblem& problem, GreedyState state, bool downdate, uintptr_t stream) {
        Kernels::greedy_sweep(problem, state, downdate, address<void>(stream));
      },
      py::arg("problem"), py::arg("state"), py::arg("downdate"), py::arg("stream"), release);
  m.def(
      "greedy_apply",
      [](const GreedyProblem& problem, GreedyState state, int64_t step, uintptr_t chosen,
         uintptr_t gains, bool prepare_next, uintptr_t stream) {
        Kernels::greedy_apply(problem, state, step, address<int64_t>(chosen),
                              address<double>(gains), prepare_next, address<void>(stream));
      },
      py::arg("problem"), py::arg("state"), py::arg("step"), py::arg("chosen"), py::arg("gains"),
      py::arg("prepare_next"), py::arg("stream"), release);
  m.def(
      "greedy_run",
      [](const GreedyProblem& problem, GreedyState state, int64_t k, uintptr_t chosen,
         uintptr_t gains, uintptr_t stream) {
        Kernels::greedy_run(problem, state, k, address<int64_t>(chosen), address<double>(gains),
                            address<void>(stream));
      },
      py::arg("problem"), py::arg("state"), py::arg("k"), py::arg("chosen"), py::arg("gains"),
      py::arg("stream"), release);
}

}  // namespace activerm
