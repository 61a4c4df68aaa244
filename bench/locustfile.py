"""Mixed traffic for `make load`: staff browsing, searching and opening members in the web UI (with their points
panel), and an integration creating members and purchase orders through the API (each paid order earns points
through the ledger, under the plan ``bench.load`` creates).

Run by ``python -m bench.load`` (which prepares the data and the servers); not a test.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import re

from locust import HttpUser, between, task

USER, PASSWORD = os.environ.get("LOAD_USER", "bench"), os.environ.get("LOAD_PASSWORD", "bench-pass")
SIZE = int(os.environ.get("LOAD_SIZE", "100000"))
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
MOBILES = itertools.count(int(os.environ.get("LOAD_MOBILE_START", "0")))
SORTS = ["", "-joined_on", "name", "-total_spent", "card_no"]
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class Staff(HttpUser):
    """A front-desk user in the browser (session cookie) who also holds an API token for the integration calls."""

    wait_time = between(0.5, 2.0)

    def on_start(self):
        page = self.client.get("/login/", name="login page").text
        m = CSRF.search(page)
        self.client.post("/login/", data={"username": USER, "password": PASSWORD, "csrf_token": m.group(1) or m.group(2)}, name="login")
        token = self.client.post("/api/v1/security/login", json={"username": USER, "password": PASSWORD, "provider": "db"},
                                 name="api login").json()["access_token"]
        self.api = {"Authorization": f"Bearer {token}"}

    @task(6)
    def browse_list(self):
        sort = random.choice(SORTS)
        self.client.get("/e/membership.member/" + (f"?sort={sort}" if sort else ""), name="browse: member list")

    @task(3)
    def search(self):
        q = random.choice(SURNAMES) + random.choice("伟芳娜秀英敏静丽")
        self.client.get(f"/e/membership.member/?q={q}", name="search: member list ?q=")

    @task(3)
    def open_member(self):
        self.client.get(f"/e/membership.member/{random.randint(1, SIZE)}", name="browse: member detail")

    @task(2)
    def api_list(self):
        self.client.get(f"/api/v1/records/membership.member?limit=50&sort={random.choice(SORTS[1:])}", headers=self.api,
                        name="api: list members")

    @task(2)
    def purchase(self):
        """A paid order through the API: the order is stored and its points are posted to the member's wallet."""
        body = {"member": random.randint(1, SIZE), "kind": "consumption", "amount": f"{random.randint(10, 2000)}.00", "payment_status": "paid",
                "ordered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        with self.client.post("/api/v1/records/membership.order", json=body, headers=self.api, name="points: purchase earns (API)",
                              catch_response=True) as resp:
            if resp.status_code == 409 and resp.json().get("code") == "card_blocked":
                resp.success()  # the seeded member's card is lost or cancelled: the ledger refuses the order, as it must
            elif resp.status_code != 201:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")

    @task(1)
    def points_panel(self):
        self.client.get(f"/membership/points/member/{random.randint(1, SIZE)}/panel", name="points: member's balance and history")

    @task(1)
    def create_member(self):
        n = next(MOBILES)
        body = {"name": random.choice(SURNAMES) + "测试", "mobile": f"166{os.getpid() % 100:02d}{n:06d}"[:11], "joined_on": "2026-11-01"}
        with self.client.post("/api/v1/records/membership.member", json=body, headers=self.api, name="create: member (API)",
                              catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
