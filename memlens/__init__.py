"""memlens: SmolVLA with RMT memory tokens, and tools to see what the memory holds."""

__version__ = "0.1.0"
