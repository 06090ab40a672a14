"""perfctl: capture LLM / VLM inference under Nsight Systems and analyze where the time goes."""

__version__ = "0.1.0"
