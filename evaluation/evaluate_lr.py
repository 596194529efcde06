"""Low-resolution evaluator: all metrics (Conn included) on the CPU, clips scored in parallel.

``python -m evaluation.evaluate_lr --pred-dir PRED --true-dir TRUE [--metrics ...] [--num-workers 4]``
"""
from .evaluate import main

if __name__ == "__main__":
    main("lr")
