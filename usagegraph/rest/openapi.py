"""The OpenAPI 3.1 document of the five REST APIs, served at /openapi.json.

Written from CONTRACT.md and the seed documents; `openapi.json` in the repo is this document
exported, a test fails when they drift, and a schemathesis run checks the server against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from usagegraph import __version__
from usagegraph.http.json import JSON
from usagegraph.resolvers.billing import BillingPeriod
from usagegraph.resolvers.buckets import BucketSnapshot
from usagegraph.resolvers.usage_history import UsageHistory
from usagegraph.resolvers.user_stats import UserStatsRow, UserStatsSummary
from usagegraph.resolvers.wallet_account import AccountSummary, CreditBalance, UsageStats
from usagegraph.resolvers.wallet_ledger import LedgerPage
from usagegraph.shapes import json_schema

INSTITUTION_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
DATE_TIME = {"type": "string", "format": "date-time"}
DATE = {"type": "string", "format": "date"}
REQUEST_ID = {"type": "string", "pattern": "^req_[0-9a-f]+$"}


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    """An object whose listed properties are all required."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
    }
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False):
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _challenged(response: dict[str, Any]) -> dict[str, Any]:
    """A 401 with its WWW-Authenticate challenge (auth/challenge.py)."""
    return {
        **response,
        "headers": {
            "WWW-Authenticate": {
                "description": 'The scheme the route takes (`Bearer realm="usagegraph"`, or '
                '`ApiKey realm="usagegraph"` on /v1), with `error="invalid_token"` when a '
                "credential was refused.",
                "schema": {"type": "string"},
            }
        },
    }


def _unavailable(schema_ref: str) -> dict[str, Any]:
    """Answers every route may give: a body over the limit, rate limited (with Retry-After),
    or the database down."""
    return {
        "413": _json(
            schema_ref, "The request body is larger than USAGEGRAPH_MAX_BODY_BYTES (8 MiB)."
        ),
        "429": {
            **_json(schema_ref, "Too many requests for this credential."),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            },
        },
        "503": _json(schema_ref, "The database is unreachable or the request timed out."),
    }


LEGACY_ERRORS = {
    "400": _json("LegacyError", "Invalid parameters."),
    "401": _challenged(_json("LegacyError", "Missing or invalid token.")),
    "403": _json("LegacyError", "Not allowed."),
    **_unavailable("LegacyError"),
}
CODED_ERRORS = {
    "400": _json("CodedError", "Invalid request (the message names the parameter)."),
    "401": _challenged(_json("CodedError", "Invalid or missing credentials.")),
    **_unavailable("CodedError"),
}


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "accessToken": {"type": "apiKey", "in": "header", "name": "x-access-token"},
        "bearerJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "bearerApiKey": {"type": "http", "scheme": "bearer"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    },
    "schemas": {
        "LegacyError": _object({"success": {"const": False}, "message": {"type": "string"}}),
        "CodedError": _object(
            {
                "error": _object({"code": {"type": "string"}, "message": {"type": "string"}}),
                "meta": _object({"request_id": REQUEST_ID}),
            }
        ),
        "ClientsError": _object({"error": {"type": "string"}, "request_id": REQUEST_ID}),
        "UsageHistory": _object(
            {"success": {"const": True}, **json_schema(UsageHistory)["properties"]}
        ),
        "UserStatsRequest": {
            "type": "object",
            "properties": {
                "granularity": {"type": "string", "enum": ["day", "week", "month"]},
                "range": {"type": "integer", "maximum": -1},
                "daterange": _object({"start": DATE_TIME, "end": DATE_TIME}),
                "account": {"type": "string", "description": "Space-separated user ids."},
                "institution": {
                    "type": "string",
                    "description": "Space-separated institution ids.",
                },
                "role": {"type": "string", "enum": ["user", "admin", "super"]},
                "usersearch": {"type": "string"},
            },
        },
        "UserStats": _object(
            {
                "success": {"const": True},
                "granularity": {"type": "string", "enum": ["day", "week", "month"]},
                "truncated": {"type": "boolean"},
                "windowSource": {"type": "string", "enum": ["daterange", "range", "default"]},
                "defaultDaysApplied": _nullable(INTEGER),
                "windowStart": DATE_TIME,
                "windowEnd": DATE_TIME,
                "data": {"type": "array", "items": json_schema(UserStatsRow), "maxItems": 5000},
                "summary": json_schema(UserStatsSummary),
            }
        ),
        "BillingUsageHistory": _object(
            {
                "data": {"type": "array", "items": json_schema(BillingPeriod)},
                "meta": _object(
                    {
                        "request_id": REQUEST_ID,
                        "total": INTEGER,
                        "limit": INTEGER,
                        "offset": INTEGER,
                        "has_more": {"type": "boolean"},
                    }
                ),
            }
        ),
        "UsageStats": json_schema(UsageStats),
        "AccountUsage": _object({"data": {"type": "array", "items": json_schema(UsageStats)}}),
        "CreditBalance": json_schema(CreditBalance),
        "CreditLedger": json_schema(LedgerPage),
        "AccountSummary": json_schema(AccountSummary),
        "CloudEvent": {
            "type": "object",
            "description": "A usage event as a CloudEvent 1.0 (structured mode). Any other "
            "attribute (extensions included) refuses the event.",
            "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
            "additionalProperties": False,
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "description": "With `source`, the idempotency key (kept 35 days).",
                },
                "source": {"type": "string", "minLength": 1, "maxLength": 1024},
                "type": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "description": "For example `usage`; not stored.",
                },
                "subject": {
                    "type": "string",
                    "pattern": "^[1-9][0-9]{0,17}$",
                    "description": "The user id.",
                },
                "time": {
                    **DATE_TIME,
                    "description": "occurredAt, with an offset; inside the acceptance window.",
                },
                "datacontenttype": {"const": "application/json"},
                "dataschema": {"type": "string"},
                "data": {
                    "type": "object",
                    "required": ["instance", "credits"],
                    "additionalProperties": False,
                    "properties": {
                        "instance": {
                            "type": "string",
                            "description": "`personal` or an institution id.",
                        },
                        "credits": {
                            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
                            "description": "Read exactly as a decimal (at most 6 places).",
                        },
                        "messages": {"type": "integer", "minimum": 0, "default": 1},
                        "endpoint": _nullable({"type": "string", "maxLength": 200}),
                        "status": {
                            "type": "string",
                            "enum": ["success", "failed"],
                            "default": "success",
                        },
                    },
                },
            },
        },
        "EventsAnswer": _object(
            {
                "inserted": INTEGER,
                "duplicates": INTEGER,
                "refused": INTEGER,
                "refusals": {
                    "type": "array",
                    "items": _object(
                        {
                            "index": INTEGER,
                            "id": _nullable({"type": "string"}),
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        }
                    ),
                },
                "meta": _object({"request_id": REQUEST_ID}),
            }
        ),
        "ClientHistory": _object(
            {"snapshots": {"type": "array", "items": json_schema(BucketSnapshot)}, "count": INTEGER}
        ),
    },
}

_ISO = "ISO 8601 date-time; UTC when no offset is given."
_ACCOUNT_SECURITY = [{"bearerJwt": []}]

PATHS: dict[str, Any] = {
    "/api/user/usage-history": {
        "get": {
            "summary": "Per-bucket usage of the caller within an instance.",
            "security": [{"accessToken": []}],
            "parameters": [
                _query(
                    "instanceId",
                    {"type": "string"},
                    "`personal` or the id of an institution the caller is a member of.",
                    required=True,
                ),
                _query("window", {"type": "string"}, "7, 14, 30, 90 or 180 days; else 30."),
                _query(
                    "interval",
                    {"type": "string"},
                    "daily, weekly or monthly; else daily up to 30 days, weekly beyond.",
                ),
                _query("scope", {"type": "string"}, "own (default) or all (admins only)."),
            ],
            "responses": {"200": _json("UsageHistory", "Bucketed usage."), **LEGACY_ERRORS},
        }
    },
    "/api/admin/histories/charts/user-stats": {
        "post": {
            "summary": "Per-user, per-institution, per-period usage extract.",
            "security": [{"accessToken": []}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/UserStatsRequest"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Rows and summary; CSV rows with `Accept: text/csv`.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/UserStats"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **LEGACY_ERRORS,
            },
        }
    },
    "/v1/billing/usage-history": {
        "get": {
            "summary": "Monthly message counts and overage of the key's institution.",
            "security": [{"bearerApiKey": []}, {"apiKeyHeader": []}],
            "parameters": [
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 24}, "Months."),
                _query("offset", {"type": "integer", "minimum": 0}, "Months to skip."),
            ],
            "responses": {
                "200": _json("BillingUsageHistory", "Months, newest first."),
                **CODED_ERRORS,
            },
        }
    },
    "/v1/events": {
        "post": {
            "summary": "Record usage events sent as CloudEvents: one, a batch, or NDJSON.",
            "description": "An institution's API key (events of its members, in it) or a super "
            "user's JWT. Each event is judged on its own (recordUsageBatch's rules); a 200 "
            "means every accepted event is committed, and the answer counts inserted, "
            "duplicate and refused events with each refusal's index, id and code. At most "
            "USAGEGRAPH_MAX_EVENTS_PER_REQUEST events (10,000) and USAGEGRAPH_MAX_BODY_BYTES.",
            "security": [{"bearerApiKey": []}, {"apiKeyHeader": []}, {"bearerJwt": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/cloudevents+json": {
                        "schema": {"$ref": "#/components/schemas/CloudEvent"}
                    },
                    "application/cloudevents-batch+json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/CloudEvent"},
                        }
                    },
                    "application/x-ndjson": {
                        "schema": {
                            "type": "string",
                            "description": "One CloudEvent per line.",
                        }
                    },
                },
            },
            "responses": {
                "200": _json("EventsAnswer", "Counts and refusals; accepted events committed."),
                **CODED_ERRORS,
                "403": _json("CodedError", "A user's JWT that is not a super user's."),
                "413": _json(
                    "CodedError",
                    "More bytes than USAGEGRAPH_MAX_BODY_BYTES or more events than "
                    "USAGEGRAPH_MAX_EVENTS_PER_REQUEST.",
                ),
                "415": _json("CodedError", "A Content-Type other than the three above."),
            },
        }
    },
    "/auth/account/usage": {
        "get": {
            "summary": "The caller's usage statistics per period.",
            "security": _ACCOUNT_SECURITY,
            "parameters": [
                _query("period", {"type": "string", "enum": ["daily", "monthly", "yearly"]}, ""),
                _query("from", {"type": "string"}, _ISO + " Default: start of this month."),
                _query("to", {"type": "string"}, _ISO + " Default: now."),
            ],
            "responses": {"200": _json("AccountUsage", "Usage per period."), **CODED_ERRORS},
        }
    },
    "/auth/account/credits": {
        "get": {
            "summary": "The caller's credit balance.",
            "security": _ACCOUNT_SECURITY,
            "responses": {"200": _json("CreditBalance", "The balance."), **CODED_ERRORS},
        }
    },
    "/auth/account/ledger": {
        "get": {
            "summary": "The caller's credit ledger, newest first.",
            "security": _ACCOUNT_SECURITY,
            "parameters": [
                _query("type", {"type": "string", "enum": ["credit", "debit", "adjustment"]}, ""),
                _query("from", {"type": "string"}, _ISO),
                _query("to", {"type": "string"}, _ISO),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Default 50."),
                _query("offset", {"type": "integer", "minimum": 0}, "Default 0."),
            ],
            "responses": {"200": _json("CreditLedger", "A page of entries."), **CODED_ERRORS},
        }
    },
    "/auth/account/summary": {
        "get": {
            "summary": "The caller's account overview.",
            "security": _ACCOUNT_SECURITY,
            "responses": {"200": _json("AccountSummary", "The summary."), **CODED_ERRORS},
        }
    },
    "/api/v1/clients/{bucket_id}/history": {
        "get": {
            "summary": "A client bucket's snapshots, newest first.",
            "security": [{"bearerJwt": []}, {"bearerApiKey": []}, {"apiKeyHeader": []}],
            "parameters": [
                {
                    "name": "bucket_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "Must match ^[A-Za-z0-9_-]{1,64}$.",
                },
                _query("start_date", DATE, "Inclusive, YYYY-MM-DD."),
                _query("end_date", DATE, "Inclusive, YYYY-MM-DD."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Default 100."),
            ],
            "responses": {
                "200": _json("ClientHistory", "Snapshots."),
                "400": _json("ClientsError", "Invalid bucket_id or parameter."),
                "401": _challenged(_json("ClientsError", "No valid credential.")),
                "404": _json("ClientsError", "Unknown bucket, or no access to it."),
                **_unavailable("ClientsError"),
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "usagegraph REST APIs",
            "version": __version__,
            "description": "The five documented REST APIs served by usagegraph, and the "
            "CloudEvents usage-ingestion API (POST /v1/events). "
            "The GraphQL API at /graphql covers the same data.",
        },
        "paths": PATHS,
        "components": COMPONENTS,
    }


async def serve_openapi(_request: Request) -> JSON:
    return JSON(openapi_document())


routes = [Route("/openapi.json", serve_openapi, methods=["GET"])]
