"""docs/protocol.md cannot drift from the .proto: its tables are checked against the generated descriptors.

Every service and its RPCs, every RPC's request and response types, and every message's and enum's fields (number,
name, type) must appear in the doc's tables exactly, and nothing more; the `rev` column must match the
"Added (revision N)" markings of the .proto source (descriptors do not carry comments).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from integration_api.proto import integration_api_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
PROTO = ROOT / "protos" / "integration_api" / "proto" / "integration_api.proto"
PACKAGE_PREFIX = f".{pb.DESCRIPTOR.package}."
_TYPE_NAMES = {
    number: name.removeprefix("TYPE_").lower() for name, number in descriptor_pb2.FieldDescriptorProto.Type.items()
}

Row = list[str]


# --- the doc -------------------------------------------------------------------------------------------------------


def _cells(line: str) -> Row:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip().replace("`", "") for cell in cells]


def _tables(lines: list[str]) -> Iterator[tuple[Row, list[Row]]]:
    """Each markdown table in `lines`: its header and its body rows."""
    position = 0
    while position < len(lines):
        if lines[position].startswith("|") and position + 1 < len(lines) and lines[position + 1].startswith("|-"):
            header = _cells(lines[position])
            position += 2
            rows = []
            while position < len(lines) and lines[position].startswith("|"):
                rows.append(_cells(lines[position]))
                position += 1
            yield header, rows
        else:
            position += 1


def _doc_lines() -> list[str]:
    return DOC.read_text(encoding="utf-8").splitlines()


def _table(header_start: Row) -> list[Row]:
    matches = [rows for header, rows in _tables(_doc_lines()) if header[: len(header_start)] == header_start]
    assert len(matches) == 1, f"docs/protocol.md needs exactly one table whose header starts {header_start}"
    return matches[0]


@functools.cache
def _doc_types() -> dict[str, tuple[str, list[Row]]]:
    """`### message X` / `### enum X` heading -> ("message" or "enum", the rows of the table under it)."""
    kinds: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _doc_lines():
        heading = re.fullmatch(r"#+ (message|enum) ([\w.]+)", line)
        if heading:
            kind, name = heading.groups()
            assert name not in sections, f"{name} is documented twice"
            kinds[name] = kind
            current = sections[name] = []
        elif line.startswith("#"):
            current = None
        elif current is not None:
            current.append(line)
    return {
        name: (kinds[name], [row for _, rows in _tables(lines) for row in rows]) for name, lines in sections.items()
    }


# --- the .proto ----------------------------------------------------------------------------------------------------


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return proto


def _name(type_name: str) -> str:
    return type_name.removeprefix(PACKAGE_PREFIX).removeprefix(".")


def _field_type(
    field: descriptor_pb2.FieldDescriptorProto, map_entries: dict[str, descriptor_pb2.DescriptorProto]
) -> str:
    """The field's type as the .proto spells it: `repeated X`, `optional X`, `map<K, V>`, `Credential`, `uint64`."""
    if field.type_name and _name(field.type_name) in map_entries:
        key, value = map_entries[_name(field.type_name)].field
        return f"map<{_field_type(key, {})}, {_field_type(value, {})}>"
    base = _name(field.type_name) if field.type_name else _TYPE_NAMES[field.type]
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {base}"
    return f"optional {base}" if field.proto3_optional else base


@functools.cache
def _proto_types() -> dict[str, tuple[bool, list[tuple[str, ...]]]]:
    """Message or enum name (nested ones dotted) -> (is an enum, its rows).

    A message's rows are (number, field, type); an enum's are (number, value). Map entries are types, not messages.
    """
    types: dict[str, tuple[bool, list[tuple[str, ...]]]] = {}

    def add_enum(name: str, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        types[name] = (True, [(str(value.number), value.name) for value in enum.value])

    def walk(messages: Iterable[descriptor_pb2.DescriptorProto], prefix: str) -> None:
        for message in messages:
            name = prefix + message.name
            entries = {f"{name}.{nested.name}": nested for nested in message.nested_type if nested.options.map_entry}
            types[name] = (False, [(str(f.number), f.name, _field_type(f, entries)) for f in message.field])
            for enum in message.enum_type:
                add_enum(f"{name}.{enum.name}", enum)
            walk([nested for nested in message.nested_type if not nested.options.map_entry], name + ".")

    proto = _file()
    walk(proto.message_type, "")
    for enum in proto.enum_type:
        add_enum(enum.name, enum)
    return types


_MARK = re.compile(r"Added \(revision (\d+)\)")
_SECTION_MARK = re.compile(r"added in revision (\d+)")


@functools.cache
def _revisions() -> dict[tuple[str, str], int]:
    """(message, field), (enum, value) and (service, rpc) pairs the .proto marks as added after revision 1 -> the
    revision that added them (everything unmarked is revision 1).

    A mark is an "Added (revision N)" comment right above a field, rpc, message or enum (a marked message or enum
    is revision N as a whole), or a section title comment saying "added in revision N".
    """
    marked: dict[tuple[str, str], int] = {}
    scopes: list[tuple[str, int]] = []  # enclosing blocks: (name, the revision that added it, 0 if none)
    pending = section = 0
    after_rule = False
    for raw in PROTO.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("//"):
            text = line.removeprefix("//").strip()
            if re.fullmatch(r"-+", text):
                after_rule = True
                continue
            if after_rule:  # the title of a section, between two rules
                found = _SECTION_MARK.search(text.lower())
                section = int(found.group(1)) if found else 0
            mark = _MARK.search(text)
            pending = pending or (int(mark.group(1)) if mark else 0)
            after_rule = False
            continue
        after_rule = False
        block = re.match(r"(message|enum|service|oneof)\s+(\w+)\s*\{", line)
        member = re.match(r"(?:rpc\s+(\w+)\s*\(|.*?(\w+)\s*=\s*\d+\s*;)", line)
        if block:
            kind, name = block.groups()
            outer = next((scope for scope, _ in reversed(scopes) if scope), "")
            qualified = "" if kind == "oneof" else (f"{outer}.{name}" if outer else name)
            scopes.append((qualified, pending or section or max((added for _, added in scopes), default=0)))
            if line.endswith("}"):
                scopes.pop()
        elif member and scopes:
            owner = next(scope for scope, _ in reversed(scopes) if scope)
            revision = pending or section or max((added for _, added in scopes), default=0)
            if revision:
                marked[(owner, member.group(1) or member.group(2))] = revision
        elif line == "}" and scopes:
            scopes.pop()
        pending = 0  # a mark applies to the line right below it only
    return marked


# --- the checks ----------------------------------------------------------------------------------------------------


def test_services_and_their_rpcs() -> None:
    documented: dict[str, set[str]] = {}
    for services, rpcs in _table(["service", "RPCs"]):
        for service in services.split(","):
            documented[service.strip()] = {rpc.strip() for rpc in rpcs.split(",")}
    declared = {
        service.name: {method.name for method in service.methods} for service in pb.DESCRIPTOR.services_by_name.values()
    }
    assert documented == declared


def test_rpc_signatures_and_revisions() -> None:
    rows = {row[0]: row[1:4] for row in _table(["RPC", "request", "response", "rev"])}
    revisions = _revisions()
    declared: dict[str, list[str]] = {}
    for service in _file().service:
        for method in service.method:
            signature = [
                ("stream " if method.client_streaming else "") + _name(method.input_type),
                ("stream " if method.server_streaming else "") + _name(method.output_type),
                str(revisions.get((service.name, method.name), 1)),
            ]
            assert declared.setdefault(method.name, signature) == signature, f"{method.name} differs between services"
    assert rows == declared


@pytest.mark.parametrize("name", sorted(_proto_types()))
def test_every_message_and_enum_is_documented_field_by_field(name: str) -> None:
    is_enum, expected = _proto_types()[name]
    kind = "enum" if is_enum else "message"
    documented = _doc_types()
    assert name in documented, f"docs/protocol.md has no '### {kind} {name}' section"
    assert documented[name][0] == kind
    rows = documented[name][1]
    width = 2 if is_enum else 3  # the columns before `rev`: number, value / number, field, type
    assert [tuple(row[:width]) for row in rows] == expected
    revisions = _revisions()
    for row in rows:
        assert row[width] == str(revisions.get((name, row[1]), 1)), f"{name}.{row[1]}: wrong rev"


def test_the_doc_documents_no_type_the_proto_lacks() -> None:
    assert set(_doc_types()) == set(_proto_types())


def test_revision_marks_are_read_from_the_proto() -> None:
    """Guards the .proto parsing itself: a few marks the .proto certainly has, and fields it certainly does not mark."""
    revisions = _revisions()
    revision_2 = {pair for pair, revision in revisions.items() if revision == 2}
    revision_3 = {pair for pair, revision in revisions.items() if revision == 3}
    assert {("ChatRequest", "action"), ("Usage", "inputTokens"), ("GetVersionResponse", "providers")} <= revision_2
    assert {("UnifiedProviderService", "GetVersion"), ("RequestAction", "REQUEST_ACTION_CANCEL")} <= revision_2
    assert {
        ("ChatRequest", "sessionId"),
        ("ChatResponse", "pong"),
        ("RequestAction", "REQUEST_ACTION_PING"),
    } <= revision_3
    assert {("SessionService", "CreateSession"), ("SessionInfo", "sessionId"), ("LatencyStats", "p95Ms")} <= revision_3
    assert ("ChatRequest", "providerName") not in revisions
    assert ("ToolMessage.Tool", "name") not in revisions
    assert ("ChatResponse", "metrics") not in revisions
