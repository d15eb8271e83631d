"""Test helpers for users of the gateway: a fake client, and the vendor wire-format emulators (`.emulators`)."""

from integration_api.testing.fake import AsyncFakeClient, FakeClient, FakeGateway, FakeReply, RecordedCall

__all__ = ["AsyncFakeClient", "FakeClient", "FakeGateway", "FakeReply", "RecordedCall"]
