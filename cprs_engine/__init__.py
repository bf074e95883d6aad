"""The QwenLong-CPRS compression engine. `Compressor` needs the `engine` extra (torch)."""

from cprs_engine.result import CompressionResult, Span

__all__ = ["CompressionResult", "Compressor", "Span"]


def __getattr__(name: str):
    if name == "Compressor":
        from cprs_engine.compressor import Compressor

        return Compressor
    raise AttributeError(name)
