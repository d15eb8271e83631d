"""integration-api: a gRPC gateway to every major LLM provider over one persistent, authenticated stream."""

__version__ = "0.1.0"
