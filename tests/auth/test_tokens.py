"""JWT verification refuses everything but a signed, current HS256 token with a user id.

Unit tests sign tokens with PyJWT directly (not with `mint_token`), so they check our
verification against the standard's encoding rather than against our own minting. The last
tests run the rules through the real app, and `usagegraph token` as a process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, run_cli
from tests.conftest import FIXED_NOW, TEST_JWT_SECRET
from tests.databases import TestDatabase
from tests.fixtures.factories import add_user
from usagegraph.app import create_app
from usagegraph.auth.tokens import InvalidTokenError, mint_token, user_id_from_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import User
from usagegraph.settings import Settings, TokenRules

SECRET = "a-secret-long-enough-for-hs256-0123456789abcdef"
OLD_KEY = "rotation-key-2025-long-enough-for-hs256-000000"
NEW_KEY = "rotation-key-2026-long-enough-for-hs256-111111"
ROTATION = TokenRules(keys={"2025": OLD_KEY, "2026": NEW_KEY}, signing_kid="2026")
ISSUED = TokenRules(issuer="https://auth.example.edu", audience="usagegraph")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _now() -> datetime:
    return datetime.now(UTC)


def _sign(
    claims: dict[str, Any],
    key: str = SECRET,
    *,
    algorithm: str = "HS256",
    kid: object = None,
) -> str:
    """A token as any standard library would sign it; issued now (`iat`) and expiring an hour
    ahead unless given (a claim given as None is left out)."""
    claims = {"sub": "42", "iat": _now(), "exp": _now() + timedelta(hours=1), **claims}
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = None if kid is None else {"kid": kid}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


# --- signature, algorithm, required claims ---


def test_minted_token_identifies_its_user() -> None:
    assert user_id_from_token(mint_token(42, SECRET), SECRET) == 42


def test_a_standard_hs256_token_identifies_its_user() -> None:
    assert user_id_from_token(_sign({}), SECRET) == 42


def test_expired_token_is_refused() -> None:
    token = _sign({"exp": _now() - timedelta(hours=1)})
    with pytest.raises(InvalidTokenError, match="expired"):
        user_id_from_token(token, SECRET)


def test_unsigned_alg_none_token_is_refused() -> None:
    future = int((_now() + timedelta(hours=1)).timestamp())
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': '42', 'exp': future})}."
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_only_hs256_is_accepted_even_with_the_right_secret(algorithm: str) -> None:
    secret = SECRET * 2  # long enough for HS512 too
    with pytest.raises(InvalidTokenError, match="invalid token"):
        user_id_from_token(_sign({}, secret, algorithm=algorithm), secret)


def test_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(mint_token(42, "another-secret-that-is-long-enough-000000"), SECRET)


def test_token_without_exp_is_refused() -> None:
    token = jwt.encode({"sub": "42"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


def test_token_without_sub_is_refused() -> None:
    token = jwt.encode({"exp": _now() + timedelta(hours=1)}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("subject", ["abc", "-1", "", "4.2"])
def test_token_whose_subject_is_not_a_user_id_is_refused(subject: str) -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(_sign({"sub": subject}), SECRET)


def test_malformed_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token("not.a.jwt", SECRET)


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        mint_token(1, SECRET, ttl_seconds=0)


# --- times, with the leeway (default 30 s) ---


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        # exp 20 s ago: within the 30 s leeway; 40 s ago: beyond it.
        ({"exp": -20}, True),
        ({"exp": -40}, False),
        # nbf 20 s ahead: within the leeway; 40 s ahead: not yet valid.
        ({"nbf": 20}, True),
        ({"nbf": 40}, False),
        # iat 20 s ahead (a clock slightly fast): accepted; 40 s ahead: issued in the future.
        ({"iat": 20}, True),
        ({"iat": 40}, False),
        # nbf and iat in the past are the normal case.
        ({"nbf": -60, "iat": -60}, True),
    ],
)
def test_times_are_honoured_with_the_leeway(claims: dict[str, int], accepted: bool) -> None:
    now = _now()
    token = _sign({name: now + timedelta(seconds=offset) for name, offset in claims.items()})
    if accepted:
        assert user_id_from_token(token, SECRET) == 42
    else:
        with pytest.raises(InvalidTokenError, match=r"expired|not yet valid"):
            user_id_from_token(token, SECRET)


def test_the_leeway_is_configurable() -> None:
    """Expired 20 s ago: fine with the default 30 s, refused with no leeway at all."""
    token = _sign({"exp": _now() - timedelta(seconds=20)})
    assert user_id_from_token(token, SECRET, TokenRules(leeway_seconds=30)) == 42
    with pytest.raises(InvalidTokenError, match="expired"):
        user_id_from_token(token, SECRET, TokenRules(leeway_seconds=0))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_that_is_not_a_number_is_refused(claim: str) -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(_sign({claim: "yesterday"}), SECRET)


def test_minted_tokens_carry_iat_and_exp_from_now() -> None:
    issued = datetime(2026, 5, 20, 15, 30, tzinfo=UTC)
    token = mint_token(42, SECRET, ttl_seconds=600, now=issued)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    # 2026-05-20T15:30:00Z is 1_779_291_000 s after the epoch; exp is 600 s later.
    assert (claims["iat"], claims["exp"], claims["sub"]) == (1_779_291_000, 1_779_291_600, "42")


# --- lifetime (exp - iat), at most a day by default ---


@pytest.mark.parametrize(
    ("lifetime", "accepted"),
    [(86_400, True), (86_401, False), (10**30, False)],
)
def test_a_token_may_live_at_most_the_maximum_lifetime(lifetime: int, accepted: bool) -> None:
    issued = _now() - timedelta(seconds=1)
    token = _sign({"iat": issued, "exp": int(issued.timestamp()) + lifetime})
    if accepted:
        assert user_id_from_token(token, SECRET) == 42
    else:
        with pytest.raises(InvalidTokenError, match="lifetime"):
            user_id_from_token(token, SECRET)


def test_the_maximum_lifetime_is_configurable() -> None:
    token = _sign({"exp": _now() + timedelta(minutes=11)})  # issued now: 660 s
    assert user_id_from_token(token, SECRET, TokenRules(max_ttl_seconds=660)) == 42
    with pytest.raises(InvalidTokenError, match="lifetime"):
        user_id_from_token(token, SECRET, TokenRules(max_ttl_seconds=600))


def test_a_token_without_iat_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(_sign({"iat": None}), SECRET)


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": True},  # PyJWT reads it as 1 (1970): a lifetime of 56 years
        {"iat": "1779291000"},
        {"exp": "99999999999"},
    ],
    ids=["iat-boolean", "iat-string", "exp-string"],
)
def test_exp_and_iat_must_be_json_numbers(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(_sign(claims), SECRET, TokenRules(max_ttl_seconds=10**12))


def test_minting_a_token_beyond_the_maximum_lifetime_fails() -> None:
    assert user_id_from_token(mint_token(42, SECRET, ttl_seconds=86_400), SECRET) == 42
    with pytest.raises(ValueError, match="at most 86400 seconds"):
        mint_token(42, SECRET, ttl_seconds=86_401)
    with pytest.raises(ValueError, match="at most 600 seconds"):
        mint_token(42, SECRET, ttl_seconds=601, rules=TokenRules(max_ttl_seconds=600))


# --- issuer and audience ---


def test_issuer_and_audience_are_checked_when_configured() -> None:
    good = {"iss": "https://auth.example.edu", "aud": "usagegraph"}
    assert user_id_from_token(_sign(good), SECRET, ISSUED) == 42
    refused = [
        {"aud": "usagegraph"},  # no iss
        {"iss": "https://auth.example.edu"},  # no aud
        {**good, "iss": "https://evil.example.com"},
        {**good, "aud": "another-service"},
    ]
    for claims in refused:
        with pytest.raises(InvalidTokenError):
            user_id_from_token(_sign(claims), SECRET, ISSUED)


def test_an_audience_list_naming_us_is_accepted() -> None:
    claims = {"iss": "https://auth.example.edu", "aud": ["billing", "usagegraph"]}
    assert user_id_from_token(_sign(claims), SECRET, ISSUED) == 42


def test_issuer_and_audience_are_not_required_when_not_configured() -> None:
    """A token carrying them is still accepted: nothing is configured to check them against."""
    claims = {"iss": "https://auth.example.edu", "aud": "usagegraph"}
    assert user_id_from_token(_sign(claims), SECRET) == 42
    assert user_id_from_token(_sign({}), SECRET) == 42


def test_minted_tokens_carry_the_configured_issuer_and_audience() -> None:
    token = mint_token(42, SECRET, rules=ISSUED)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="usagegraph")
    assert (claims["iss"], claims["aud"]) == ("https://auth.example.edu", "usagegraph")
    assert user_id_from_token(token, SECRET, ISSUED) == 42
    assert "iss" not in jwt.decode(mint_token(42, SECRET), SECRET, algorithms=["HS256"])


# --- key rotation ---


@pytest.mark.parametrize(("kid", "key"), [("2025", OLD_KEY), ("2026", NEW_KEY)])
def test_a_token_is_verified_with_the_key_its_kid_names(kid: str, key: str) -> None:
    assert user_id_from_token(_sign({}, key, kid=kid), SECRET, ROTATION) == 42


def test_a_token_without_kid_is_verified_with_the_main_secret() -> None:
    assert user_id_from_token(_sign({}, SECRET), SECRET, ROTATION) == 42
    with pytest.raises(InvalidTokenError):  # a rotation key is only reachable through its kid
        user_id_from_token(_sign({}, NEW_KEY), SECRET, ROTATION)


def test_an_unknown_kid_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="unknown signing key"):
        user_id_from_token(_sign({}, SECRET, kid="2024"), SECRET, ROTATION)


@pytest.mark.parametrize("kid", [7, ["2026"], {"k": "2026"}, None])
def test_a_kid_that_is_not_a_string_is_refused(kid: object) -> None:
    """Built by hand: PyJWT will not encode such a header, but anyone can send one."""
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    claims = _b64({"sub": "42", "exp": int((_now() + timedelta(hours=1)).timestamp())})
    mac = hmac.new(NEW_KEY.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError):
        user_id_from_token(f"{header}.{claims}.{signature}", SECRET, ROTATION)


def test_a_token_signed_with_another_key_than_its_kid_names_is_refused() -> None:
    """kid 2025 but signed with 2026's key (or the main secret): only 2025's key is tried."""
    for key in (NEW_KEY, SECRET):
        with pytest.raises(InvalidTokenError, match="invalid token"):
            user_id_from_token(_sign({}, key, kid="2025"), SECRET, ROTATION)


def test_minted_tokens_are_signed_with_the_signing_kid() -> None:
    token = mint_token(42, SECRET, rules=ROTATION)
    assert jwt.get_unverified_header(token)["kid"] == "2026"
    assert jwt.decode(token, NEW_KEY, algorithms=["HS256"])["sub"] == "42"
    assert user_id_from_token(token, SECRET, ROTATION) == 42
    assert "kid" not in jwt.get_unverified_header(mint_token(42, SECRET))


def test_minting_with_a_signing_kid_that_has_no_key_fails() -> None:
    with pytest.raises(ValueError, match="not among the configured keys"):
        mint_token(42, SECRET, rules=TokenRules(signing_kid="2030"))


# --- through the app: rules from the settings, users from the database ---

CREDITS = "/auth/account/credits"
UNAUTHORIZED = {"code": "UNAUTHORIZED", "message": "Invalid or expired token"}


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with rotation keys, an issuer and an audience configured."""
    rules = dataclasses.replace(ROTATION, issuer=ISSUED.issuer, audience=ISSUED.audience)
    app = create_app(dataclasses.replace(settings, tokens=rules), clock=lambda: FIXED_NOW)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _credits_status(client: httpx.AsyncClient, token: str) -> tuple[int, dict]:
    response = await client.get(CREDITS, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


async def test_the_app_applies_the_configured_rules(
    engine: AsyncEngine, strict_client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="ada@acme.edu")
    good = {"sub": str(user_id), "iss": ISSUED.issuer, "aud": ISSUED.audience}
    status, _ = await _credits_status(strict_client, _sign(good, OLD_KEY, kid="2025"))
    assert status == 200
    status, _ = await _credits_status(strict_client, _sign(good, TEST_JWT_SECRET))
    assert status == 200
    refused = [
        _sign(good, OLD_KEY, kid="2024"),  # unknown kid
        _sign({**good, "aud": "another-service"}, OLD_KEY, kid="2025"),
        _sign({"sub": str(user_id)}, TEST_JWT_SECRET),  # no iss, no aud
        _sign({**good, "nbf": _now() + timedelta(minutes=5)}, TEST_JWT_SECRET),
    ]
    for token in refused:
        status, body = await _credits_status(strict_client, token)
        assert (status, body["error"]) == (401, UNAUTHORIZED)


async def test_a_token_of_a_user_who_no_longer_exists_is_refused(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="gone@acme.edu")
    token = mint_token(user_id, TEST_JWT_SECRET)
    assert (await _credits_status(client, token))[0] == 200
    async with session_factory(engine)() as session, session.begin():
        await session.execute(delete(User).where(User.id == user_id))
    status, body = await _credits_status(client, token)
    assert (status, body["error"]) == (401, UNAUTHORIZED)


async def test_the_token_command_signs_with_the_signing_kid_and_names_iss_and_aud(
    database: TestDatabase, engine: AsyncEngine, tmp_path: Path
) -> None:
    env = cli_env(
        tmp_path,
        database.url_string,
        USAGEGRAPH_JWT_KEYS=f"2025={OLD_KEY},2026={NEW_KEY}",
        USAGEGRAPH_JWT_SIGNING_KID="2026",
        USAGEGRAPH_JWT_ISSUER="https://auth.example.edu",
        USAGEGRAPH_JWT_AUDIENCE="usagegraph",
    )
    user_id = await add_user(engine, email="cli@acme.edu")
    minted = run_cli(env, "token", "--user", str(user_id), "--ttl", "600")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == "2026"
    claims = jwt.decode(token, NEW_KEY, algorithms=["HS256"], audience="usagegraph")
    assert claims["iss"] == "https://auth.example.edu"
    assert claims["sub"] == str(user_id)
    assert claims["exp"] - claims["iat"] == 600


async def test_a_token_living_too_long_is_401_on_rest(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="ada@acme.edu")
    issued = _now()
    day = _sign({"sub": str(user_id), "exp": issued + timedelta(days=1)}, TEST_JWT_SECRET)
    assert (await _credits_status(client, day))[0] == 200
    for token in (
        _sign({"sub": str(user_id), "exp": 1e30}, TEST_JWT_SECRET),
        _sign({"sub": str(user_id), "exp": issued + timedelta(days=2)}, TEST_JWT_SECRET),
        _sign({"sub": str(user_id), "iat": None}, TEST_JWT_SECRET),
    ):
        status, body = await _credits_status(client, token)
        assert (status, body["error"]) == (401, UNAUTHORIZED)


async def test_the_token_command_refuses_a_ttl_beyond_the_maximum(
    database: TestDatabase, engine: AsyncEngine, tmp_path: Path
) -> None:
    user_id = await add_user(engine, email="cli@acme.edu")
    env = cli_env(tmp_path, database.url_string)
    refused = run_cli(env, "token", "--user", str(user_id), "--ttl", "86401")
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "at most 86400 seconds (USAGEGRAPH_JWT_MAX_TTL_SECONDS)" in refused.stderr
    minted = run_cli(env, "token", "--user", str(user_id), "--ttl", "86400")
    assert minted.returncode == 0, minted.stderr
    assert user_id_from_token(minted.stdout.strip(), TEST_JWT_SECRET) == user_id
    strict = cli_env(tmp_path, database.url_string, USAGEGRAPH_JWT_MAX_TTL_SECONDS="600")
    refused = run_cli(strict, "token", "--user", str(user_id), "--ttl", "601")
    assert refused.returncode != 0
    assert "at most 600 seconds" in refused.stderr
