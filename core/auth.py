"""Role API keys (P11): random keys shown once, stored only as SHA-256 hashes.

A route admits only the roles it names; a missing or unknown key is 401, a known key of
another role is 403.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from core.errors import AuthError, Forbidden
from core.tables import ApiKey

API_KEY_HEADER = "X-API-Key"
# Declares the header in OpenAPI (``securitySchemes.RoleKey``); the check itself is ours, so a
# missing key is our own 401 problem document, not FastAPI's.
ROLE_KEY = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="RoleKey",
    description="A role key (`chorus keys create --role ROLE`): researcher, auditor, "
    "contributor, admin or app. Each route admits only the roles it names.",
    auto_error=False,
)


class Role(enum.StrEnum):
    APP = "app"
    RESEARCHER = "researcher"
    AUDITOR = "auditor"
    CONTRIBUTOR = "contributor"
    ADMIN = "admin"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, *, role: Role, name: str) -> str:
    """Store a new key's hash and return the key itself: the only time it exists in clear."""
    key = "chk_" + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, role=role.value, key_hash=hash_key(key)))
    session.flush()
    return key


def get_all(session: Session) -> list[ApiKey]:
    """Every key's id, role, name and state (never a key: only hashes are stored)."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.role, ApiKey.name, ApiKey.id)))


def revoke_key(session: Session, *, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked = True
    return True


def role_of(session: Session, key: str) -> Role | None:
    """The role of a valid, unrevoked key, or None."""
    row = session.execute(
        sa.select(ApiKey.role).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked.is_(False))
    ).scalar_one_or_none()
    return Role(row) if row is not None else None


def require_roles(*roles: Role) -> Callable[[Request, str | None], Role]:
    """A FastAPI dependency admitting only ``roles``; returns the caller's role."""
    allowed = frozenset(roles)

    # The roles travel as the requirement's list in OpenAPI (3.1 allows role names there for
    # any scheme), so each operation names the roles it admits: `{"RoleKey": ["auditor"]}`.
    scopes = sorted(role.value for role in allowed)

    def dependency(request: Request, key: str | None) -> Role:
        if not key:
            raise AuthError(f"send a role key in the {API_KEY_HEADER} header")
        database = request.app.state.database
        with database.session() as session:
            role = role_of(session, key)
        if role is None:
            raise AuthError("the API key is not valid")
        if role not in allowed:
            raise Forbidden("this key's role may not use this route")
        return role

    # Set as an object, not as source text: the scopes are this call's, not a module global.
    dependency.__annotations__["key"] = Annotated[str | None, Security(ROLE_KEY, scopes=scopes)]
    dependency.__name__ = "require_" + "_or_".join(sorted(r.value for r in allowed))
    return dependency
