"""A performance lab workbook for PyTorch training: ResNet-18 on CIFAR-10, with honest timers."""
from .config import Config, ConfigError, LabError

__all__ = ["Config", "ConfigError", "LabError"]
