"""Networks: depth (encoder + decoder) and pose. Networks take tensors and return tensors."""
from depth.networks.depth_net import DepthNet
from depth.networks.pose import PoseNet

__all__ = ["DepthNet", "PoseNet"]
