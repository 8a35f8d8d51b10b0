"""FastAPI dependencies shared by every domain, defined once as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core.auth import Role, require_roles
from core.db import Database
from core.keystore import KeyStore
from core.settings import Settings
from core.storage import BlobStore


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(request: Request) -> Iterator[Session]:
    database: Database = request.app.state.database
    with database.session() as session:
        yield session


def get_key_store(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys


def get_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
KeyStoreDep = Annotated[KeyStore, Depends(get_key_store)]

AppRole = Annotated[Role, Depends(require_roles(Role.APP))]
ResearcherRole = Annotated[Role, Depends(require_roles(Role.RESEARCHER))]
AuditorRole = Annotated[Role, Depends(require_roles(Role.AUDITOR))]
ContributorRole = Annotated[Role, Depends(require_roles(Role.CONTRIBUTOR))]
AdminRole = Annotated[Role, Depends(require_roles(Role.ADMIN))]
OperatorOrAuditorRole = Annotated[Role, Depends(require_roles(Role.ADMIN, Role.AUDITOR))]
