"""Training data: matting and segmentation datasets, augmentation, frame samplers, a synthetic data writer."""
