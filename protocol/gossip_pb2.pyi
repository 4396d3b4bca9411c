from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_OK: _ClassVar[Status]
    STATUS_NOT_YET: _ClassVar[Status]
    STATUS_LAYOUT_MISMATCH: _ClassVar[Status]
    STATUS_REFUSED: _ClassVar[Status]
    STATUS_SWARM_MISMATCH: _ClassVar[Status]
    STATUS_TOO_LARGE: _ClassVar[Status]
    STATUS_ROUND_GONE: _ClassVar[Status]
    STATUS_NO_SNAPSHOT: _ClassVar[Status]
    STATUS_UNSUPPORTED_DTYPE: _ClassVar[Status]
    STATUS_UNAUTHENTICATED: _ClassVar[Status]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]

class PullMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PULL_MODE_UNSPECIFIED: _ClassVar[PullMode]
    PULL_MODE_EXACT_ROUND: _ClassVar[PullMode]
    PULL_MODE_NEWEST: _ClassVar[PullMode]

class ChecksumKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKSUM_KIND_UNSPECIFIED: _ClassVar[ChecksumKind]
    CHECKSUM_KIND_CRC32: _ClassVar[ChecksumKind]
    CHECKSUM_KIND_CRC32C: _ClassVar[ChecksumKind]
STATUS_UNSPECIFIED: Status
STATUS_OK: Status
STATUS_NOT_YET: Status
STATUS_LAYOUT_MISMATCH: Status
STATUS_REFUSED: Status
STATUS_SWARM_MISMATCH: Status
STATUS_TOO_LARGE: Status
STATUS_ROUND_GONE: Status
STATUS_NO_SNAPSHOT: Status
STATUS_UNSUPPORTED_DTYPE: Status
STATUS_UNAUTHENTICATED: Status
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DTYPE_UINT8: DType
PULL_MODE_UNSPECIFIED: PullMode
PULL_MODE_EXACT_ROUND: PullMode
PULL_MODE_NEWEST: PullMode
CHECKSUM_KIND_UNSPECIFIED: ChecksumKind
CHECKSUM_KIND_CRC32: ChecksumKind
CHECKSUM_KIND_CRC32C: ChecksumKind

class HelloRequest(_message.Message):
    __slots__ = ("swarm_id", "peer_id", "address", "round", "layout_fingerprint", "capabilities", "auth_token")
    SWARM_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    swarm_id: str
    peer_id: str
    address: str
    round: int
    layout_fingerprint: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    auth_token: bytes
    def __init__(self, swarm_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., address: _Optional[str] = ..., round: _Optional[int] = ..., layout_fingerprint: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., auth_token: _Optional[bytes] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("status", "detail", "swarm_id", "peer_id", "address", "round", "layout_fingerprint", "capabilities")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SWARM_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    status: Status
    detail: str
    swarm_id: str
    peer_id: str
    address: str
    round: int
    layout_fingerprint: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., detail: _Optional[str] = ..., swarm_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., address: _Optional[str] = ..., round: _Optional[int] = ..., layout_fingerprint: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("swarm_id", "peer_id", "round", "mode", "layout_fingerprint", "wire_dtype", "max_payload_bytes", "codec", "have_copy", "have_round", "auth_token")
    SWARM_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    WIRE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    HAVE_COPY_FIELD_NUMBER: _ClassVar[int]
    HAVE_ROUND_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    swarm_id: str
    peer_id: str
    round: int
    mode: PullMode
    layout_fingerprint: str
    wire_dtype: DType
    max_payload_bytes: int
    codec: str
    have_copy: str
    have_round: int
    auth_token: bytes
    def __init__(self, swarm_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., round: _Optional[int] = ..., mode: _Optional[_Union[PullMode, str]] = ..., layout_fingerprint: _Optional[str] = ..., wire_dtype: _Optional[_Union[DType, str]] = ..., max_payload_bytes: _Optional[int] = ..., codec: _Optional[str] = ..., have_copy: _Optional[str] = ..., have_round: _Optional[int] = ..., auth_token: _Optional[bytes] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape", "nbytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ...) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("swarm_id", "peer_id", "round", "layout_fingerprint", "total_bytes", "tensors", "checksum_kind", "chunk_bytes", "copy_id", "base_round")
    SWARM_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_KIND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    COPY_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_ROUND_FIELD_NUMBER: _ClassVar[int]
    swarm_id: str
    peer_id: str
    round: int
    layout_fingerprint: str
    total_bytes: int
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    checksum_kind: ChecksumKind
    chunk_bytes: int
    copy_id: str
    base_round: int
    def __init__(self, swarm_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., round: _Optional[int] = ..., layout_fingerprint: _Optional[str] = ..., total_bytes: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., checksum_kind: _Optional[_Union[ChecksumKind, str]] = ..., chunk_bytes: _Optional[int] = ..., copy_id: _Optional[str] = ..., base_round: _Optional[int] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("offset", "crc32", "payload")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    offset: int
    crc32: int
    payload: bytes
    def __init__(self, offset: _Optional[int] = ..., crc32: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Trailer(_message.Message):
    __slots__ = ("total_bytes", "num_chunks")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    num_chunks: int
    def __init__(self, total_bytes: _Optional[int] = ..., num_chunks: _Optional[int] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("status", "detail", "server_round")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SERVER_ROUND_FIELD_NUMBER: _ClassVar[int]
    status: Status
    detail: str
    server_round: int
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., detail: _Optional[str] = ..., server_round: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "data", "trailer", "refusal")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    data: DataChunk
    trailer: Trailer
    refusal: Refusal
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., data: _Optional[_Union[DataChunk, _Mapping]] = ..., trailer: _Optional[_Union[Trailer, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...
