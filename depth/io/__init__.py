"""Model files: checkpoints, foreign formats (Monodepth2 folders, ONNX), conversion, ImageNet
weights, and the files prediction writes."""
