"""Collections and scoped API keys through the real service (TestClient, real index, real embedders).

The isolation suite enumerates every collection-scoped endpoint against every key scope: a key
that may not read a collection gets exactly the answer it would get for a collection that does
not exist, and nothing of the collection's content, in JSON responses and in streams alike."""

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings
from tests.conftest import QuotingLLM

ADMIN = "admin-key-for-tests"
SECRET_EN = "The zephyrine lighthouse keeper logs tides at dawn."
SECRET_KO = "제퍼린 등대지기는 새벽마다 조수를 기록합니다. 등대의 불빛은 밤새 켜져 있습니다."


def _auth(key):
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="module")
def service(tmp_path_factory, fixture_index, embedder, e5_embedder, smollm2):
    """Default collection = a copy of the fixture index; 'alpha' (English) and 'beta' (Korean) made
    through the API; keys: admin, read on alpha, write on alpha, read on beta."""
    root = tmp_path_factory.mktemp("collections")
    shutil.copytree(fixture_index, root / "default")
    settings = Settings(_env_file=None, index_dir=root / "default", api_keys=ADMIN, reranker="none",
                        llm_model="smollm2", llm_context_tokens=2048, max_tokens=32, grounding="off", ui=False)
    app = create_app(settings)
    app.state.registry.models.embedders.update({"minilm": embedder, "e5-small": e5_embedder})
    with TestClient(app) as client:
        app.state.engine.generator = QuotingLLM(smollm2.count_tokens)
        admin = _auth(ADMIN)
        for name in ("alpha", "beta"):
            r = client.post("/collections", json={"name": name}, headers=admin)
            assert r.status_code == 201, r.text
        r = client.post("/collections/alpha/documents", headers=admin, json={"documents": [
            {"id": "light", "title": "Zephyrine lighthouse", "text": SECRET_EN}]})
        assert r.status_code == 200 and r.json()["added"] == 1, r.text
        r = client.post("/collections/beta/documents", headers=admin, json={"documents": [
            {"id": "deungdae", "title": "제퍼린 등대", "text": SECRET_KO}]})
        assert r.status_code == 200, r.text
        keys = {"admin": ADMIN, "none": None, "bogus": "rag_not-a-key"}
        for label, grants in {"alpha-read": {"read": ["alpha"]}, "alpha-write": {"write": ["alpha"]},
                              "beta-read": {"read": ["beta"]}}.items():
            r = client.post("/keys", headers=admin, json={"name": label, **grants})
            assert r.status_code == 201 and r.json()["key"].startswith("rag_"), r.text
            keys[label] = r.json()["key"]
        yield client, keys, root


def test_each_collection_has_its_own_documents_and_embedder(service):
    client, keys, root = service
    admin = _auth(ADMIN)
    listed = {c["name"]: c for c in client.get("/collections", headers=admin).json()["collections"]}
    assert set(listed) == {"default", "alpha", "beta"}
    assert listed["alpha"]["embedder"] == "minilm" and listed["alpha"]["documents"] == 1
    assert listed["beta"]["embedder"] == "e5-small"  # 'auto' looked at the collection's own (Korean) documents
    hits = client.post("/collections/alpha/search", headers=admin, json={"query": "lighthouse tides"}).json()["hits"]
    assert [h["doc_id"] for h in hits] == ["light"]
    hits = client.post("/search", headers=admin, json={"query": "lighthouse tides", "mode": "bm25"}).json()["hits"]
    assert "light" not in [h["doc_id"] for h in hits]  # the default collection does not hold it
    ko = client.post("/collections/beta/search", headers=admin, json={"query": "등대지기는 무엇을 기록하나요?"}).json()
    assert ko["hits"][0]["doc_id"] == "deungdae" and ko["dense_used"]
    answer = client.post("/collections/beta/ask", headers=admin, json={"question": "등대지기는 새벽마다 무엇을 기록하나요?"})
    assert answer.status_code == 200 and answer.json()["citations"][0]["doc_id"] == "deungdae", answer.text
    assert (root / "alpha" / "collection.json").is_file() and (root / "keys.json").is_file()
    assert ADMIN not in (root / "keys.json").read_text() and keys["alpha-read"] not in (root / "keys.json").read_text()


def test_a_collection_keeps_its_own_settings_and_bad_ones_are_refused(service):
    client, _, _ = service
    admin = _auth(ADMIN)
    r = client.post("/collections", headers=admin, json={"name": "gamma", "settings": {"top_k": 2}})
    assert r.status_code == 201 and r.json()["settings"] == {"top_k": 2}
    client.post("/collections/gamma/documents", headers=admin, json={"documents": [
        {"id": f"d{i}", "text": f"Note {i} on tidal power and lighthouses."} for i in range(4)]})
    assert len(client.post("/collections/gamma/search", headers=admin, json={"query": "tidal"}).json()["hits"]) == 2
    for bad, word in (({"name": "gamma"}, "exists"), ({"name": "x", "settings": {"api_keys": "k"}}, "cannot set"),
                      ({"name": "x", "settings": {"top_k": 0}}, "invalid"), ({"name": "Bad Name"}, "name")):
        r = client.post("/collections", headers=admin, json=bad)
        assert r.status_code == 422 and r.json()["error"], (bad, r.text)
        assert word in json.dumps(r.json()), r.text
    assert client.delete("/collections/gamma", headers=admin).status_code == 204
    assert client.get("/collections/gamma", headers=admin).status_code == 404
    assert client.post("/collections/gamma/search", headers=admin, json={"query": "tidal"}).status_code == 404
    assert client.delete("/collections/default", headers=admin).status_code == 422


# --- isolation: endpoints x key scopes -------------------------------------------------------
def _requests(collection: str):
    """Every collection-scoped operation, as (label, method, path, json, needed level)."""
    p = "" if collection == "default" else f"/collections/{collection}"
    ask = {"question": "What does the lighthouse keeper log at dawn?"}
    chat = {"model": "rag", "messages": [{"role": "user", "content": ask["question"]}]}
    return [
        ("describe", "GET", f"/collections/{collection}", None, "read"),
        ("search", "POST", f"{p}/search", {"query": "lighthouse tides"}, "read"),
        ("ask", "POST", f"{p}/ask", ask, "read"),
        ("ask stream", "POST", f"{p}/ask", {**ask, "stream": True}, "read"),
        ("chat", "POST", f"{p}/v1/chat/completions", chat, "read"),
        ("chat stream", "POST", f"{p}/v1/chat/completions", {**chat, "stream": True}, "read"),
        ("models", "GET", f"{p}/v1/models", None, "read"),
        ("documents", "GET", f"{p}/documents", None, "read"),
        ("add", "POST", f"{p}/documents?wait=30", {"documents": [{"id": "probe", "text": "probe text"}]}, "write"),
        ("delete", "DELETE", f"{p}/documents/probe?wait=30", None, "write"),
    ]


ALLOWED = {"admin": {"default": "write", "alpha": "write", "beta": "write"},
           "alpha-read": {"alpha": "read"}, "alpha-write": {"alpha": "write"}, "beta-read": {"beta": "read"}}
LEVEL = {"read": 1, "write": 2}


def _send(client, method, path, body, key):
    r = client.request(method, path, json=body, headers=_auth(key))
    return r.status_code, r.text


def _ghost(text: str, collection: str) -> str:
    return text.replace(collection, "ghost")


@pytest.mark.parametrize("who", ["admin", "alpha-read", "alpha-write", "beta-read"])
@pytest.mark.parametrize("collection", ["default", "alpha", "beta"])
def test_a_key_reaches_exactly_what_it_was_granted(service, who, collection):
    client, keys, _ = service
    granted = LEVEL.get(ALLOWED[who].get(collection, ""), 0)
    for label, method, path, body, level in _requests(collection):
        status, text = _send(client, method, path, body, keys[who])
        if granted >= LEVEL[level]:
            assert 200 <= status < 300, (who, collection, label, status, text)
            continue
        # Not granted: the very answer a collection that does not exist gets, and nothing of its content.
        ghost_path = path.replace(f"/collections/{collection}", "/collections/ghost")
        if collection == "default":
            assert status == 404 and json.loads(text) == {"error": "NotFoundError", "detail": "unknown collection: default"}, (who, label, text)
        else:
            assert (status, _ghost(text, collection)) == _send(client, method, ghost_path, body, keys[who]), (who, label)
        for secret in ("zephyrine", "Zephyrine", "제퍼린", "light", "deungdae", "bm25.md"):
            assert secret not in text, (who, collection, label, text)


def test_without_a_valid_key_nothing_is_reachable(service):
    client, keys, _ = service
    for key in (keys["none"], keys["bogus"]):
        for collection in ("default", "alpha", "ghost"):
            for label, method, path, body, _ in _requests(collection):
                status, text = _send(client, method, path, body, key)
                assert status == 401 and json.loads(text)["error"] == "Unauthorized", (label, path, text)
        for method, path in (("GET", "/collections"), ("GET", "/jobs"), ("GET", "/keys"), ("GET", "/metrics")):
            assert _send(client, method, path, None, key)[0] == 401
    assert client.get("/healthz").status_code == 200


def test_listings_show_only_what_a_key_may_read(service):
    client, keys, _ = service
    names = lambda key: [c["name"] for c in client.get("/collections", headers=_auth(key)).json()["collections"]]  # noqa: E731
    assert names(keys["alpha-read"]) == ["alpha"] and names(keys["beta-read"]) == ["beta"]
    assert names(keys["alpha-write"]) == ["alpha"] and set(names(ADMIN)) >= {"default", "alpha", "beta"}
    # Write jobs: an admin job on beta is invisible to alpha's keys, and its id is as unknown as a made-up one.
    r = client.post("/collections/beta/documents?wait=30", headers=_auth(ADMIN), json={"documents": [
        {"id": "second", "text": "두 번째 등대 기록입니다."}]})
    assert r.status_code == 200
    beta_jobs = [j for j in client.get("/jobs", headers=_auth(ADMIN)).json()["jobs"] if j["collection"] == "beta"]
    assert beta_jobs
    for who in ("alpha-read", "alpha-write"):
        seen = client.get("/jobs", headers=_auth(keys[who])).json()["jobs"]
        assert seen and {j["collection"] for j in seen} == {"alpha"}
        job = beta_jobs[0]["id"]
        for method in ("GET", "DELETE"):
            hidden = client.request(method, f"/jobs/{job}", headers=_auth(keys[who]))
            unknown = client.request(method, "/jobs/0000000000000000", headers=_auth(keys[who]))
            assert hidden.status_code == unknown.status_code == 404
            assert hidden.json()["detail"].replace(job, "X") == unknown.json()["detail"].replace("0000000000000000", "X")
    # Readiness without read access to the default collection: no counts of it.
    ready = client.get("/readyz", headers=_auth(keys["alpha-read"])).json()
    assert ready["documents"] is None and ready["chunks"] is None and ready["index_dir"] == ""
    assert client.get("/readyz", headers=_auth(ADMIN)).json()["documents"] > 0


def test_admin_operations_need_an_admin_key(service):
    client, keys, _ = service
    for who in ("alpha-read", "alpha-write", "beta-read"):
        h = _auth(keys[who])
        for method, path, body in (("POST", "/collections", {"name": "delta"}), ("DELETE", "/collections/alpha", None),
                                   ("POST", "/keys", {"name": "x", "admin": True}), ("GET", "/keys", None),
                                   ("DELETE", "/keys/k_000000000000", None), ("GET", "/metrics", None)):
            r = client.request(method, path, json=body, headers=h)
            assert r.status_code == 403 and r.json()["error"] == "Forbidden", (who, method, path, r.text)
    listed = client.get("/keys", headers=_auth(ADMIN)).json()["keys"]
    assert {k["name"] for k in listed} >= {"alpha-read", "alpha-write", "beta-read"}
    assert all("key" not in k and "sha256" not in k for k in listed)
    assert client.post("/keys", headers=_auth(ADMIN), json={"read": ["ghost"]}).status_code == 404
    assert client.post("/keys", headers=_auth(ADMIN), json={"name": "nothing"}).status_code == 422


def test_a_revoked_key_is_refused_at_its_next_request(service):
    client, _, _ = service
    made = client.post("/keys", headers=_auth(ADMIN), json={"name": "temp", "read": ["alpha"]}).json()
    h = _auth(made["key"])
    assert client.post("/collections/alpha/search", headers=h, json={"query": "tides"}).status_code == 200
    assert client.delete(f"/keys/{made['id']}", headers=_auth(ADMIN)).status_code == 200
    assert client.post("/collections/alpha/search", headers=h, json={"query": "tides"}).status_code == 401
    assert client.delete(f"/keys/{made['id']}", headers=_auth(ADMIN)).status_code == 404


def test_the_openai_client_talks_to_one_collection(service):
    from openai import NotFoundError, OpenAI

    client, keys, _ = service
    transport = client  # TestClient is an httpx.Client: the official client runs over it unchanged
    ai = OpenAI(base_url="http://testserver/collections/alpha/v1", api_key=keys["alpha-read"], http_client=transport)
    r = ai.chat.completions.create(model="rag", messages=[{"role": "user", "content": "What does the lighthouse keeper log?"}])
    assert r.model_extra["rag"]["citations"][0]["doc_id"] == "light"
    other = OpenAI(base_url="http://testserver/collections/beta/v1", api_key=keys["alpha-read"], http_client=transport)
    with pytest.raises(NotFoundError):
        other.chat.completions.create(model="rag", messages=[{"role": "user", "content": "등대"}])


def test_keys_made_and_revoked_by_another_process_apply_at_the_next_request(service):
    """`rag keys create/revoke` write the key file the service reads; no restart needed."""
    from rag.keys import KeyStore

    client, _, root = service
    other = KeyStore(root / "keys.json")  # what the CLI opens
    record, key = other.create("from-cli", read=["beta"])
    r = client.post("/collections/beta/search", headers=_auth(key), json={"query": "등대"})
    assert r.status_code == 200 and "deungdae" in [h["doc_id"] for h in r.json()["hits"]]
    other.revoke(record.id)
    assert client.post("/collections/beta/search", headers=_auth(key), json={"query": "등대"}).status_code == 401
