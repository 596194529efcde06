"""Robust Video Matting model: ``from model import MattingNetwork``."""
from .model import REFINERS, VARIANTS, MattingNetwork

__all__ = ["MattingNetwork", "VARIANTS", "REFINERS"]
