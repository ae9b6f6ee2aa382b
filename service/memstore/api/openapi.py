"""Builds the OpenAPI 3.1 document from the route table (``routes.ROUTES``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from memstore import __version__
from memstore.api.schemas import ErrorOut

if TYPE_CHECKING:
    from memstore.api.routes import Route
    from memstore.config import Settings

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], mode: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def build_openapi(routes: tuple[Route, ...], settings: Settings) -> dict[str, Any]:
    max_page_size = settings.max_page_size
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    error_ref = _schema(ErrorOut, "serialization", components)
    for route in routes:
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
        }
        params = []
        for p in route.params:
            schema = dict(p.schema)
            if p.name == "limit":
                schema["maximum"] = max_page_size
            params.append(
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": schema,
                }
            )
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema(route.body, "validation", components)}
                },
            }
        responses: dict[str, Any] = {}
        for status, (description, body) in sorted(route.responses.items()):
            resp: dict[str, Any] = {"description": description}
            if isinstance(body, str):
                resp["content"] = {body: {"schema": {}}}
            elif body is not None:
                ref = error_ref if body is ErrorOut else _schema(body, "serialization", components)
                resp["content"] = {"application/json": {"schema": ref}}
            headers = route.response_headers.get(status)
            if headers:
                resp["headers"] = {
                    h: {"description": d, "schema": {"type": "string"}} for h, d in headers.items()
                }
            responses[str(status)] = resp
        op["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memstore",
            "version": __version__,
            "description": "Distributed memory for AI agents: entities, conversations, "
            "tool usage and learning feedback per memory namespace.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
