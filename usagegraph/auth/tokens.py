"""JSON Web Tokens: HS256 only, `exp` and `iat` required, `sub` is the user id.

Verification is strict where a forged or stale token could pass, lenient only by the configured
leeway for clocks that disagree:

- the algorithm list is pinned, so `alg: none` and algorithm-confusion tokens fail;
- `exp`, `iat` and `sub` are required; `exp`, `nbf` and `iat` are checked with
  `leeway_seconds` (a token issued or valid only in the future beyond the leeway is
  refused);
- a token's lifetime, `exp - iat`, may not exceed `max_ttl_seconds`
  (USAGEGRAPH_JWT_MAX_TTL_SECONDS, a day by default), so a correctly signed token whose `exp`
  is 10^30 seconds away is not a key for ever. Without `iat` the lifetime is unknown, so the
  token is refused; both must be JSON numbers. `mint_token` (and `usagegraph token --ttl`)
  refuse to sign a longer one;
- `sub` must be a user id by the rule of `input_ids` (ASCII digits, 1 .. 2^63 - 1): "٣" or
  a 40-digit subject identifies nobody, like any other invalid token;
- `iss` and `aud` are required and checked when the settings name them (and ignored when they
  do not, so a token minted for another audience is not refused for lack of configuration);
- rotation: a token with a `kid` header is verified with that key of `TokenRules.keys` (an
  unknown kid is refused, never tried against other keys); a token without one, with the
  main secret. New tokens are signed with `signing_kid`'s key when it is set.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from usagegraph.input_ids import parse_id
from usagegraph.settings import TokenRules

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 3600
DEFAULT_RULES = TokenRules()


class InvalidTokenError(Exception):
    """The token cannot identify anyone; the message is safe to show a client."""


def mint_token(
    user_id: int,
    secret: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    rules: TokenRules = DEFAULT_RULES,
    *,
    now: datetime | None = None,
) -> str:
    """A signed token for `user_id` that expires `ttl_seconds` after `now` (default: now).

    It carries `iss`/`aud` when the rules name them, and the `kid` of the signing key.
    """
    check_ttl(ttl_seconds, rules)
    issued_at = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + timedelta(seconds=ttl_seconds),
    }
    if rules.issuer is not None:
        claims["iss"] = rules.issuer
    if rules.audience is not None:
        claims["aud"] = rules.audience
    key, headers = _signing_key(secret, rules)
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)


def check_ttl(ttl_seconds: int, rules: TokenRules = DEFAULT_RULES) -> None:
    """A lifetime we sign: positive and at most `rules.max_ttl_seconds` (ValueError, with a
    message for the person asking, otherwise)."""
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    if ttl_seconds > rules.max_ttl_seconds:
        raise ValueError(
            f"ttl must be at most {rules.max_ttl_seconds} seconds (USAGEGRAPH_JWT_MAX_TTL_SECONDS)"
        )


def user_id_from_token(token: str, secret: str, rules: TokenRules = DEFAULT_RULES) -> int:
    """Verify the token under `rules` and return its user id; raise InvalidTokenError if not."""
    key = _verification_key(token, secret, rules)
    claims = _verified_claims(token, key, rules)
    _check_lifetime(claims, rules)
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise InvalidTokenError("invalid token subject")
    try:
        return parse_id(subject)
    except ValueError:
        raise InvalidTokenError("invalid token subject") from None


def looks_like_jwt(credential: str) -> bool:
    """A JWT has three dot-separated parts; our API keys never contain a dot."""
    return credential.count(".") == 2


def _signing_key(secret: str, rules: TokenRules) -> tuple[str, dict[str, str] | None]:
    """The key new tokens are signed with, and the header naming it (None: the main secret)."""
    if rules.signing_kid is None:
        return secret, None
    if rules.signing_kid not in rules.keys:
        raise ValueError(f"signing kid {rules.signing_kid!r} is not among the configured keys")
    return rules.keys[rules.signing_kid], {"kid": rules.signing_kid}


def _verification_key(token: str, secret: str, rules: TokenRules) -> str:
    """The one key this token may be verified with, chosen by its `kid` header."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("invalid token") from exc
    if "kid" not in header:
        return secret
    kid = header["kid"]
    if not isinstance(kid, str) or kid not in rules.keys:
        raise InvalidTokenError("unknown signing key")
    return rules.keys[kid]


def _check_lifetime(claims: dict[str, Any], rules: TokenRules) -> None:
    """`exp - iat` within the maximum lifetime; both claims plain JSON numbers."""
    issued, expires = claims["iat"], claims["exp"]
    for value in (issued, expires):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidTokenError("invalid token times")
    if expires - issued > rules.max_ttl_seconds:
        raise InvalidTokenError("token lifetime exceeds the maximum")


def _verified_claims(token: str, key: str, rules: TokenRules) -> dict[str, Any]:
    required = ["exp", "iat", "sub"]
    required += ["iss"] if rules.issuer is not None else []
    required += ["aud"] if rules.audience is not None else []
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": required, "verify_aud": rules.audience is not None},
            leeway=rules.leeway_seconds,
            issuer=rules.issuer,
            audience=rules.audience,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidTokenError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidTokenError("token not yet valid") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidTokenError("invalid token issuer") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidTokenError("invalid token audience") from exc
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("invalid token") from exc


def valid_until(token: str, rules: TokenRules = DEFAULT_RULES) -> datetime | None:
    """When a token that was verified already stops being accepted: its `exp` plus the
    leeway (None when it has no readable `exp`). Not a verification: read only after
    `user_id_from_token` accepted the token, to close a websocket the moment it lapses."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError, OverflowError):
        return None
    return expires + timedelta(seconds=rules.leeway_seconds)
