"""Mappings: YAML files that say how a source system's records become a target's."""
from migrator.mapping.compile import (
    CompiledField, FieldError, MapResult, Mapping, Ref, StreamMapping, compile_mapping,
    load_mapping,
)
from migrator.mapping.paths import Path, PathError, compile_path
from migrator.mapping.transforms import (
    TRANSFORMS, TransformError, TransformFactory, build_transform, get_transform,
)

__all__ = [
    "CompiledField", "FieldError", "MapResult", "Mapping", "Path", "PathError", "Ref",
    "StreamMapping", "TRANSFORMS", "TransformError", "TransformFactory", "build_transform",
    "compile_mapping", "compile_path", "get_transform", "load_mapping",
]
