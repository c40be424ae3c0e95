"""A small campus for the user-stats tests, with every number worked out by hand.

Now is FIXED_NOW = Wed 2026-05-20 15:30 UTC. Users get explicit ids (9, 10, 12, 100) so
"ordered by user" is visibly numeric (a string sort would give 10, 100, 12, 9).

Institutions
  ACME "aaaa…" "Acme U", ai "Pria", default_cap 3
  BETA "bbbb…" "Beta College", no ai name, no default cap
Users (id, email, role, memberships)
  1   boss@hq.example   super
  2   dean@acme.edu     admin + institutions.edit, ACME admin
  3   clerk@acme.edu    admin without institutions.edit, ACME admin
  4   pat@acme.edu      user, ACME
  9   ada@acme.edu      Ada Lovelace, user, ACME (no own cap -> default 3)
  10  bob@beta.edu      Bob Builder, admin (no permission), ACME cap 8, BETA
  12  cy@acme.edu       Cy Young, user, ACME cap 1
  100 dan@acme.edu      Dan Brown, user, ACME (default cap 3)
Usage (credits / messages), with each pair's lifetime (forgotten included)
  pat  ACME 02-25 23:59:59 7 / 1    } lifetime 9, cap 3 -> 300 %, at cap
  pat  ACME 02-26 00:00    2 / 1    }
  ada  ACME 04-01 12:00    1 / 1    }
  ada  ACME 05-19 10:00    0.5 / 1 forgotten  } lifetime 2, cap 3 -> 66.67 %
  ada  ACME 05-20 09:00    0.5 / 2 failed     }
  ada  pers 05-16 08:00    3 / 1      lifetime 3
  bob  ACME 05-14 00:00    0.5 / 1  } lifetime 1, cap 8 -> 12.5 %
  bob  ACME 05-20 10:00    0.5 / 1  }
  bob  BETA 05-13 23:59:59 4 / 1    }
  bob  BETA 05-15 12:00    2.5 / 3  } lifetime 7, no cap
  bob  BETA 05-20 11:00    0.5 / 1  }
  bob  pers 05-20 12:00    0.25 / 1   lifetime 0.25
  cy   ACME 05-17 12:00    0.12345 / 1   lifetime 0.12345, cap 1 -> 12.345 -> 12.35 (half-up)
  dan  ACME 05-10 12:00    1.5 / 1  }
  dan  ACME 05-20 01:00    1 / 1    } lifetime 3, cap 3 -> 100 %, at cap
  dan  ACME 05-20 14:00    0.5 / 1  }
  dean pers 05-18 12:00    1 / 1      lifetime 1
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from usagegraph.auth.tokens import mint_token
from usagegraph.datasources.usage_writes import insert_events
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, Membership, User
from usagegraph.db.sequences import bump_id_sequences

ACME = "a" * 24
BETA = "b" * 24

SUPER, DEAN, CLERK, PAT, ADA, BOB, CY, DAN = 1, 2, 3, 4, 9, 10, 12, 100


def token(user_id: int) -> str:
    return mint_token(user_id, TEST_JWT_SECRET)


def headers(user_id: int, **extra: str) -> dict[str, str]:
    return {"x-access-token": token(user_id), **extra}


def at(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    role: str = "user"
    fname: str | None = None
    lname: str | None = None
    permissions: tuple[str, ...] = ()
    # (institution id, role there, cap_limit or None) per membership
    member_of: tuple[tuple[str, str, str | None], ...] = ()


PEOPLE = (
    Person(SUPER, "boss@hq.example", "super"),
    Person(DEAN, "dean@acme.edu", "admin", "Dean", "Smith", ("institutions.edit",),
           ((ACME, "admin", None),)),
    Person(CLERK, "clerk@acme.edu", "admin", member_of=((ACME, "admin", None),)),
    Person(PAT, "pat@acme.edu", member_of=((ACME, "user", None),)),
    Person(ADA, "ada@acme.edu", "user", "Ada", "Lovelace", member_of=((ACME, "user", None),)),
    Person(BOB, "bob@beta.edu", "admin", "Bob", "Builder",
           member_of=((ACME, "user", "8"), (BETA, "user", None))),
    Person(CY, "cy@acme.edu", "user", "Cy", "Young", member_of=((ACME, "user", "1"),)),
    Person(DAN, "dan@acme.edu", "user", "Dan", "Brown", member_of=((ACME, "user", None),)),
)  # fmt: skip

# (user, institution or None, occurred_at, credits, messages, status, forgotten)
USAGE = (
    (PAT, ACME, at(2, 25, 23, 59, 59), "7", 1, "success", False),
    (PAT, ACME, at(2, 26, 0, 0), "2", 1, "success", False),
    (ADA, ACME, at(4, 1), "1", 1, "success", False),
    (ADA, ACME, at(5, 19, 10), "0.5", 1, "success", True),
    (ADA, ACME, at(5, 20, 9), "0.5", 2, "failed", False),
    (ADA, None, at(5, 16, 8), "3", 1, "success", False),
    (BOB, ACME, at(5, 14, 0, 0), "0.5", 1, "success", False),
    (BOB, ACME, at(5, 20, 10), "0.5", 1, "success", False),
    (BOB, BETA, at(5, 13, 23, 59, 59), "4", 1, "success", False),
    (BOB, BETA, at(5, 15), "2.5", 3, "success", False),
    (BOB, BETA, at(5, 20, 11), "0.5", 1, "success", False),
    (BOB, None, at(5, 20, 12), "0.25", 1, "success", False),
    (CY, ACME, at(5, 17), "0.12345", 1, "success", False),
    (DAN, ACME, at(5, 10), "1.5", 1, "success", False),
    (DAN, ACME, at(5, 20, 1), "1", 1, "success", False),
    (DAN, ACME, at(5, 20, 14), "0.5", 1, "success", False),
    (DEAN, None, at(5, 18), "1", 1, "success", False),
)


async def add_people(engine: AsyncEngine, people: tuple[Person, ...] = PEOPLE) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add_all(
            User(
                id=p.id,
                email=p.email,
                role=p.role,
                fname=p.fname,
                lname=p.lname,
                permissions=list(p.permissions),
            )
            for p in people
        )
        await session.flush()
        session.add_all(
            Membership(
                user_id=p.id,
                institution_id=institution_id,
                role=role,
                cap_limit=Decimal(cap) if cap is not None else None,
            )
            for p in people
            for institution_id, role, cap in p.member_of
        )
        await bump_id_sequences(await session.connection())


async def add_institutions(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(Institution(id=ACME, name="Acme U", ai_name="Pria", default_cap=Decimal(3)))
        session.add(Institution(id=BETA, name="Beta College", ai_name=None, default_cap=None))


async def add_usage(
    engine: AsyncEngine,
    events: tuple[tuple[int, str | None, datetime, str, int, str, bool], ...],
) -> None:
    rows = [
        {
            "user_id": user_id,
            "institution_id": institution_id,
            "occurred_at": occurred_at,
            "credits": Decimal(credits),
            "messages": messages,
            "status": status,
            "forgotten": forgotten,
        }
        for user_id, institution_id, occurred_at, credits, messages, status, forgotten in events
    ]
    async with session_factory(engine)() as session, session.begin():
        await insert_events(session, rows)


async def seed_campus(engine: AsyncEngine) -> None:
    await add_institutions(engine)
    await add_people(engine)
    await add_usage(engine, USAGE)


# ---- the row-limit data set ----------------------------------------------------------------

BULK_FIRST_DAY = date(2019, 1, 1)
BULK_DAYS = 2500
# 2019-01-01 + 2499 days: 2019..2024 hold 365+366+365+365+365+366 = 2192 days, so 307 days
# after 2025-01-01: Jan..Oct 2025 hold 304 days -> 2025-11-04.
BULK_LAST_DAY = date(2025, 11, 4)


async def seed_bulk(engine: AsyncEngine, *, extra_rows: int) -> None:
    """ADA and BOB spend 1 credit in ACME every day for BULK_DAYS days: 2 x 2500 = 5000
    (user, day) rows; CY adds `extra_rows` more on the last days."""
    await add_institutions(engine)
    await add_people(engine)
    events = [
        (user_id, ACME, _midnight(BULK_FIRST_DAY + timedelta(days=n)), "1", 1, "success", False)
        for n in range(BULK_DAYS)
        for user_id in (ADA, BOB)
    ]
    events += [
        (CY, ACME, _midnight(BULK_LAST_DAY - timedelta(days=n)), "1", 1, "success", False)
        for n in range(extra_rows)
    ]
    await add_usage(engine, tuple(events))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
