"""The CASI learner: a Net service (PyTorch model or scripted policy) behind gRPC."""

__version__ = "0.1.0"
