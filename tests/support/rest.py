"""A signed-in app's view of Firestore over the REST API, as the client SDKs reach it:
for testing firestore.rules on the emulator as an attacker would try them."""

from __future__ import annotations

import requests

from support.emulator import ROOT, clear_project
from support.idtokens import emulator_id_token


def load_rules(host: str, project: str) -> None:
    """Put firestore.rules on the emulator's `project` (rules are kept per project) and clear its data."""
    source = (ROOT / "firestore.rules").read_text()
    requests.put(
        f"http://{host}/emulator/v1/projects/{project}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": source}]}},
        timeout=30,
    ).raise_for_status()
    clear_project(host, project)


class RulesApi:
    """Requests of a signed-in user (an emulator ID token), or of nobody (uid None).

    Args:
        host: the Firestore emulator's host:port.
        project: the project whose rules and data are tried.
    """

    def __init__(self, host: str, project: str):
        self.project = project
        self.root = f"http://{host}/v1/projects/{project}/databases/(default)/documents"

    def _headers(self, uid: str | None) -> dict:
        return {"Authorization": f"Bearer {emulator_id_token(uid, self.project)}"} if uid else {}

    def get(self, path: str, uid: str | None) -> int:
        """The HTTP status of reading one document."""
        return requests.get(f"{self.root}/{path}", headers=self._headers(uid), timeout=30).status_code

    def query(self, collection_path: str, uid: str | None, filters=(), *, group: bool = False):
        """Run a query on a collection (or a collection group); (status, ids found).

        Args:
            filters: (field, operator, string value) triples, e.g. ("chatId", "EQUAL", "c1").
            group: every collection of that name (collection_path's last part) at any depth.
        """
        parent, _, collection = collection_path.rpartition("/")
        structured: dict = {"from": [{"collectionId": collection, "allDescendants": group}]}
        if filters:
            structured["where"] = {"compositeFilter": {"op": "AND", "filters": [
                {"fieldFilter": {"field": {"fieldPath": f}, "op": op, "value": {"stringValue": v}}}
                for f, op, v in filters
            ]}}
        url = f"{self.root}/{parent}:runQuery" if parent else f"{self.root}:runQuery"
        response = requests.post(url, headers=self._headers(uid), json={"structuredQuery": structured}, timeout=30)
        found = [r["document"]["name"].rsplit("/", 1)[1] for r in response.json() if "document" in r] \
            if response.status_code == 200 else []
        return response.status_code, found

    def writes(self, path: str, uid: str | None) -> dict[str, int]:
        """Status of an update, a create (a new id next to `path`) and a delete."""
        body = {"fields": {"count": {"integerValue": "0"}, "ageVerified18Plus": {"booleanValue": True}}}
        headers = self._headers(uid)
        parent, _, _ = path.rpartition("/")
        return {
            "update": requests.patch(f"{self.root}/{path}", headers=headers, json=body, timeout=30).status_code,
            "create": requests.post(f"{self.root}/{parent}?documentId=new-doc", headers=headers, json=body,
                                    timeout=30).status_code,
            "delete": requests.delete(f"{self.root}/{path}", headers=headers, timeout=30).status_code,
        }
