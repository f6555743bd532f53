"""depth.checks.check_shape: the one shape check and its one message style."""
from __future__ import annotations

import pytest
import torch

from depth.checks import check_shape


def test_check_shape_accepts_matching_shapes():
    check_shape(torch.zeros(2, 3, 4, 5), "B 3 H W", "image")
    check_shape(torch.zeros(7, 3, 3), "* 3 3", "K")
    check_shape(torch.zeros(3, 3), "* 3 3", "K")
    check_shape(torch.zeros(2, 4), "B 4", "boxes", B=2)
    check_shape(torch.zeros(2, 3, 1, 4, 5), "B C H W | B F C H W", "images")


@pytest.mark.parametrize("x, pattern, sizes, message", [
    (torch.zeros(1, 1, 64, 64), "B 3 H W", {}, r"image must have shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"),
    (torch.zeros(3, 64, 64), "B 3 H W", {}, r"got \(3, 64, 64\)"),
    (torch.zeros(3, 4), "B 4", {"B": 2}, r"image must have shape \(2, 4\), got \(3, 4\)"),
    (torch.zeros(4), "* 3 3", {}, r"\(\*, 3, 3\)"),
    (torch.zeros(2, 3), "B C H W | B F C H W", {}, r"\(B, C, H, W\) or \(B, F, C, H, W\)"),
    ([1, 2], "B 3", {}, r"got list"),
])
def test_check_shape_names_expected_and_actual(x, pattern, sizes, message):
    with pytest.raises(ValueError, match=message):
        check_shape(x, pattern, "image", **sizes)
