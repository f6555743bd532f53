"""Evaluation: the metric kernels (numba), GT files, the Eigen protocol, robustness tests, pose ATE
and metric scale."""
