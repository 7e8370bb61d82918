"""The OpenAPI 3.1 document of the API (served by the asgi backend at /openapi.json, rendered at /docs), generated
from api.ROUTES, the table request validation uses, so the documentation cannot drift from the checks."""

from __future__ import annotations

from .api import ROUTES
from .api import __doc__ as api_doc


def openapi(title: str = "facezoo", version: str = "1") -> dict:
    """The OpenAPI 3.1 document of ROUTES: JSON and multipart request bodies from the same Param table the
    validation uses, the error shape, and the API-key schemes."""
    scalar = {"int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"}}
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    paths: dict = {}
    for route in ROUTES:
        op: dict = {"summary": route.summary, "operationId": f"{route.op}_{route.method.lower()}"}
        op["responses"] = {"200": {"description": "OK", "content": {"application/json": {}}}, "default": error}
        if route.auth:
            op["security"] = [{"bearer": []}, {"apiKey": []}]
        if route.path.endswith("}"):
            op["parameters"] = [{"name": "identity", "in": "path", "required": True, "schema": {"type": "string"}}]
        if route.params:
            as_json, as_form = {}, {}
            for p in route.params:
                base = scalar.get(p.kind, {"type": "string"})
                if p.kind == "image":
                    as_json[p.name] = {"type": "string", "contentEncoding": "base64", "description": p.doc}
                    as_form[p.name] = {"type": "string", "format": "binary", "description": p.doc}
                elif p.kind == "images":
                    as_json[p.name] = {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}
                    as_form[p.name] = {"type": "array", "items": {"type": "string", "format": "binary"}}
                else:
                    as_json[p.name] = as_form[p.name] = {**base, "description": p.doc}
            required = [p.name for p in route.params if p.required]
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": as_json, "required": required}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": as_form, "required": required}},
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": api_doc.split("\n\n")[0]},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
