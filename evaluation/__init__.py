"""Evaluation: the paper's matting metrics, test-set composition, evaluators and model scoring."""
