"""`Credential`'s constructors: one per vendor of the vendor table, taking exactly that vendor's credential fields.

The constructors stay written out (users need their typed signatures); this holds them to the table.
"""

from __future__ import annotations

import inspect

import pytest

from integration_api import Credential
from providers.vendors import VENDOR_NAMES, VENDORS, Vendor

# The client's name for a vendor where it differs from the protocol's (users already call `Credential.vertex`).
CLIENT_NAMES = {"vertexai": "vertex"}
NOT_A_VENDOR = {"of"}  # the constructor for arbitrary value keys


def _client_name(vendor: Vendor) -> str:
    return CLIENT_NAMES.get(vendor.name, vendor.name)


def test_one_constructor_per_vendor() -> None:
    constructors = {name for name, member in vars(Credential).items() if isinstance(member, classmethod)}
    assert constructors - NOT_A_VENDOR == {_client_name(vendor) for vendor in VENDORS}


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_NAMES)
def test_a_constructor_takes_the_vendor_fields_and_sends_them_under_their_names(vendor: Vendor) -> None:
    constructor = getattr(Credential, _client_name(vendor))
    parameters = inspect.signature(constructor).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    optional = [p.name for p in parameters if p.default is not inspect.Parameter.empty]
    assert (set(required), set(optional)) == (set(vendor.required), set(vendor.optional))
    assert set(constructor(**{name: "v" for name in required}).values) == set(vendor.required)
    assert set(constructor(**{name: "v" for name in vendor.credential_fields}).values) == set(vendor.credential_fields)
