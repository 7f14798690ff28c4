"""Credentials: encrypted at rest with COHORTA_SECRET_KEY, never in an API answer, the audit trail or the logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pydantic
import pytest
import sqlalchemy as sa

from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.sources.crypto import NoSecretKey, Vault, generate_key
from cohorta.sources.models import Source
from tests.sources.remote import Emarsys, Remote
from tests.support import admin_api

API = "/api/v1"
SECRET = "s3cr3t-emarsys-api-secret-0123456789"


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    yield server
    server.close()


def test_credentials_are_encrypted_and_never_returned_or_logged(
    store: sa.Engine, clock: FrozenClock, remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = generate_key()
    fake = Emarsys(remote, clock, secret=SECRET, lists={"10": ["100", "101"]},
                   contacts={"100": {"3": "ann@example.com"}, "101": {"3": "bob@example.com"}})  # fmt: skip
    answers: list[str] = []
    with admin_api(store, clock, secret_key=key) as api:
        for source_id, email in (("c1", "ann@example.com"), ("c2", "bob@example.com")):
            api.put(f"{API}/customers/{source_id}", json={"email": email, "loyalty_member": True})
        body = {"name": "Emarsys", "kind": "emarsys", "config": {"base_url": remote.url, "include_segments": False},
                "credentials": {"username": fake.username, "secret": SECRET}}  # fmt: skip
        created = api.post(f"{API}/sources", json=body)
        assert created.status_code == 201, created.text
        source = created.json()
        assert (source["has_credentials"], source["credential_fields"]) == (True, ["secret", "username"])
        tested = api.post(f"{API}/sources/{source['id']}/test")
        assert tested.json()["ok"] is True, tested.text
        segment = api.post(f"{API}/sources/{source['id']}/import", json={"remote_id": "list:10"})
        assert segment.status_code == 201 and segment.json()["members"] == 2, segment.text
        fake.secret = "rotated-on-the-emarsys-side"  # our digest no longer matches: 401s
        failed = api.post(f"{API}/segments/{segment.json()['id']}/sync", json={})
        assert failed.json()["status"] == "failed" and "401" in failed.json()["error"]
        assert api.post(f"{API}/sources/{source['id']}/test").json()["ok"] is False
        patched = api.patch(f"{API}/sources/{source['id']}", json={"credentials": {"username": "u", "secret": SECRET}})
        assert patched.status_code == 200
        answers += [r.text for r in (created, tested, segment, failed, patched)]
        for path in ("/sources", f"/sources/{source['id']}", f"/segments/{segment.json()['id']}",
                     f"/segments/{segment.json()['id']}/sync-reports", f"/sources/{source['id']}/segments",
                     "/audit?object_type=source", "/audit?object_type=segment"):  # fmt: skip
            response = api.get(API + path)
            assert response.status_code == 200
            answers.append(response.text)
    assert all(SECRET not in text for text in answers)
    assert SECRET not in caplog.text and "sync of segment" in caplog.text  # the failure was logged, without it
    with store.connect() as connection:
        stored = connection.execute(sa.select(Source.credentials)).scalar_one()
    assert SECRET not in stored
    assert Vault(key).decrypt(stored) == {"username": "u", "secret": SECRET}


def test_without_a_key_credentials_are_refused_and_nothing_is_saved(store: sa.Engine, clock: FrozenClock) -> None:
    with admin_api(store, clock) as api:
        body = {"name": "Feed", "kind": "json", "config": {"url": "https://crm.example.com/members",
                "auth_header": "Authorization"}, "credentials": {"header_value": "Bearer " + SECRET}}  # fmt: skip
        refused = api.post(f"{API}/sources", json=body)
        assert refused.status_code == 409 and "COHORTA_SECRET_KEY" in refused.json()["detail"]
        assert SECRET not in refused.text
        assert api.get(f"{API}/sources").json() == []
        plain = api.post(f"{API}/sources", json={**body, "credentials": None})
        assert plain.status_code == 201 and plain.json()["has_credentials"] is False


def test_keys_rotate_and_a_lost_key_fails_syncs_clearly() -> None:
    old, new = generate_key(), generate_key()
    token = Vault(old).encrypt({"secret": SECRET})
    assert Vault(f"{new},{old}").decrypt(token) == {"secret": SECRET}  # rotation: the old key still decrypts
    assert Vault(new).decrypt(Vault(f"{new},{old}").encrypt({"a": "b"})) == {"a": "b"}  # the first one encrypts
    with pytest.raises(ValueError, match="cannot be decrypted") as lost:
        Vault(new).decrypt(token)
    assert SECRET not in str(lost.value)
    with pytest.raises(ValueError, match="COHORTA_SECRET_KEY is not set"):
        Vault(None).decrypt(token)
    with pytest.raises(NoSecretKey):
        Vault("").encrypt({"a": "b"})


def test_a_malformed_secret_key_is_refused_at_startup() -> None:
    with pytest.raises(pydantic.ValidationError, match="Fernet"):
        Settings(secret_key="not-a-fernet-key")
    assert Settings(secret_key=f" {generate_key()} ").secret_key is not None


def test_source_urls_carry_no_passwords_and_shown_settings_hide_signatures(
    store: sa.Engine, clock: FrozenClock
) -> None:
    with admin_api(store, clock) as api:
        with_password = {"url": "https://user:pw@crm.example.com/x"}
        refused = api.post("/api/v1/sources", json={"name": "U", "kind": "json", "config": with_password})
        assert refused.status_code == 422 and "credentials" in refused.text and "pw@" not in refused.text
        bad = api.post("/api/v1/sources", json={"name": "B", "kind": "json", "config": {"url": "https:///no-host"}})
        assert bad.status_code == 422
        signed = "https://files.example.com/list.csv?X-Amz-Signature=abc123&part=2"
        made = api.post("/api/v1/sources", json={"name": "S", "kind": "csv", "config": {"url": signed}})
        assert made.status_code == 201, made.text
        shown = api.get(f"/api/v1/sources/{made.json()['id']}").json()["config"]["url"]
        assert "abc123" not in shown and "X-Amz-Signature=%2A%2A%2A" in shown and "part=2" in shown
