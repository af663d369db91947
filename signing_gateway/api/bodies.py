"""JSON request bodies that the endpoint reads itself, so a request at a signer holds no copy.

A FastAPI body parameter keeps every form of the body alive until the endpoint returns: the
parsed JSON (on the `Request` and in a local of FastAPI's handler) and the validated model (in
the endpoint's arguments). An issuance endpoint spends nearly all of that time awaiting a
signer, and needs only what it derived from the body by then. So the routes with a body take
the `Request` and call `read_body`, which validates straight from the bytes (pydantic's own
JSON parser: no intermediate dict) and keeps nothing; the endpoint drops the model once it has
what the signer call needs. `python -m bench.memory_sites` (1,500 `/v1/dcc` requests held at
the signer): 59.3 -> 53.8 KB of Python allocations per request.

Validation fails as FastAPI's would: a `RequestValidationError` (`BodyInvalid`), locations
under `"body"`, a missing body as `missing`; but it carries only the first `MAX_ERRORS_LISTED`
errors and the count of all (from that many on, of at least all: the rules over several
fields were not all checked), since only those are answered: a body of 15,000 unknown keys
made 15,001 errors, and turning each into a dict (and then into the answer) took longer than
validating it. The body is documented as FastAPI would document it:
`body_doc` gives the route's `openapi_extra`, and `document_schemas` adds the body models'
schemas to the document's components (and those of the other models that a route's document
names by `schema_ref`, such as the problem answers').
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from signing_gateway.api.openapi_document import amend_openapi
from signing_gateway.domain.errors import MAX_ERRORS_LISTED

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fastapi import FastAPI, Request

__all__ = ["BodyInvalid", "body_doc", "document_schemas", "read_body", "schema_ref"]

Model = TypeVar("Model", bound=BaseModel)

#: Where FastAPI puts component schemas, and how a schema names another.
_REF_TEMPLATE = "#/components/schemas/{model}"


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """An OpenAPI schema naming `model`'s: list `model` in `document_schemas` so it is there."""
    return {"$ref": _REF_TEMPLATE.format(model=model.__name__)}


def body_doc(model: type[BaseModel], **examples: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route whose endpoint reads a `model` body with `read_body`.

    The schema is a reference (`schema_ref`).
    """
    media = {"schema": schema_ref(model), "examples": examples}
    return {"requestBody": {"content": {"application/json": media}, "required": True}}


class BodyInvalid(RequestValidationError):
    """Raised when a body fails validation: its first errors, and how many there were in all."""

    def __init__(self, errors: list[dict[str, Any]], *, total: int) -> None:
        """Carry `errors` (the first ones, at most `MAX_ERRORS_LISTED`) and the `total`.

        From `MAX_ERRORS_LISTED` errors on, `total` is a lower bound (`at_least`): an object
        whose fields made that many was not checked against its rules over several fields
        (`domain.errors.validate_with_object_rule`), so their errors are not counted.
        """
        super().__init__(errors)
        self.total = total
        self.at_least = total >= MAX_ERRORS_LISTED


async def read_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON body validated as `model`; `BodyInvalid` if it is not.

    The bytes are not cached on the request: once validated, the model is the only copy.
    """
    raw = b"".join([chunk async for chunk in request.stream()])
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        listed = exc.errors(include_url=False)[:MAX_ERRORS_LISTED]
        errors = [{**error, "loc": ("body", *error["loc"])} for error in listed]
        # `from None`: the pydantic error quotes the input, so a traceback of this one (were it
        # ever logged) leaves it out. Its `__context__` still holds it while this error lives.
        raise BodyInvalid(errors, total=exc.error_count()) from None


def document_schemas(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Make `app`'s OpenAPI document hold the schemas of `models` (and theirs).

    FastAPI adds component schemas only for the models of its own parameters and responses;
    the models that the document names by `schema_ref` (bodies read with `read_body`, the
    problem answers) are added here, as FastAPI would have added them.
    """
    models = list(models)

    def add_schemas(document: dict[str, Any]) -> None:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if all(model.__name__ in schemas for model in models):
            return
        for model in models:
            # FastAPI drops every None from its document (`"default": null` included).
            schema = jsonable_encoder(
                model.model_json_schema(ref_template=_REF_TEMPLATE), exclude_none=True
            )
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas.setdefault(model.__name__, schema)
        document["components"]["schemas"] = dict(sorted(schemas.items()))

    amend_openapi(app, add_schemas)
