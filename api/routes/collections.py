"""Collections (list, create, describe, delete) and scoped API keys (create, list, revoke).

Creating and deleting collections and managing keys need an admin key. Listing shows only the
collections a key may read; describing one it may not read is the same 404 as a missing one.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import PROTECTED, AdminDep, PrincipalDep, RegistryDep
from api.registry import missing
from api.schemas import ERRORS, CollectionIn, CollectionList, CollectionOut, ErrorOut, KeyCreated, KeyIn, KeyList, KeyOut
from rag.collections import check_name
from rag.errors import InvalidRequestError

router = APIRouter(tags=["collections"], dependencies=PROTECTED)
_ADMIN = {**ERRORS, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@router.get("/collections", response_model=CollectionList, responses=ERRORS)
def list_collections(registry: RegistryDep, principal: PrincipalDep) -> CollectionList:
    """The collections this key may read, with their counts and embedder."""
    return CollectionList(collections=[CollectionOut(**registry.describe(n)) for n in registry.visible(principal)])


@router.post("/collections", response_model=CollectionOut, status_code=201, responses=_ADMIN)
async def create_collection(req: CollectionIn, registry: RegistryDep, _: AdminDep) -> CollectionOut:
    """A new, empty collection (admin). Add documents with `POST /collections/{name}/documents`."""
    await run_in_threadpool(registry.create, req.name, dict(req.settings))
    return CollectionOut(**registry.describe(req.name))


@router.get("/collections/{collection}", response_model=CollectionOut, responses=ERRORS)
def describe_collection(collection: str, registry: RegistryDep, principal: PrincipalDep) -> CollectionOut:
    """One collection: documents, chunks, index version, embedder, languages, its own settings."""
    if not principal.can("read", collection):
        raise missing(collection)
    return CollectionOut(**registry.describe(collection))


@router.delete("/collections/{collection}", status_code=204, responses=_ADMIN)
async def delete_collection(collection: str, registry: RegistryDep, _: AdminDep) -> None:
    """Delete a collection, its documents and index, and every key's grant on it (admin). The
    default collection cannot be deleted."""
    check_name(collection)
    await run_in_threadpool(registry.delete, collection)


@router.post("/keys", response_model=KeyCreated, status_code=201, responses=_ADMIN)
def create_key(req: KeyIn, registry: RegistryDep, _: AdminDep) -> KeyCreated:
    """A new API key (admin). The response holds the key itself, once; only its hash is stored."""
    for name in (*req.read, *req.write):
        registry.collections.get(name)  # a grant on a collection that does not exist is a mistake: 404
    if not (req.admin or req.read or req.write):
        raise InvalidRequestError("a key needs a grant: read or write on a collection, or admin")
    record, token = registry.keys.create(req.name, req.read, req.write, req.admin)
    return KeyCreated(**record.public(), key=token)


@router.get("/keys", response_model=KeyList, responses=_ADMIN)
def list_keys(registry: RegistryDep, _: AdminDep) -> KeyList:
    """Every stored key's id, name and grants (never the key or its hash; admin)."""
    return KeyList(keys=[KeyOut(**r.public()) for r in registry.keys.records()])


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=_ADMIN)
def revoke_key(key_id: str, registry: RegistryDep, _: AdminDep) -> KeyOut:
    """Revoke a key (admin): its next request is refused."""
    return KeyOut(**registry.keys.revoke(key_id).public())
