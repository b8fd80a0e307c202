"""Runs Okta's official Python management SDK (the `okta` 3.x package, unmodified) against
okta-sim: users, groups, apps, admin roles, event hooks (with a local receiver), paging and a
429 the SDK must wait out and retry.

Why it exists: okta-sim's own tests were written by the same people as the simulator; a client
nobody on this project wrote finds the places where the simulator differs from Okta (the auth
header format, `_links`, event hook fields). Every check prints PASS or FAIL with the reason;
the exit status is 1 when any check failed, 2 when the SDK is not installed.

Usage: python3 okta_sdk_check.py BASE_URL   (okta-sim's default seed and tokens)
"""

import asyncio
import json
import os
import sys
import time
import traceback

try:
    import aiohttp
    from aiohttp import web
    from okta.client import Client as OktaClient
    from okta import models
    from okta.pagination import PaginationHelper
except ImportError as e:  # the Rust test turns this into a clear failure
    print(f"SDK-MISSING: {e} (install it with: pip install 'okta>=3,<4')")
    sys.exit(2)

SUPER = "sim-super-admin-token"
ALICE = "00u1alice00000000001"
BOB = "00u1bob0000000000002"
DAVE = "00u1dave000000000004"
ENGINEERING = "00g1engineering00004"
PAYROLL = "0oa1payroll000000001"


class CheckFailed(Exception):
    pass


def need(cond, what):
    if not cond:
        raise CheckFailed(what)


def ok(triple, what):
    """An SDK call answers (result, response, error); fail the check on an error."""
    if len(triple) == 2:
        result, err = triple
    else:
        result, _resp, err = triple
    if err is not None:
        raise CheckFailed(f"{what}: {err}")
    return triple


def profile(model):
    return model.to_dict().get("profile") or {}


def links(model):
    d = model.to_dict() if hasattr(model, "to_dict") else dict(model)
    return d.get("_links") or {}


class Sim:
    """The simulator's control API (not part of Okta; used to arrange and observe)."""

    def __init__(self, base, http):
        self.base = base
        self.http = http

    async def get(self, path):
        async with self.http.get(self.base + "/_sim" + path) as r:
            return await r.json()

    async def put(self, path, body):
        async with self.http.put(self.base + "/_sim" + path, json=body) as r:
            if r.status >= 300:
                raise CheckFailed(f"control PUT {path}: {r.status} {await r.text()}")

    async def okta_get(self, path):
        """A management API GET outside the SDK, to see fields its models drop."""
        async with self.http.get(self.base + path, headers={"Authorization": f"SSWS {SUPER}"}) as r:
            if r.status != 200:
                raise CheckFailed(f"GET {path}: {r.status}")
            return await r.json()

    async def reset_counters(self):
        async with self.http.delete(self.base + "/_sim/counters") as r:
            await r.read()


class Receiver:
    """A local event hook endpoint: answers Okta's verification GET and records deliveries."""

    def __init__(self):
        self.requests = []
        self.secret = "hook-secret-value"

    async def handle(self, request):
        body = await request.read()
        # Header names arrive lower-cased (HTTP/1.1 names are case-insensitive): keep the
        # case-insensitive multidict rather than a plain dict.
        self.requests.append(
            {"method": request.method, "headers": request.headers.copy(), "body": body}
        )
        if request.method == "GET":
            challenge = request.headers.get("x-okta-verification-challenge", "")
            return web.json_response({"verification": challenge})
        return web.Response(status=204)

    async def start(self):
        app = web.Application()
        app.router.add_route("*", "/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self):
        await self.runner.cleanup()


async def check_users(c, sim):
    user, _, _ = ok(await c.get_user(ALICE), "get_user")
    need(user.profile.login == "alice@example.com", f"login {user.profile.login}")
    l = links(user)
    for rel in ("self", "schema", "type", "suspend", "deactivate"):
        need(rel in l, f"ACTIVE user _links lacks {rel}: {sorted(l)}")
    need("activate" not in l, "an ACTIVE user offers activate")
    by_login, _, _ = ok(await c.get_user("bob@example.com"), "get_user by login")
    need(by_login.id == BOB, "get_user by login returned someone else")
    body = models.CreateUserRequest.from_dict(
        {
            "profile": {
                "firstName": "Sdk",
                "lastName": "Person",
                "email": "sdk.person@example.com",
                "login": "sdk.person@example.com",
            }
        }
    )
    created, _, _ = ok(await c.create_user(body, activate=False), "create_user")
    need(created.status.value == "STAGED", f"created status {created.status}")
    need("activate" in links(created), f"STAGED user lacks activate: {sorted(links(created))}")
    ok(await c.activate_user(created.id, send_email=False), "activate_user")
    groups, _, _ = ok(await c.list_user_groups(created.id), "list_user_groups")
    need(any(profile(g).get("name") == "Everyone" for g in groups), "new user not in Everyone")
    ok(await c.deactivate_user(created.id), "deactivate_user")
    again, _, _ = ok(await c.get_user(created.id), "get deactivated user")
    need(again.status.value == "DEPROVISIONED", f"status after deactivate {again.status}")
    need("activate" in links(again) and "suspend" not in links(again),
         f"DEPROVISIONED links {sorted(links(again))}")
    ok(await c.delete_user(created.id), "delete_user")
    state = await sim.get("/state")
    need(all(u["id"] != created.id for u in state["users"]), "deleted user still there")


async def check_groups(c, sim):
    group, _, _ = ok(await c.get_group(ENGINEERING), "get_group")
    l = links(group)
    logos = l.get("logo") or []
    need(len(logos) == 2 and all(x.get("href", "").endswith(".png") for x in logos),
         f"group _links.logo {logos}")
    body = models.AddGroupRequest.from_dict({"profile": {"name": "sdk-group", "description": "x"}})
    g, _, _ = ok(await c.add_group(body), "add_group")
    ok(await c.assign_user_to_group(g.id, DAVE), "assign_user_to_group")
    members, _, _ = ok(await c.list_group_users(g.id), "list_group_users")
    need([m.id for m in members] == [DAVE], f"members {[m.id for m in members]}")
    ok(await c.unassign_user_from_group(g.id, DAVE), "unassign_user_from_group")
    members, _, _ = ok(await c.list_group_users(g.id), "list_group_users after removal")
    need(members == [], "member still there")
    found, _, _ = ok(await c.list_groups(q="sdk-"), "list_groups q")
    need([x.id for x in found] == [g.id], "list_groups q= did not find the new group")
    ok(await c.delete_group(g.id), "delete_group")


async def check_apps(c, sim):
    app, _, _ = ok(await c.get_application(PAYROLL), "get_application")
    need(app.label == "payroll", f"app label {app.label}")
    body = models.AppUserAssignRequest.from_dict({"id": ALICE, "scope": "USER"})
    au, _, _ = ok(await c.assign_user_to_application(PAYROLL, body), "assign_user_to_application")
    need(au.id == ALICE and au.scope == "USER", f"app user {au.id} {au.scope}")
    got, _, _ = ok(await c.get_application_user(PAYROLL, ALICE), "get_application_user")
    need(got.id == ALICE, "get_application_user")
    users, _, _ = ok(await c.list_application_users(PAYROLL), "list_application_users")
    need(ALICE in [u.id for u in users], "assigned user not listed")
    ok(await c.unassign_user_from_application(PAYROLL, ALICE), "unassign_user_from_application")
    state = await sim.get("/state")
    payroll = next(a for a in state["apps"] if a["id"] == PAYROLL)
    need(ALICE not in payroll["assignments"], "assignment still there")


async def check_roles(c, sim):
    body = models.AssignRoleToUserRequest.from_dict({"type": "USER_ADMIN"})
    role, _, _ = ok(await c.assign_role_to_user(BOB, body), "assign_role_to_user")
    rid = role.actual_instance.id
    roles, _, _ = ok(await c.list_assigned_roles_for_user(BOB), "list_assigned_roles_for_user")
    need(any(r.actual_instance.id == rid for r in roles), "role not listed")
    one, _, _ = ok(await c.get_user_assigned_role(BOB, rid), "get_user_assigned_role")
    need(one.actual_instance.type.value == "USER_ADMIN", "role type")
    dup = await c.assign_role_to_user(BOB, body)
    need(dup[-1] is not None, "a duplicate role assignment succeeded")
    ok(await c.unassign_role_from_user(BOB, rid), "unassign_role_from_user")
    roles, _, _ = ok(await c.list_assigned_roles_for_user(BOB), "list roles after removal")
    need(all(r.actual_instance.id != rid for r in roles), "role still listed")


async def wait_for(pred, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def check_event_hooks(c, sim, receiver):
    body = models.EventHook.from_dict(
        {
            "name": "sdk hook",
            "events": {"type": "EVENT_TYPE", "items": ["user.lifecycle.create"]},
            "channel": {
                "type": "HTTP",
                "version": "1.0.0",
                "config": {
                    "uri": receiver.url,
                    "headers": [{"key": "X-Test-Header", "value": "Test header value"}],
                    "authScheme": {"type": "HEADER", "key": "Authorization", "value": receiver.secret},
                },
            },
        }
    )
    hook, _, _ = ok(await c.create_event_hook(body), "create_event_hook")
    need(hook.status == "ACTIVE", f"new hook status {hook.status}")
    need(hook.created_by == "00u1jitbroker0000005", f"createdBy {hook.created_by}")
    hs = hook.channel.config.headers or []
    need([(h.key, h.value) for h in hs] == [("X-Test-Header", "Test header value")],
         f"channel.config.headers echoed as {hs}")
    need(hook.channel.config.auth_scheme.value is None, "the hook secret was echoed")
    got, _, _ = ok(await c.get_event_hook(hook.id), "get_event_hook")
    need(got.created_by == hook.created_by and got.channel.config.headers, "get_event_hook fields")
    listed, _, _ = ok(await c.list_event_hooks(), "list_event_hooks")
    need(hook.id in [h.id for h in listed], "hook not listed")
    verified, _, _ = ok(await c.verify_event_hook(hook.id), "verify_event_hook")
    need(verified.verification_status.value == "VERIFIED", "not verified")
    gets = [r for r in receiver.requests if r["method"] == "GET"]
    need(gets and gets[-1]["headers"].get("X-Test-Header") == "Test header value",
         "verification GET lacks the custom header")
    need(gets[-1]["headers"].get("Authorization") == receiver.secret,
         "verification GET lacks the auth header")
    # A change the hook subscribed to: the delivery carries both headers.
    new = models.CreateUserRequest.from_dict(
        {"profile": {"firstName": "H", "lastName": "K", "email": "hk@example.com",
                     "login": "hk@example.com"}}
    )
    ok(await c.create_user(new, activate=False), "create_user for the hook")
    posts = lambda: [r for r in receiver.requests if r["method"] == "POST"]
    need(await wait_for(lambda: posts()), "no delivery arrived")
    p = posts()[0]
    need(p["headers"].get("X-Test-Header") == "Test header value", "delivery lacks custom header")
    need(p["headers"].get("Authorization") == receiver.secret, "delivery lacks auth header")
    events = json.loads(p["body"])["data"]["events"]
    need(events[0]["eventType"] == "user.lifecycle.create", f"delivered {events[0]['eventType']}")
    # Okta deletes only INACTIVE hooks.
    refused = await c.delete_event_hook(hook.id)
    need(refused[-1] is not None, "deleting an ACTIVE hook succeeded")
    deact, _, _ = ok(await c.deactivate_event_hook(hook.id), "deactivate_event_hook")
    need(deact.status == "INACTIVE", "not deactivated")
    need("deactivate" not in links(deact), f"INACTIVE hook links {sorted(links(deact))}")
    # The SDK's EventHookLinks model keeps only self/verify/deactivate: read the raw body.
    raw = await sim.okta_get(f"/api/v1/eventHooks/{hook.id}")
    need(sorted(raw["_links"]) == ["activate", "delete", "self"],
         f"INACTIVE hook raw links {sorted(raw['_links'])}")
    ok(await c.delete_event_hook(hook.id), "delete_event_hook")
    gone = await c.get_event_hook(hook.id)
    need(gone[-1] is not None, "deleted hook still readable")


def next_cursor(resp):
    """The `after` cursor of the `rel="next"` Link header, read with the SDK's own helper.

    Okta sends one `Link` header line per relation (`self` first, as recorded); the helper reads
    one header value, so each line is given to it in turn.
    """
    headers = resp.headers
    # The SDK hands back either the multidict or a plain dict of the headers.
    values = headers.getall("Link", []) if hasattr(headers, "getall") else [headers.get("Link") or ""]
    for value in values:
        cursor = PaginationHelper.extract_next_cursor({"Link": value})
        if cursor:
            return cursor
    return None


async def page_all(list_call, what):
    items, resp, err = await list_call(None)
    ok((items, resp, err), what)
    pages = 1
    cursor = next_cursor(resp)
    while cursor:
        more, resp, err = await list_call(cursor)
        ok((more, resp, err), f"{what} page {pages + 1}")
        items += more
        pages += 1
        cursor = next_cursor(resp)
    return items, pages


async def check_paging(c, sim):
    users, pages = await page_all(lambda after: c.list_users(limit=2, after=after), "list_users")
    state = await sim.get("/state")
    want = sorted(u["id"] for u in state["users"] if u["status"] != "DEPROVISIONED")
    need(sorted(u.id for u in users) == want, f"paged users {len(users)} != {len(want)}")
    need(pages >= 3, f"only {pages} pages at limit=2")
    apps, _ = await page_all(
        lambda after: c.list_applications(limit=1, after=after), "list_applications"
    )
    need(len(apps) == len(state["apps"]), f"paged apps {len(apps)} != {len(state['apps'])}")
    members, _ = await page_all(
        lambda after: c.list_group_users(ENGINEERING, limit=1, after=after), "list_group_users"
    )
    need(len(members) == 4, f"paged engineering members {len(members)} != 4")


async def check_rate_limit(c, sim):
    route = "GET /api/v1/groups/{groupId}"
    await sim.put("/faults", {"routes": {route: {"force_429_next": 1}}})
    await sim.reset_counters()
    try:
        started = time.monotonic()
        g, _, _ = ok(await c.get_group(ENGINEERING), "get_group after a 429")
        need(g.id == ENGINEERING, "wrong group")
        counters = await sim.get("/counters")
        need(counters["requests"].get(route) == 2,
             f"expected the 429 and one retry, saw {counters['requests'].get(route)}")
        # The SDK waits X-Rate-Limit-Reset - Date + 1 s before retrying.
        need(time.monotonic() - started >= 1.0, "the SDK retried without waiting")
    finally:
        await sim.put("/faults", {})


async def check_auth_header(c, sim, base, http):
    # Whatever spacing the SDK uses, both forms real Okta accepts must work.
    for header in (f"SSWS {SUPER}", f"SSWS{SUPER}"):
        async with http.get(base + f"/api/v1/users/{ALICE}",
                            headers={"Authorization": header}) as r:
            need(r.status == 200, f"{header.split(SUPER)[0]!r}<token> answered {r.status}")


async def main():
    base = sys.argv[1].rstrip("/")
    client = OktaClient({"orgUrl": base, "token": SUPER, "rateLimit": {"maxRetries": 2}})
    receiver = Receiver()
    await receiver.start()
    failures = 0
    async with aiohttp.ClientSession() as http:
        sim = Sim(base, http)
        checks = [
            ("auth header", lambda: check_auth_header(client, sim, base, http)),
            ("users", lambda: check_users(client, sim)),
            ("groups", lambda: check_groups(client, sim)),
            ("apps", lambda: check_apps(client, sim)),
            ("roles", lambda: check_roles(client, sim)),
            ("event hooks", lambda: check_event_hooks(client, sim, receiver)),
            ("paging", lambda: check_paging(client, sim)),
            ("rate limit 429", lambda: check_rate_limit(client, sim)),
        ]
        for name, run in checks:
            try:
                await run()
                print(f"PASS {name}", flush=True)
            except CheckFailed as e:
                failures += 1
                print(f"FAIL {name}: {e}", flush=True)
            except Exception as e:  # an SDK exception is a failure of the check, not a crash
                failures += 1
                last = traceback.format_exc().strip().splitlines()[-1]
                print(f"FAIL {name}: {type(e).__name__}: {last}", flush=True)
    await receiver.stop()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    # The SDK reads OKTA_* variables and okta.yaml files; the caller clears those.
    os.environ.setdefault("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")
    asyncio.run(main())
