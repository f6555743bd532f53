"""Training: the trainer (the step and the loop) and its parts, the losses, reprojection, zoom
imitation, the resumable sampler, fine-tuning and run folders."""
