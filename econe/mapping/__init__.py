"""The mapping language: YAML action mappings compiled once into callables (see mappings/README.md).

loader  — reads and validates mappings/<Action>.yaml and mappings/views/*.yaml
expr    — Jinja2 expressions/values and the handful of filters mappings may use
views   — OpenNebula XML element → EC2 member dict, precompiled paths
filters — EC2 `Filter.N` matching, pagination tokens
ids     — strict EC2 id parsing/formatting
onecall — one OpenNebula call with per-call error tables
"""

from econe.mapping.loader import Mapping, MappingError, check_against_spec, load_mappings

__all__ = ["Mapping", "MappingError", "check_against_spec", "load_mappings"]
