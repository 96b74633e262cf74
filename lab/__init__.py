"""A performance lab workbook for PyTorch training: ResNet-18 on CIFAR-10, with honest timers.

Layers, top-down (each imports only from those below it): the tools (cli, bench, gpucheck), report, parts,
engine, data, core."""
from .core.config import Config
from .core.errors import ConfigError, LabError

__all__ = ["Config", "ConfigError", "LabError"]
