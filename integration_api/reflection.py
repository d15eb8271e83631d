"""Server reflection under both of its names: ``grpc.reflection.v1`` (what grpcurl and Postman try first) and
``grpc.reflection.v1alpha`` (what older tools speak).

grpcio-reflection ships only v1alpha. The v1 protocol is the same messages, fields and numbers under another
package name, so one servicer answers both: the v1 method is registered with the v1alpha message classes (the
bytes on the wire are identical), and a v1 copy of the v1alpha file descriptor joins the descriptor pool so that
the v1 service is itself listed and describable like every other.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer([*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1_method})]
    )


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Add grpc/reflection/v1/reflection.proto to `pool` (once), made from the v1alpha file by renaming its package."""
    try:
        pool.FindFileByName(V1_FILE)
        return  # added by an earlier server in this process
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old_prefix, new_prefix = f".{file.package}.", f".{V1_PACKAGE}."
    file.name, file.package = V1_FILE, V1_PACKAGE
    file.ClearField("options")  # v1alpha's java/go package names; v1 would name its own
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # message fields only: assigning would give a scalar a type name
                field.type_name = field.type_name.replace(old_prefix, new_prefix, 1)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_prefix, new_prefix, 1)
            method.output_type = method.output_type.replace(old_prefix, new_prefix, 1)
    pool.AddSerializedFile(file.SerializeToString())
