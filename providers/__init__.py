"""Provider adapters behind one interface (`Provider`), and the registry that names them."""

from providers.base import ALL_RPCS, CHAT_RPCS, CredentialValue, Provider, ProviderEnv, ProviderFactory, ProviderSpec
from providers.registry import ProviderRegistry, default_registry

__all__ = [
    "ALL_RPCS",
    "CHAT_RPCS",
    "CredentialValue",
    "Provider",
    "ProviderEnv",
    "ProviderFactory",
    "ProviderRegistry",
    "ProviderSpec",
    "default_registry",
]
