"""High-resolution evaluator: MAD, MSE, Grad, dtSSD and fgr MSE with torch, on the GPU when present.

``python -m evaluation.evaluate_hr --pred-dir PRED --true-dir TRUE [--metrics ...] [--device cuda]``
"""
from .evaluate import main

if __name__ == "__main__":
    main("hr")
