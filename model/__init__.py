"""Robust Video Matting model: ``from model import MattingNetwork``."""
from .model import REFINERS, VARIANTS, MattingNetwork, auto_downsample_ratio

__all__ = ["MattingNetwork", "VARIANTS", "REFINERS", "auto_downsample_ratio"]
