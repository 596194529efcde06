"""File kinds shared by conversion, evaluation and their tools, in a module that imports nothing heavy (the
evaluators and the training code must not need PyAV just to know what an image file is)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
