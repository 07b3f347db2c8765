"""Read the access-log format out of Istio configuration (MeshConfig, the ``istio`` ConfigMap, IstioOperator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from meshlog.errors import ConfigError
from meshlog.formats.compiler import CompiledFormat, compile_format, compile_json_format
from meshlog.formats.presets import ISTIO, ISTIO_JSON


def _mesh_section(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Find the MeshConfig inside one YAML document of any of the three shapes."""
    if doc.get("kind") == "ConfigMap":
        mesh = (doc.get("data") or {}).get("mesh")
        if isinstance(mesh, str):
            parsed = yaml.safe_load(mesh) or {}
            return parsed if isinstance(parsed, dict) else None
        return None
    if doc.get("kind") == "IstioOperator":
        return ((doc.get("spec") or {}).get("meshConfig")) or {}
    if "meshConfig" in doc:
        return doc["meshConfig"] or {}
    if doc.keys() & {"accessLogFormat", "accessLogEncoding", "accessLogFile"}:
        return doc
    return None


def load_mesh_config(path: str | Path) -> CompiledFormat:
    """The format a mesh config makes the proxies write (Istio's default when it sets none)."""
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    for doc in docs:
        mesh = _mesh_section(doc) if isinstance(doc, dict) else None
        if mesh is None:
            continue
        fmt = mesh.get("accessLogFormat") or ""
        encoding = str(mesh.get("accessLogEncoding") or "TEXT").upper()
        if encoding == "JSON":
            if not fmt:
                return compile_json_format(ISTIO_JSON, name="istio-json")
            try:
                mapping = json.loads(fmt)
            except json.JSONDecodeError:
                # Istio falls back to its default map when the JSON does not parse.
                return compile_json_format(ISTIO_JSON, name="istio-json")
            return compile_json_format(mapping, source=fmt)
        if encoding != "TEXT":
            raise ConfigError(f"{path}: accessLogEncoding must be TEXT or JSON, not {encoding}")
        return compile_format(fmt) if fmt else compile_format(ISTIO, name="istio")
    raise ConfigError(f"{path}: no MeshConfig, istio ConfigMap or IstioOperator found")
