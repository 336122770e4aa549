// _core: the CPU backend. Never links anything CUDA.
#include "activerm/cpu_kernels.h"
#include "activerm/wide_vectors.h"
#include "../cpu/feature_projection_cpu.h"
#include "../cpu/lazy_greedy_cpu.h"
#include "bindings.h"

namespace {

namespace py = pybind11;

// The exact lazy sweep (CPU only): an object that owns its buckets and kept projections.
void bind_lazy_greedy(py::module_& m) {
  using activerm::GreedyProblem;
  using activerm::GreedyState;
  using activerm::LazyGreedyCpu;
  using std::uintptr_t;
  const auto release = py::call_guard<py::gil_scoped_release>();
  py::class_<LazyGreedyCpu>(m, "LazyGreedy")
      .def(py::init<const GreedyProblem&, int64_t>(), py::arg("problem"), py::arg("capacity"))
      .def_static("supports", &LazyGreedyCpu::supports, py::arg("problem"))
      .def_static("memory_bound", &LazyGreedyCpu::memory_bound, py::arg("problem"),
                  py::arg("capacity"))
      .def("sweep", &LazyGreedyCpu::sweep, py::arg("problem"), py::arg("state"),
           py::arg("downdate"), release)
      .def(
          "run",
          [](LazyGreedyCpu& self, const GreedyProblem& problem, GreedyState state, int64_t k,
             uintptr_t chosen, uintptr_t gains) {
            self.run(problem, state, k, activerm::address<int64_t>(chosen),
                     activerm::address<double>(gains));
          },
          py::arg("problem"), py::arg("state"), py::arg("k"), py::arg("chosen"),
          py::arg("gains"), release)
      .def_property_readonly("sweeps", &LazyGreedyCpu::sweeps)
      .def_property_readonly("refreshed", &LazyGreedyCpu::refreshed)
      .def_property_readonly("downdates", &LazyGreedyCpu::downdates);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "activerm_fast CPU kernels (C++17, OpenMP)";
  activerm::bind_kernels<activerm::CpuKernels>(m);
  bind_lazy_greedy(m);
  m.def(
      "project_features",
      [](activerm::FeatureView features, std::uintptr_t matrix, int64_t m, std::uintptr_t out) {
        activerm::project_features_cpu(features, activerm::address<const double>(matrix), m,
                                       activerm::address<double>(out));
      },
      py::arg("features"), py::arg("matrix"), py::arg("columns"), py::arg("out"),
      py::call_guard<py::gil_scoped_release>());
  m.attr("compiler") = ACTIVERM_CXX_COMPILER;
  m.def("max_threads", &activerm::cpu_max_threads, "OpenMP threads a parallel region would use");
  m.def("wide_vectors", &activerm::wide_vectors,
        "whether the kernels' AVX-512 forms run (wide_vectors.h): the CPU has AVX-512F and "
        "ACTIVERM_FAST_NARROW_VECTORS is not set");
}
