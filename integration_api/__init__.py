"""integration-api: a gRPC gateway to every major LLM provider over one persistent, authenticated stream."""

from integration_api.client import AsyncClient, Client, Credential

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "Credential", "__version__"]
