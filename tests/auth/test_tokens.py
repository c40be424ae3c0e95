"""JWT verification refuses everything but a signed, unexpired HS256 token with a user id."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from usagegraph.auth.tokens import InvalidTokenError, mint_token, user_id_from_token

SECRET = "a-secret-long-enough-for-hs256-0123456789abcdef"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_minted_token_identifies_its_user() -> None:
    assert user_id_from_token(mint_token(42, SECRET), SECRET) == 42


def test_expired_token_is_refused() -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    token = jwt.encode({"sub": "42", "exp": past}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="expired"):
        user_id_from_token(token, SECRET)


def test_unsigned_alg_none_token_is_refused() -> None:
    future = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': '42', 'exp': future})}."
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


def test_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token(mint_token(42, "another-secret-that-is-long-enough-000000"), SECRET)


def test_token_without_exp_is_refused() -> None:
    token = jwt.encode({"sub": "42"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("subject", ["abc", "-1", ""])
def test_token_whose_subject_is_not_a_user_id_is_refused(subject: str) -> None:
    token = jwt.encode(
        {"sub": subject, "exp": datetime.now(UTC) + timedelta(hours=1)}, SECRET, algorithm="HS256"
    )
    with pytest.raises(InvalidTokenError):
        user_id_from_token(token, SECRET)


def test_malformed_token_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        user_id_from_token("not.a.jwt", SECRET)


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        mint_token(1, SECRET, ttl_seconds=0)
