"""Evaluation: the metric kernels (numba), GT files, the Eigen protocol, robustness tests, pose ATE
and metric scale."""

__all__ = ["DATASETS"]

DATASETS = ("kitti", "make3d", "cityscapes", "nyuv2")  # evaluate.py depth --dataset
