"""JSON Web Tokens: HS256 only, `exp` required, `sub` is the user id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 3600
_LEEWAY_SECONDS = 30


class InvalidTokenError(Exception):
    """The token cannot identify anyone; the message is safe to show a client."""


def mint_token(user_id: int, secret: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
    """A signed token for `user_id` that expires after `ttl_seconds`."""
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(seconds=ttl_seconds)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def user_id_from_token(token: str, secret: str) -> int:
    """Verify signature and expiry and return the user id; raise InvalidTokenError otherwise.

    The algorithm list is pinned, so `alg: none` and algorithm-confusion tokens fail.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
            leeway=_LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidTokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("invalid token") from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isdigit():
        raise InvalidTokenError("invalid token subject")
    return int(subject)


def looks_like_jwt(credential: str) -> bool:
    """A JWT has three dot-separated parts; our API keys never contain a dot."""
    return credential.count(".") == 2
