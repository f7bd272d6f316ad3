"""The JSON API's OpenAPI 3.1 document, generated from the code, and its reference page.

Each view of the API says what it takes and answers with :func:`documented`. The document is
built from those notes, the app's URL rules (paths, methods, path parameters) and the pydantic
models: request shapes in :mod:`scheduler.api.schemas`, answers in
:mod:`scheduler.api.responses`. So it names only routes that exist, and the suite checks that
every route under ``/api/v1`` is in it and that real answers match it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from flask import Blueprint, Flask, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema

from scheduler.api.responses import ErrorOut, OpenApiDocumentOut, WebhookPayloadOut
from scheduler.clinic.models import Clinic
from scheduler.extensions import db
from scheduler.ratelimit import limited_methods
from scheduler.webhooks.dispatch import MAX_ATTEMPTS

blueprint = Blueprint("api_docs", __name__)

API_PREFIX = "/api/v1"
COMPONENTS = "#/components/schemas/"
View = TypeVar("View", bound=Callable[..., Any])
# An answer's shape: a model, or a union of models (``BookingOut | CourseOut``) for "one of".
Shape = type[BaseModel] | UnionType
# A status's answer: its shape, or its shape and what it means for this operation.
Answer = Shape | tuple[Shape, str]

TAGS = [
    {"name": "Clinic", "description": "The treatments and practitioners patients can book."},
    {"name": "Slots", "description": "Free times to book."},
    {
        "name": "Bookings",
        "description": "Book a session or a course, then read, cancel or move it by its token.",
    },
    {
        "name": "Waitlist",
        "description": "Wait for a time on some dates; freed times are offered by mail.",
    },
    {
        "name": "Staff",
        "description": "For staff, with a personal API token: bookings, patients, the schedule "
        "and busy time.",
    },
    {"name": "Reference", "description": "This document."},
    {
        "name": "Webhooks",
        "description": "What the clinic POSTs to the addresses an admin registers under "
        "Staff → Webhooks, signed with that webhook's secret.",
    },
]

# The events a webhook can subscribe to, in the order the reference page lists them.
WEBHOOK_EVENTS = {
    "booking.created": (
        "A booking was made",
        "By a patient (page or API), by staff, from the waitlist, or imported from a "
        "calendar. A course sends one event per session.",
    ),
    "booking.rescheduled": (
        "A booking moved to another time",
        "`data` holds the new time and practitioner.",
    ),
    "booking.cancelled": (
        "A booking was cancelled",
        "By the patient, by staff, or by declining a request; `late_cancellation` says "
        "whether it was inside the clinic's late window.",
    ),
    "booking.status_changed": (
        "A booking's status changed",
        "Marked attended or no-show, or a request approved (`awaiting_approval` turns false).",
    ),
}

WEBHOOK_HEADERS = {
    "Webhook-Id": (
        {"type": "string", "format": "uuid"},
        "The event's id, the same on every try and replay: handle each id once.",
    ),
    "Webhook-Event": ({"enum": list(WEBHOOK_EVENTS)}, "The event, as in the body."),
    "Webhook-Timestamp": (
        {"type": "string", "pattern": "^[0-9]+$"},
        "Unix seconds when this try was signed. Reject a delivery whose timestamp is more "
        "than a few minutes from your clock: it may be a replay.",
    ),
    "Webhook-Signature": (
        {"type": "string", "pattern": "^v1=[0-9a-f]{64}( v1=[0-9a-f]{64})*$"},
        "`v1=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY` (the timestamp header, a dot, "
        "the raw body) keyed with the webhook's secret. For a day after the secret is "
        "rotated there is one `v1=` per secret, separated by a space: accept the delivery "
        "if any matches, comparing in constant time.",
    ),
}
WEBHOOK_ANSWER = (
    "Any 2xx answer within the timeout (10 seconds unless the clinic set `WEBHOOK_TIMEOUT`) "
    "marks the delivery done. Anything else, or no answer, is tried again after 1, 2, 4 … "
    f"minutes (at most an hour apart), up to {MAX_ATTEMPTS} tries; an admin can replay any "
    "delivery from the staff area."
)

OVERVIEW = """\
Book acupuncture sessions at the clinic: list its treatments and practitioners, find free
times, book a session or a course of sessions, then read, cancel or move a booking with the
private token it came with; or join the waitlist for a time that frees up.

* Bodies are JSON, sent with `Content-Type: application/json`; anything else is `415`.
* Times are ISO 8601 with a UTC offset (`2026-12-01T10:00:00+00:00`); dates (`2026-12-01`)
  are the clinic's own, in its time zone. Answers give times in the clinic's zone.
* Errors are `{"error": "…", "fields": {"field": "…"}}`: `error` is a message a person can act
  on, `fields` names each field to fix (as a dotted path, `patient.email`). A time that is not
  free (`409`) also lists the nearest free times (`alternatives`, or for a course,
  `conflicts`).
* Unknown fields in a body are an error, so a typo is never ignored.
* Public calls need no login; a booking's token is its key, so keep it secret.
* Calls that book, change a booking or join the waitlist are rate limited per client address
  and per email address or token (staff calls per API token): `429`, with `Retry-After`.
"""

# What each status means when the operation does not say more.
MEANINGS = {
    200: "OK.",
    201: "Created.",
    400: "The body is not valid JSON.",
    401: "No valid bearer token was sent: it is missing, unknown, expired or revoked.",
    403: "The token's account may not do this.",
    404: "Nothing has that token.",
    409: "It conflicts with the booking's state or the schedule.",
    413: "The body is larger than the server accepts.",
    415: "The body was not sent as `application/json`.",
    422: "Some fields need fixing: `fields` names each.",
    429: "Too many requests; nothing was changed. Wait as many seconds as `Retry-After` says.",
    503: (
        "The clinic is not set up yet, or the database is busy; nothing was changed. "
        "Try again later."
    ),
}
METHOD_ORDER = ("get", "post", "put", "patch", "delete")
RETRY_AFTER = {
    "description": "Seconds to wait before the limit lets a call through again.",
    "schema": {"type": "integer", "minimum": 1},
}


@dataclass(frozen=True)
class Operation:
    """What a view takes and answers, as :func:`documented` recorded it."""

    tag: str
    responses: Mapping[int, tuple[tuple[type[BaseModel], ...], str | None]]
    summary: str | None = None
    description: str | None = None
    operation_id: str | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    examples: Mapping[str, Any] = field(default_factory=dict)
    bearer: bool = False
    database: bool = True

    def all_responses(self) -> dict[int, tuple[tuple[type[BaseModel], ...], str | None]]:
        """The answers, with the errors that follow from what the operation takes."""
        implied: list[int] = []
        if self.body is not None:
            implied += [400, 413, 415, 422]
        if self.query is not None:
            implied.append(422)
        if self.bearer:
            implied.append(401)
        if self.database:
            implied.append(503)
        answers: dict[int, tuple[tuple[type[BaseModel], ...], str | None]]
        answers = dict.fromkeys(implied, ((ErrorOut,), None))
        answers.update(self.responses)
        return dict(sorted(answers.items()))


def documented(
    *,
    tag: str,
    responses: Mapping[int, Answer],
    summary: str | None = None,
    description: str | None = None,
    operation_id: str | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    params: Mapping[str, str] | None = None,
    examples: Mapping[str, Any] | None = None,
    bearer: bool = False,
    database: bool = True,
) -> Callable[[View], View]:
    """Record what a view takes and answers, for the OpenAPI document; the view is unchanged.

    ``responses`` maps each status to its shape (a model, or ``A | B`` for one of several),
    optionally with what it means here: ``{409: (SlotTakenOut, "The time is not free.")}``.
    Errors that follow from the rest are added as :class:`ErrorOut`: a ``body`` (JSON, checked
    by ``parse_body``) adds 400, 413, 415 and 422, a ``query`` model 422, ``bearer`` (the
    call needs ``Authorization: Bearer TOKEN``) 401, and touching the database (``database``)
    503; a rate limit on the view (:func:`scheduler.ratelimit.rate_limited`) adds 429 with
    ``Retry-After``. ``summary`` and ``description`` default to the view's docstring;
    ``params`` describes path and query parameters by name; ``examples`` are named example
    bodies.
    """
    answers = {status: _answer(answer) for status, answer in responses.items()}

    def record(view: View) -> View:
        view.openapi = Operation(  # type: ignore[attr-defined]
            tag=tag,
            responses=answers,
            summary=summary,
            description=description,
            operation_id=operation_id,
            body=body,
            body_required=body_required,
            query=query,
            params=dict(params or {}),
            examples=dict(examples or {}),
            bearer=bearer,
            database=database,
        )
        return view

    return record


def _answer(answer: Answer) -> tuple[tuple[type[BaseModel], ...], str | None]:
    shape, meaning = answer if isinstance(answer, tuple) else (answer, None)
    if get_origin(shape) in (Union, UnionType):
        return get_args(shape), meaning
    assert isinstance(shape, type)
    return (shape,), meaning


@dataclass(frozen=True)
class Route:
    """One documented method on one URL rule."""

    path: str  # in OpenAPI's form: /api/v1/bookings/{token}
    method: str
    endpoint: str
    view: Callable[..., Any]
    operation: Operation
    path_params: list[tuple[str, str]]  # (name, werkzeug converter)

    def answers(self) -> dict[int, tuple[tuple[type[BaseModel], ...], str | None]]:
        """The operation's answers, with 429 when a rate limit applies to this method."""
        answers = self.operation.all_responses()
        if self.method.upper() in limited_methods(self.view):
            answers.setdefault(429, ((ErrorOut,), None))
        return dict(sorted(answers.items()))


_RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def documented_routes(app: Flask) -> Iterator[Route]:
    """Every method of every URL rule whose view is :func:`documented`, in path order."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        view = app.view_functions.get(rule.endpoint)
        operation = getattr(view, "openapi", None)
        if view is None or not isinstance(operation, Operation):
            continue
        path = _RULE_ARGUMENT.sub(lambda match: "{" + match["name"] + "}", rule.rule)
        params = [
            (match["name"], match["converter"] or "default")
            for match in _RULE_ARGUMENT.finditer(rule.rule)
        ]
        methods = sorted(
            (m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS")),
            key=METHOD_ORDER.index,
        )
        for method in methods:
            yield Route(path, method, rule.endpoint, view, operation, params)


class _Schemas(GenerateJsonSchema):
    """Pydantic's JSON Schema without a generated title on every property."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def build_document(app: Flask) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of every documented route of ``app``."""
    routes = list(documented_routes(app))
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for route in routes:
        operation = route.operation
        if operation.body is not None:
            wanted.append((operation.body, "validation"))
        if operation.query is not None:
            wanted.append((operation.query, "validation"))
        for shapes, _meaning in route.answers().values():
            wanted.extend((shape, "serialization") for shape in shapes)
    # The events the clinic sends, when this app lets admins register webhooks.
    events = list(WEBHOOK_EVENTS) if "webhooks" in app.blueprints else []
    if events:
        wanted.append((WebhookPayloadOut, "serialization"))
    refs, definitions = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template=COMPONENTS + "{model}", schema_generator=_Schemas
    )
    schemas: dict[str, Any] = _markdown_literals(dict(sorted(definitions.get("$defs", {}).items())))

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation(route, ref, schemas)
    used = list(dict.fromkeys(route.operation.tag for route in routes))
    if events:
        used.append("Webhooks")
    known = {tag["name"] for tag in TAGS}
    tags = [tag for tag in TAGS if tag["name"] in used] + [
        {"name": name} for name in used if name not in known
    ]
    limit = app.config.get("MAX_CONTENT_LENGTH")
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Acupuncture scheduler API",
            "version": _version(),
            "summary": "Book, move and cancel acupuncture sessions; join the waitlist.",
            "description": OVERVIEW
            + (f"* Bodies are at most {limit:,} bytes (`413` beyond).\n" if limit else ""),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": app.config["BASE_URL"], "description": "This clinic"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A staff member's personal API token: "
                    "`Authorization: Bearer TOKEN`. Staff create one in the staff area under "
                    "API tokens (`/staff/tokens/`).",
                }
            },
        },
    }
    if events:
        payload = ref(WebhookPayloadOut, "serialization")
        document["webhooks"] = {event: {"post": _webhook(event, payload)} for event in events}
    return document


def _webhook(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    summary, description = WEBHOOK_EVENTS[event]
    return {
        "tags": ["Webhooks"],
        "summary": summary,
        "description": description,
        "operationId": "webhook_" + event.replace(".", "_"),
        "parameters": [
            {"name": name, "in": "header", "required": True, "schema": schema, "description": text}
            for name, (schema, text) in WEBHOOK_HEADERS.items()
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": payload}}},
        "responses": {"2XX": {"description": WEBHOOK_ANSWER}},
    }


def _version() -> str:
    try:
        return version("acuscheduler")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


def _operation(
    route: Route,
    ref: Callable[[type[BaseModel], JsonSchemaMode], dict[str, Any]],
    schemas: Mapping[str, Any],
) -> dict[str, Any]:
    operation = route.operation
    summary, description = _from_docstring(route.view)
    result: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": operation.summary or summary,
        "operationId": operation.operation_id or route.endpoint.rpartition(".")[2],
    }
    if operation.description or description:
        result["description"] = operation.description or description
    parameters = [
        _path_parameter(name, converter, operation) for name, converter in route.path_params
    ]
    if operation.query is not None:
        parameters += _query_parameters(ref(operation.query, "validation"), operation, schemas)
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        media: dict[str, Any] = {"schema": ref(operation.body, "validation")}
        if operation.examples:
            media["examples"] = {
                _slug(name): {"summary": name, "value": value}
                for name, value in operation.examples.items()
            }
        result["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": media},
        }
    result["responses"] = {
        str(status): _response(status, shapes, meaning, ref)
        for status, (shapes, meaning) in route.answers().items()
    }
    if operation.bearer:
        result["security"] = [{"bearerAuth": []}]
    return result


def _response(
    status: int,
    shapes: tuple[type[BaseModel], ...],
    meaning: str | None,
    ref: Callable[[type[BaseModel], JsonSchemaMode], dict[str, Any]],
) -> dict[str, Any]:
    described = [ref(shape, "serialization") for shape in shapes]
    schema = described[0] if len(described) == 1 else {"anyOf": described}
    response: dict[str, Any] = {
        "description": meaning or MEANINGS.get(status, "See the body."),
        "content": {"application/json": {"schema": schema}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


# Werkzeug's converters as JSON Schema: the default takes any text without a slash.
_CONVERTERS: dict[str, dict[str, Any]] = {
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "int": {"type": "integer", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string", "minLength": 1},
}


def _path_parameter(name: str, converter: str, operation: Operation) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "schema": dict(_CONVERTERS.get(converter, {"type": "string"})),
    }
    if name in operation.params:
        parameter["description"] = operation.params[name]
    return parameter


def _query_parameters(
    model_ref: Mapping[str, Any], operation: Operation, schemas: Mapping[str, Any]
) -> list[dict[str, Any]]:
    model = schemas[model_ref["$ref"].removeprefix(COMPONENTS)]
    required = set(model.get("required", ()))
    parameters = []
    for name, schema in model.get("properties", {}).items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            # A query string cannot say null: leaving a parameter out is how to give none.
            "schema": _not_null(schema),
        }
        meaning = operation.params.get(name) or schema.get("description")
        if meaning:
            parameter["description"] = meaning
        parameters.append(parameter)
    return parameters


def _not_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    result = {key: value for key, value in schema.items() if key != "default" or value is not None}
    options = result.pop("anyOf", None)
    if options is None:
        return result
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) == 1:
        return {**kept[0], **result}
    return {**result, "anyOf": kept}


def _from_docstring(view: Callable[..., Any]) -> tuple[str, str]:
    """The docstring's first paragraph as a summary and the rest as a description, with
    reStructuredText's ``literals`` as Markdown's `code`."""
    text = re.sub(r"``([^`]+)``", r"`\1`", view.__doc__ or "").strip()
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _markdown_literals(value: Any) -> Any:
    """Turn the docstrings' ``literals`` into Markdown's `code` in every description."""
    if isinstance(value, dict):
        return {
            key: re.sub(r"``([^`]+)``", r"`\1`", item)
            if key == "description" and isinstance(item, str)
            else _markdown_literals(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_markdown_literals(item) for item in value]
    return value


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def document() -> dict[str, Any]:
    """The current app's document, built once (the routes do not change after start-up)."""
    built = current_app.extensions.get("openapi_document")
    if built is None:
        built = current_app.extensions["openapi_document"] = build_document(current_app)
    return built


@blueprint.get(API_PREFIX + "/openapi.json")
@documented(
    tag="Reference",
    operation_id="get_openapi_document",
    responses={200: (OpenApiDocumentOut, "This document.")},
    database=False,
)
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(document())


@blueprint.get("/api/docs")
def reference() -> ResponseReturnValue:
    """The API reference, as a page rendered from the document."""
    spec = document()
    return render_template(
        "api/docs.html",
        clinic=Clinic.get(db.session()),
        spec=spec,
        operations=_page_operations(spec),
        schemas=spec["components"]["schemas"],
        type_of=type_of,
        rules_of=rules_of,
        markdown=markdown,
        inline=inline,
        pretty=pretty,
        schema_name=schema_name,
    )


# The reference page: the document turned into what the template shows.


def _page_operations(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The operations grouped under their tags, in the tags' order."""
    groups: dict[str, list[dict[str, Any]]] = {tag["name"]: [] for tag in spec["tags"]}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            groups.setdefault(operation["tags"][0], []).append(
                {"path": path, "method": method, **operation}
            )
    for event, methods in spec.get("webhooks", {}).items():
        for method, operation in methods.items():
            groups.setdefault(operation["tags"][0], []).append(
                {"path": event, "method": method, "event": event, **operation}
            )
    return [
        {"name": tag["name"], "description": tag.get("description", ""), "operations": items}
        for tag in spec["tags"]
        if (items := groups.get(tag["name"]))
    ]


def schema_name(schema: Mapping[str, Any]) -> str | None:
    """The component a ``$ref`` names, or ``None``."""
    target = schema.get("$ref")
    return target.removeprefix(COMPONENTS) if isinstance(target, str) else None


_JOINERS = {"anyOf": Markup(" or "), "oneOf": Markup(" or "), "allOf": Markup(" and ")}


def type_of(schema: Mapping[str, Any]) -> Markup:
    """Say a schema's type in a few words, linking to the components it names."""
    name = schema_name(schema)
    if name is not None:
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    for combinator, joiner in _JOINERS.items():
        if combinator in schema:
            return joiner.join(type_of(option) for option in schema[combinator])
    if "enum" in schema:
        return Markup(" | ").join(
            Markup("<code>{}</code>").format(_json(value)) for value in schema["enum"]
        )
    if "const" in schema:
        return Markup("<code>{}</code>").format(_json(schema["const"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return Markup("array of ") + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return Markup("object of ") + type_of(schema["additionalProperties"])
    words = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        words += f" ({schema['format']})"
    return Markup("{}").format(words)


def rules_of(schema: Mapping[str, Any]) -> list[str]:
    """The constraints a schema puts on a value, in words."""
    rules = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + 1 if schema.get("type") == "integer" else low
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - 1 if schema.get("type") == "integer" else high
    if low is not None and high is not None:
        rules.append(f"{low} to {high}")
    elif low is not None:
        rules.append(f"at least {low}")
    elif high is not None:
        rules.append(f"at most {high}")
    rules += _length_rule(schema.get("minLength"), schema.get("maxLength"), "characters")
    rules += _length_rule(schema.get("minItems"), schema.get("maxItems"), "items")
    if schema.get("pattern") and "\\x00" in schema["pattern"]:
        rules.append("no control characters")
    elif schema.get("pattern"):
        rules.append(f"matches {schema['pattern']}")
    if "default" in schema:
        rules.append(f"default {_json(schema['default'])}")
    return rules


def _length_rule(low: int | None, high: int | None, unit: str) -> list[str]:
    if low and high:
        return [f"{low} to {high} {unit}"]
    if high:
        return [f"at most {high} {unit}"]
    if low:
        return [f"at least {low} {unit}"]
    return []


def markdown(text: str) -> Markup:
    """Show the document's short Markdown: paragraphs, bullet lists and `code`."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if lines and all(line.startswith(("* ", "  ")) for line in lines):
            items = re.split(r"\n(?=\* )", block)
            blocks.append(
                Markup("<ul>{}</ul>").format(
                    Markup("").join(
                        Markup("<li>{}</li>").format(inline(item[2:])) for item in items
                    )
                )
            )
        elif block:
            blocks.append(Markup("<p>{}</p>").format(inline(block)))
    return Markup("\n").join(blocks)


def inline(text: str) -> Markup:
    """Show one line of the document's Markdown: `code` and text."""
    parts = re.split(r"`([^`]+)`", " ".join(text.split()))
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
        for index, part in enumerate(parts)
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def pretty(value: Any) -> str:
    """A value as indented JSON, for the page's examples."""
    return json.dumps(value, indent=2, ensure_ascii=False)
