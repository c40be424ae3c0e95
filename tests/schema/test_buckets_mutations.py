"""The bucket writes through /graphql: a bucket's daily snapshot."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.schema.graph import error_codes, graphql
from tests.schema.mutations_data import add_acme_key, add_people, with_key


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    return await add_people(engine)


@pytest.fixture
async def acme_key(engine: AsyncEngine, people: dict[str, int]) -> str:
    return await add_acme_key(engine)


async def test_the_institutions_key_records_a_snapshot(
    client: httpx.AsyncClient, people: dict[str, int], acme_key: str
) -> None:
    record = """mutation($input: RecordSnapshotInput!) {
      recordSnapshot(input: $input) {
        bucketId snapshotDate records computedAt
        storage { objectCount totalBytes byPrefix { prefix count bytes } }
      }
    }"""
    variables = {
        "input": {
            "bucketId": "acme-corp",
            "snapshotDate": "2026-05-01",
            "records": {"person": 15000, "payment": 45000},
            "storage": {
                "objectCount": 8500,
                "totalBytes": 5368709120,
                "byPrefix": [{"prefix": "docs/", "count": 10, "bytes": 2048}],
            },
        }
    }
    body = await with_key(client, record, acme_key, variables)
    snapshot = body["data"]["recordSnapshot"]
    assert snapshot["records"]["total"] == 60000
    assert snapshot["storage"]["totalBytes"] == 5368709120
    assert snapshot["computedAt"] == "2026-05-20T15:30:00+00:00"
    body = await graphql(client, record, user_id=people["olga"], variables=variables)
    assert error_codes(body) == ["FORBIDDEN"]
