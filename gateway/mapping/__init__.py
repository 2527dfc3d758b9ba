"""Client mappings: load ``mappings/<client>.yaml``, compile it against a file's header, map rows."""

from gateway.mapping.engine import MappedRow, RowMapper, compile_mapping
from gateway.mapping.spec import (FieldSpec, FormatSpec, MappingSpec, PolicySpec, load_mapping, mapping_file,
                                  parse_mapping)

__all__ = ["FieldSpec", "FormatSpec", "MappedRow", "MappingSpec", "PolicySpec", "RowMapper", "compile_mapping",
           "load_mapping", "mapping_file", "parse_mapping"]
