import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DigestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIGEST_TYPE_UNSPECIFIED: _ClassVar[DigestType]
    DIGEST_TYPE_B4: _ClassVar[DigestType]
    DIGEST_TYPE_B5: _ClassVar[DigestType]

class FileType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_TYPE_UNSPECIFIED: _ClassVar[FileType]
    FILE_TYPE_PROTO: _ClassVar[FileType]
    FILE_TYPE_DOC: _ClassVar[FileType]
    FILE_TYPE_LICENSE: _ClassVar[FileType]
DIGEST_TYPE_UNSPECIFIED: DigestType
DIGEST_TYPE_B4: DigestType
DIGEST_TYPE_B5: DigestType
FILE_TYPE_UNSPECIFIED: FileType
FILE_TYPE_PROTO: FileType
FILE_TYPE_DOC: FileType
FILE_TYPE_LICENSE: FileType

class Digest(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: DigestType
    value: bytes
    def __init__(self, type: _Optional[_Union[DigestType, str]] = ..., value: _Optional[bytes] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("id", "create_time", "owner_id", "module_id", "digest", "created_by_user_id", "source_control_url")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CONTROL_URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    create_time: _timestamp_pb2.Timestamp
    owner_id: str
    module_id: str
    digest: Digest
    created_by_user_id: str
    source_control_url: str
    def __init__(self, id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner_id: _Optional[str] = ..., module_id: _Optional[str] = ..., digest: _Optional[_Union[Digest, _Mapping]] = ..., created_by_user_id: _Optional[str] = ..., source_control_url: _Optional[str] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("path", "content")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: bytes
    def __init__(self, path: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class ResourceRef(_message.Message):
    __slots__ = ("id", "name")
    class Name(_message.Message):
        __slots__ = ("owner", "module", "label_name", "ref")
        OWNER_FIELD_NUMBER: _ClassVar[int]
        MODULE_FIELD_NUMBER: _ClassVar[int]
        LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
        REF_FIELD_NUMBER: _ClassVar[int]
        owner: str
        module: str
        label_name: str
        ref: str
        def __init__(self, owner: _Optional[str] = ..., module: _Optional[str] = ..., label_name: _Optional[str] = ..., ref: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: ResourceRef.Name
    def __init__(self, id: _Optional[str] = ..., name: _Optional[_Union[ResourceRef.Name, _Mapping]] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("commits", "edges")
    class Commit(_message.Message):
        __slots__ = ("commit", "registry")
        COMMIT_FIELD_NUMBER: _ClassVar[int]
        REGISTRY_FIELD_NUMBER: _ClassVar[int]
        commit: module_v1beta1_pb2.Commit
        registry: str
        def __init__(self, commit: _Optional[_Union[module_v1beta1_pb2.Commit, _Mapping]] = ..., registry: _Optional[str] = ...) -> None: ...
    class Node(_message.Message):
        __slots__ = ("commit_id", "registry")
        COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
        REGISTRY_FIELD_NUMBER: _ClassVar[int]
        commit_id: str
        registry: str
        def __init__(self, commit_id: _Optional[str] = ..., registry: _Optional[str] = ...) -> None: ...
    class Edge(_message.Message):
        __slots__ = ("from_node", "to_node")
        FROM_NODE_FIELD_NUMBER: _ClassVar[int]
        TO_NODE_FIELD_NUMBER: _ClassVar[int]
        from_node: Graph.Node
        to_node: Graph.Node
        def __init__(self, from_node: _Optional[_Union[Graph.Node, _Mapping]] = ..., to_node: _Optional[_Union[Graph.Node, _Mapping]] = ...) -> None: ...
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[Graph.Commit]
    edges: _containers.RepeatedCompositeFieldContainer[Graph.Edge]
    def __init__(self, commits: _Optional[_Iterable[_Union[Graph.Commit, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Graph.Edge, _Mapping]]] = ...) -> None: ...

class GetCommitsRequest(_message.Message):
    __slots__ = ("resource_refs", "digest_type")
    RESOURCE_REFS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    resource_refs: _containers.RepeatedCompositeFieldContainer[ResourceRef]
    digest_type: DigestType
    def __init__(self, resource_refs: _Optional[_Iterable[_Union[ResourceRef, _Mapping]]] = ..., digest_type: _Optional[_Union[DigestType, str]] = ...) -> None: ...

class GetCommitsResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[Commit]
    def __init__(self, commits: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ("resource_refs", "digest_type")
    class ResourceRef(_message.Message):
        __slots__ = ("resource_ref", "registry")
        RESOURCE_REF_FIELD_NUMBER: _ClassVar[int]
        REGISTRY_FIELD_NUMBER: _ClassVar[int]
        resource_ref: module_v1beta1_pb2.ResourceRef
        registry: str
        def __init__(self, resource_ref: _Optional[_Union[module_v1beta1_pb2.ResourceRef, _Mapping]] = ..., registry: _Optional[str] = ...) -> None: ...
    RESOURCE_REFS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    resource_refs: _containers.RepeatedCompositeFieldContainer[GetGraphRequest.ResourceRef]
    digest_type: DigestType
    def __init__(self, resource_refs: _Optional[_Iterable[_Union[GetGraphRequest.ResourceRef, _Mapping]]] = ..., digest_type: _Optional[_Union[DigestType, str]] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("values", "digest_type")
    class Value(_message.Message):
        __slots__ = ("resource_ref", "file_types", "paths", "paths_allow_not_exist")
        RESOURCE_REF_FIELD_NUMBER: _ClassVar[int]
        FILE_TYPES_FIELD_NUMBER: _ClassVar[int]
        PATHS_FIELD_NUMBER: _ClassVar[int]
        PATHS_ALLOW_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
        resource_ref: ResourceRef
        file_types: _containers.RepeatedScalarFieldContainer[FileType]
        paths: _containers.RepeatedScalarFieldContainer[str]
        paths_allow_not_exist: bool
        def __init__(self, resource_ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., file_types: _Optional[_Iterable[_Union[FileType, str]]] = ..., paths: _Optional[_Iterable[str]] = ..., paths_allow_not_exist: _Optional[bool] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[DownloadRequest.Value]
    digest_type: DigestType
    def __init__(self, values: _Optional[_Iterable[_Union[DownloadRequest.Value, _Mapping]]] = ..., digest_type: _Optional[_Union[DigestType, str]] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("contents",)
    class Content(_message.Message):
        __slots__ = ("commit", "files", "v1_buf_yaml_file", "v1_buf_lock_file")
        COMMIT_FIELD_NUMBER: _ClassVar[int]
        FILES_FIELD_NUMBER: _ClassVar[int]
        V1_BUF_YAML_FILE_FIELD_NUMBER: _ClassVar[int]
        V1_BUF_LOCK_FILE_FIELD_NUMBER: _ClassVar[int]
        commit: Commit
        files: _containers.RepeatedCompositeFieldContainer[File]
        v1_buf_yaml_file: File
        v1_buf_lock_file: File
        def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., v1_buf_yaml_file: _Optional[_Union[File, _Mapping]] = ..., v1_buf_lock_file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    contents: _containers.RepeatedCompositeFieldContainer[DownloadResponse.Content]
    def __init__(self, contents: _Optional[_Iterable[_Union[DownloadResponse.Content, _Mapping]]] = ...) -> None: ...
