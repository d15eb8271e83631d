"""Protocol revisions: which servers this client can work with, and the error when it cannot."""

from __future__ import annotations

from integration_api.client._errors import IncompatibleServerError
from integration_api.client._types import VersionInfo

CLIENT_PROTOCOL_REVISION = 2
"""The protocol revision this client speaks."""

MINIMUM_SERVER_REVISION = 2
"""The oldest server revision this client works with (it relies on revision 2: CANCEL, ``final``, GetVersion)."""


def check_compatible(info: VersionInfo, target: str) -> None:
    """Raise `IncompatibleServerError` unless the server at `target` and this client can work together."""
    if info.protocol_revision < MINIMUM_SERVER_REVISION:
        raise IncompatibleServerError(
            f"the gateway at {target} speaks protocol revision {info.protocol_revision}, but this client (revision "
            f"{CLIENT_PROTOCOL_REVISION}) needs a server of revision {MINIMUM_SERVER_REVISION} or newer: "
            "upgrade the gateway, or use an older integration-api client",
            server_revision=info.protocol_revision,
            client_revision=CLIENT_PROTOCOL_REVISION,
        )
    if info.minimum_client_revision > CLIENT_PROTOCOL_REVISION:
        raise IncompatibleServerError(
            f"the gateway at {target} (protocol revision {info.protocol_revision}) requires clients of revision "
            f"{info.minimum_client_revision} or newer, but this client speaks revision {CLIENT_PROTOCOL_REVISION}: "
            "upgrade the integration-api package",
            server_revision=info.protocol_revision,
            client_revision=CLIENT_PROTOCOL_REVISION,
        )


def predates_versioning(target: str) -> IncompatibleServerError:
    """The error for a server without the GetVersion RPC (revision 1 or older)."""
    return IncompatibleServerError(
        f"the gateway at {target} does not implement GetVersion, so it predates protocol revision 2; this client "
        f"(revision {CLIENT_PROTOCOL_REVISION}) needs revision {MINIMUM_SERVER_REVISION} or newer: upgrade the gateway",
        server_revision=None,
        client_revision=CLIENT_PROTOCOL_REVISION,
    )
