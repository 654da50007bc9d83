#!/usr/bin/env python3
"""The dashboard (`/ui`) in a real browser: headless Debian chromium driven
by Selenium (`selenium==4.27.1`, installed by `scripts/test`), against a
`powernode up --simulate-agents` over https and a `powernode ui --file`
over its export. Run by `tests/tests/ui.rs`, which builds the platform
and passes this script its configuration as JSON (first argument):

    url, ca, token, wrong_token, account, expiring_token, expiring_at,
    clusters: {single: {id, name}, ha: {id, name, vip, servers: [...]}},
    seq_before_ha, offline_url, screenshots

Each check is named in the report (the last line of stdout, JSON); the
exit code is non-zero when any failed. Screenshots of every page at
1280x800 (and at phone width, `*-phone.png`) go to `screenshots`.
"""

import json
import sys
import time
from datetime import datetime, timezone

from ui_harness import Failed, Harness, timeout_guard

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By


def retry_stale(fn, tries=4):
    """Runs `fn`, again when the live script replaced what it touched."""
    for i in range(tries):
        try:
            return fn()
        except StaleElementReferenceException:
            if i == tries - 1:
                raise
            time.sleep(0.3)


def login(h, token):
    """Signs in at /ui/login with `token`; stays on the answer."""
    h.go("/ui/login", "login")
    h.wait("form#login input#token[name=token]", "the login form")
    field = h.one("input#token")
    field.clear()
    field.send_keys(token)
    h.one("form#login button[type=submit], form#login input[type=submit]").click()
    time.sleep(0.3)


@timeout_guard
def check_login(h):
    cfg = h.cfg
    # Without a session: the login page.
    h.go("/ui/fleet", "fleet (signed out)")
    h.wait("form#login", "signed out, /ui/fleet leads to the login form")
    h.shoot("login")
    # A wrong token: an alert, still the login form.
    h.allow_refusals("/ui/login")
    login(h, cfg["wrong_token"])
    alert = h.wait("[role=alert]", "a wrong token shows an alert")
    h.one("form#login", "still the login form after a wrong token")
    said = alert.text
    # The token that expires soon: signed in; its session kept for later.
    login(h, cfg["expiring_token"])
    h.wait("table#clusters", "signed in with the expiring token, the fleet")
    h.observed["expiring_session"] = h.driver.get_cookie("pn_ui_session")
    if not h.observed["expiring_session"]:
        raise Failed(f"no pn_ui_session cookie after sign-in: {h.driver.get_cookies()}")
    h.driver.delete_all_cookies()
    # The operator's token.
    login(h, cfg["token"])
    h.wait("table#clusters", "signed in, the fleet")
    if "/ui/fleet" not in h.path():
        raise Failed(f"after sign-in at {h.path()}, not the fleet")
    return f"wrong token: {said!r}"


def check_many_pages(h):
    """Ten live pages in a row each load at once: a page left (and kept in
    the back/forward cache) must not keep its /ui/stream connection, or
    the browser's six connections per host (HTTP/1.1) run out and the
    seventh page stalls."""
    h.driver.set_page_load_timeout(5)
    try:
        for i in range(10):
            started = time.monotonic()
            try:
                h.go(f"/ui/fleet?n={i}", "fleet (page after page)")
            except TimeoutException:
                raise Failed(
                    f"page {i + 1} of 10 did not load within 5 s: the pages left keep their "
                    "/ui/stream open (back/forward cache) until the browser's connections per "
                    "host run out; the script must close its EventSource on `pagehide` (and "
                    "open it again on `pageshow`)"
                ) from None
            h.wait("table#clusters", f"page {i + 1} of 10")
    finally:
        h.driver.set_page_load_timeout(30)
    return f"10 pages, the last in {time.monotonic() - started:.2f} s"


def cluster_row(cid):
    return f"table#clusters tr[data-cluster-id='{cid}']"


@timeout_guard
def check_fleet(h):
    single, ha = h.cfg["clusters"]["single"], h.cfg["clusters"]["ha"]
    h.go("/ui/fleet", "fleet")
    for c in (single, ha):
        row = h.wait(cluster_row(c["id"]), f"the fleet lists {c['name']}")
        for cell in ("name", "status", "endpoint", "nodes", "version", "network"):
            row.find_element(By.CSS_SELECTOR, f"td.{cell}")
        link = row.find_element(By.CSS_SELECTOR, "td.name a")
        if not link.get_attribute("href").endswith(f"/ui/clusters/{c['id']}"):
            raise Failed(f"{c['name']}: name links to {link.get_attribute('href')}")
    nodes = h.one(cluster_row(ha["id"]) + " td.nodes").text
    if "2" not in nodes:
        raise Failed(f"the HA cluster's node count reads {nodes!r}, not 2")
    h.one("input#filter[name=q]", "the fleet's filter")
    h.shoot("fleet")
    # The filter works without JavaScript: ?q= keeps only the match.
    h.go(f"/ui/fleet?q={single['name']}", "fleet filtered")
    h.wait(cluster_row(single["id"]), "the filter keeps the match")
    if h.find(cluster_row(ha["id"])):
        raise Failed(f"?q={single['name']} still lists {ha['name']}")
    return f"{len(h.find('table#clusters tr[data-cluster-id]'))} row(s) after filtering"


@timeout_guard
def check_live_cluster(h):
    """A cluster made through the API shows up on the open page."""
    h.go("/ui/fleet", "fleet (live)")
    h.wait("table#clusters", "the fleet")
    h.driver.execute_script("window.__pn_not_reloaded = true;")
    # Past any refresh the page makes by itself as it starts: what shows
    # the cluster below is a live update.
    time.sleep(1.0)
    net = h.api("system_sdwan_create_network", {"name": "ui-live"})["network"]["id"]
    tmpl = h.api("system_create_template", {"name": "ui-live-1"})["template"]["id"]
    node = h.api(
        "system_create_node",
        {"hostname": "ui-live-1", "node_template_id": tmpl, "memory_mb": 2048},
    )["node"]["id"]
    inst = h.api("system_provision_instance", {"node_id": node})["id"]
    h.api("system_sdwan_attach_peer", {"network_id": net, "node_instance_id": inst})
    h.api("system_assign_module_to_template", {"template_id": tmpl, "module_name": "k3s-server"})

    def created():
        for c in h.api("kubernetes_list_clusters", {})["clusters"]:
            if c.get("network_id") == net:
                return c["id"]
        return None

    cid = h.until("the new cluster in the API", created, timeout=60)
    h.observed["live_cluster"] = cid
    h.wait(cluster_row(cid), "the new cluster appears without reload", timeout=15)
    if not h.driver.execute_script("return window.__pn_not_reloaded === true"):
        raise Failed("the page was reloaded (the marker is gone): not a live update")
    return cid


def approval_row(aid):
    return f"section#waiting tr[data-approval-id='{aid}']"


@timeout_guard
def check_waiting(h):
    """The HA cluster's holder goes silent: its failover waits for approval."""
    ha = h.cfg["clusters"]["ha"]
    vip = h.api("system_sdwan_get_virtual_ip", {"id": ha["vip"]})["virtual_ip"]
    holder = vip["holders"][0]
    h.api("system_terminate_instance", {"id": holder})
    h.go("/ui/approvals", "approvals")
    row = h.wait(
        "section#waiting tr[data-approval-id]",
        "the failover's approval waiting",
        timeout=30,
        reload_every=3,
    )
    aid = row.get_attribute("data-approval-id")
    h.observed["approval"] = aid
    expires = h.one(approval_row(aid) + " td.expires[data-expires-at]", "the expiry countdown")
    at = expires.get_attribute("data-expires-at")
    datetime.fromisoformat(at.replace("Z", "+00:00"))
    h.one(approval_row(aid) + " form.approve button[data-action=approve]", "the approve button")
    h.one(approval_row(aid) + " form.reject textarea[name=reason]", "the reason")
    h.shoot("approvals")
    return f"{aid}, expires {at}"


@timeout_guard
def check_approve(h):
    """The approval made in the UI promotes the VIP; the cluster page shows
    the new holder and generation 2, as the API does."""
    ha = h.cfg["clusters"]["ha"]
    aid = h.observed.get("approval")
    if not aid:
        raise Failed("no approval waiting (see approval_waits)")
    h.go("/ui/approvals", "approvals (approve)")
    h.wait(approval_row(aid), "the approval still waiting")
    retry_stale(lambda: h.one(approval_row(aid) + " form.approve button[data-action=approve]").click())
    time.sleep(0.3)
    h.accept_dialog()
    # The answer is the cluster page (its VIP): wait for it to load whole.
    h.until(
        "the approval's answer loaded",
        lambda: f"/ui/clusters/{ha['id']}" in h.driver.current_url
        and h.driver.execute_script("return document.readyState") == "complete",
        timeout=15,
    )

    # The API says who holds it now; the cluster page says the same.
    vip = h.until(
        "generation 2 in the API",
        lambda: (v := h.api("system_sdwan_get_virtual_ip", {"id": ha["vip"]})["virtual_ip"])
        and v["generation"] == 2
        and v,
        timeout=15,
    )
    new_holder = vip["holders"][0]
    peer = vip.get("holder_peer_id") or ""
    h.observed["api_holder"], h.observed["api_peer"] = new_holder, peer
    # The approval answers with the cluster page (or the queue): the VIP
    # follows live there.
    if not h.path().startswith(f"/ui/clusters/{ha['id']}"):
        h.go(f"/ui/clusters/{ha['id']}", "cluster")
    h.page = "cluster"
    h.wait("section#vip", "the cluster's VIP section")
    gen = h.wait_text("section#vip [data-field=generation]", ["2"], "the new generation")
    holder_text = h.one("section#vip [data-field=holder]").text
    if new_holder not in holder_text and (not peer or peer not in holder_text):
        raise Failed(f"the holder reads {holder_text!r}; the API says {new_holder} (peer {peer})")
    h.observed["ui_holder"], h.observed["ui_generation"] = holder_text, gen
    for css in ("section#nodes tr[data-node-id] td.role", "section#vip [data-field=silence]",
                "section#vip [data-field=datapath]", "a#kubeconfig",
                "form#decommission input[name=confirm_name]"):
        h.one(css, f"the cluster page's {css}")
    h.shoot("cluster")
    # The VIP in view (the README's picture of a failover).
    h.driver.execute_script("document.getElementById('vip').scrollIntoView()")
    h.driver.save_screenshot(f"{h.out}/cluster-vip.png")
    h.driver.execute_script("window.scrollTo(0, 0)")
    # Decided: the approval is in the decided list.
    h.go("/ui/approvals", "approvals (decided)")
    status = h.one(f"section#decided tr[data-approval-id='{aid}'] td.status", "the decided approval").text
    return f"{aid} approved: holder {holder_text!r}, generation {gen!r}, decided {status!r}"


@timeout_guard
def check_reject(h):
    """Reject with an empty reason: the browser keeps the form (HTML
    `required`), a forged post is refused, nothing is decided; so are posts
    without this session's CSRF token."""
    aid = h.observed.get("approval")
    if not aid:
        raise Failed("no approval waiting (see approval_waits)")
    h.go("/ui/approvals", "approvals (reject)")
    h.wait(approval_row(aid), "the approval waiting")
    reason_css = approval_row(aid) + " form.reject textarea[name=reason]"
    if h.one(reason_css).get_attribute("required") is None:
        raise Failed("the reject reason is not `required`")
    # A reason being typed survives the live updates of the page.
    typed = "planned outage"
    retry_stale(lambda: h.one(reason_css).send_keys(typed))
    time.sleep(1.5)
    kept = h.one(reason_css).get_attribute("value")
    if kept != typed:
        raise Failed(f"the typed reason became {kept!r} while the page updated itself")
    # Empty: the browser does not submit (HTML `required`).
    before = h.driver.current_url
    h.driver.execute_script("window.__pn_not_reloaded = true;")

    def click_empty():
        h.one(reason_css).clear()
        h.one(approval_row(aid) + " form.reject button[data-action=reject]").click()

    retry_stale(click_empty)
    time.sleep(0.8)
    h.accept_dialog()
    if h.driver.current_url != before or not h.driver.execute_script(
        "return window.__pn_not_reloaded === true"
    ):
        raise Failed(f"an empty reason submitted the reject form (now at {h.path()})")
    missing = retry_stale(
        lambda: h.driver.execute_script(
            "return arguments[0].validity.valueMissing", h.one(reason_css)
        )
    )
    if not missing:
        raise Failed("the empty reason is not marked missing")
    csrf = h.one(approval_row(aid) + " form.reject input[name=csrf]").get_attribute("value")
    h.allow_refusals(f"/ui/approvals/{aid}/")
    forged = {}
    status, body = h.fetch(f"/ui/approvals/{aid}/reject", {"csrf": csrf, "reason": ""})
    forged["empty_reason"] = status
    if status == 0 or status < 400 or 'role="alert"' not in body:
        raise Failed(f"a post with an empty reason answered {status}: {body[:400]}")
    status, body = h.fetch(f"/ui/approvals/{aid}/approve", {})
    forged["no_csrf"] = status
    if status != 403 or "csrf_failed" not in body:
        raise Failed(f"an approve without CSRF token answered {status}: {body[:400]}")
    status, body = h.fetch(f"/ui/approvals/{aid}/approve", {"csrf": "0" * 48})
    forged["wrong_csrf"] = status
    if status != 403 or "csrf_failed" not in body:
        raise Failed(f"an approve with another CSRF token answered {status}: {body[:400]}")
    waiting = h.api("system_list_approvals", {})
    if not any(a["id"] == aid for a in waiting.get("approvals", [])):
        raise Failed(f"after the refused posts {aid} is no longer waiting: {waiting}")
    return f"forged posts answered {forged}"


@timeout_guard
def check_travel(h):
    single, ha = h.cfg["clusters"]["single"], h.cfg["clusters"]["ha"]
    seq = h.cfg["seq_before_ha"]
    h.go(f"/ui/travel?seq={seq}", "travel")
    h.wait(cluster_row(single["id"]), f"at seq {seq}, the first cluster")
    if h.find(cluster_row(ha["id"])):
        raise Failed(f"at seq {seq} the fleet already lists {ha['name']}, made after it")
    head = int(h.one("#head[data-seq]", "the live head marker").get_attribute("data-seq"))
    if head <= seq:
        raise Failed(f"the live head {head} is not after seq {seq}")
    h.one("form#travel input[name=seq][type=number]", "the seq box")
    h.one("form#travel input[type=range]#seq-slider", "the slider")
    h.shoot("travel")
    # Beyond the head: a clear refusal, nothing else.
    h.allow_refusals("/ui/travel")
    h.go(f"/ui/travel?seq={head + 1000000}", "travel (beyond head)")
    beyond = h.wait("[role=alert]", "a seq beyond the head is refused").text
    # What changed between seq and the head.
    h.go(f"/ui/travel?from={seq}&to={head}", "diff")
    h.wait("section#changes tr[data-seq]", f"changes between {seq} and {head}")
    h.one("form#diff input[name=from]", "the diff form")
    h.shoot("diff")
    rows = len(h.find("section#changes tr[data-seq]"))
    return f"head {head}; beyond: {beyond!r}; {rows} change(s)"


@timeout_guard
def check_explain(h):
    vip = h.cfg["clusters"]["ha"]["vip"]
    h.go(f"/ui/explain?id={vip}", "explain")
    h.wait("svg#graph g.node", "the causal graph")
    approvals = h.find("svg#graph g.node[data-kind*=approv]")
    if not approvals:
        kinds = [g.get_attribute("data-kind") for g in h.find("svg#graph g.node")]
        raise Failed(f"no approval among the graph's events: {kinds}")
    for g in h.find("svg#graph g.node")[:50]:
        seq = g.get_attribute("data-seq")
        if not g.find_elements(By.CSS_SELECTOR, "title"):
            raise Failed(f"node {seq} has no <title>")
        links = [
            a.get_dom_attribute("href") or a.get_dom_attribute("xlink:href")
            for a in g.find_elements(By.CSS_SELECTOR, "a")
        ]
        if not any(l and l.endswith(f"/ui/events/{seq}") for l in links):
            raise Failed(f"node {seq} does not link to its event: {links}")
    edges = len(h.find("svg#graph path.edge[data-from][data-to]"))
    why = h.one("p#why", "the why sentence").text
    if not why.strip():
        raise Failed("the why sentence is empty")
    h.shoot("explain")
    h.allow_refusals("/ui/explain")
    h.go("/ui/explain?id=no-such-thing-42", "explain (unknown)")
    unknown = h.wait("[role=alert]", "an unknown id is refused").text
    return f"{len(approvals)} approval node(s), {edges} edge(s); why: {why!r}; unknown: {unknown!r}"


@timeout_guard
def check_events(h):
    h.go("/ui/events", "events")
    row = h.wait("table#events tr[data-seq] td.kind", "the event tail")
    kind = row.text.strip()
    pause = h.one("button#pause[aria-pressed]", "the pause button")
    was = pause.get_attribute("aria-pressed")
    pause.click()
    time.sleep(0.2)
    now = h.one("button#pause").get_attribute("aria-pressed")
    if now == was:
        raise Failed(f"pause did not toggle aria-pressed ({was})")
    h.one("form#event-filters input[name=kind_prefix]", "the kind filter")
    h.shoot("events")
    prefix = kind.split(".")[0] + "."
    h.go(f"/ui/events?kind_prefix={prefix}", "events (filtered)")
    h.wait("table#events tr[data-seq]", f"events of kind {prefix}*")
    kinds = [k.text.strip() for k in h.find("table#events tr[data-seq] td.kind")]
    if not all(k.startswith(prefix) for k in kinds):
        raise Failed(f"kind_prefix={prefix} shows {kinds}")
    link = h.one("table#events tr[data-seq] a[href*='/ui/events/']", "an event's link")
    href = link.get_attribute("href")
    h.go(href.split("/", 3)[3] and "/" + href.split("/", 3)[3], "event")
    h.wait("section#envelope #payload", "the event's envelope")
    actor = h.one("section#envelope [data-field=actor]", "the actor").text
    h.shoot("event")
    return f"{len(kinds)} {prefix}* event(s); actor {actor!r}"


@timeout_guard
def check_skills_agents(h):
    h.go("/ui/skills", "skills")
    h.wait("main h1", "the skills page")
    h.shoot("skills")
    h.go("/ui/agents", "agents")
    h.wait("table#agents", "the agents table")
    h.shoot("agents")
    return f"{len(h.find('table#agents tbody tr'))} agent row(s)"


@timeout_guard
def check_offline(h):
    base = h.cfg.get("offline_url")
    if not base:
        raise Failed(f"no offline dashboard: {h.cfg.get('offline_error')}")
    single = h.cfg["clusters"]["single"]
    acct = h.cfg["account"]
    h.go(f"/ui/fleet?account={acct}", "offline", base=base)
    h.wait("#offline", "the offline banner")
    h.wait(cluster_row(single["id"]), "the export's cluster")
    h.shoot("offline")
    h.go(f"/ui/clusters/{single['id']}?account={acct}", "offline cluster", base=base)
    field = h.wait("form#decommission input[name=confirm_name]", "the decommission form")
    field.send_keys(single["name"])
    h.allow_refusals(base)
    h.one("form#decommission button[type=submit], form#decommission input[type=submit]").click()
    time.sleep(0.3)
    h.accept_dialog()
    refusal = h.wait("[role=alert][data-code=read_only]", "the action is refused read-only")
    return refusal.text


@timeout_guard
def check_expired(h):
    """The expiring token's session, once the token expired: the login page
    with the reason."""
    cookie = h.observed.get("expiring_session")
    if not cookie:
        raise Failed("no session of the expiring token (the login check failed)")
    at = datetime.fromisoformat(h.cfg["expiring_at"].replace("Z", "+00:00"))
    wait = (at - datetime.now(timezone.utc)).total_seconds() + 1.0
    if wait > 0:
        time.sleep(wait)
    h.go("/ui/login", "login (expired)")
    h.driver.delete_all_cookies()
    h.driver.add_cookie({k: cookie[k] for k in ("name", "value", "path") if k in cookie})
    h.allow_refusals("/ui/")
    h.go("/ui/fleet", "fleet (expired token)")
    h.wait("form#login", "an expired token leads back to the login form")
    reason = h.one("[role=alert]", "the reason").text
    if "expire" not in reason.lower():
        raise Failed(f"the login page's reason does not say expired: {reason!r}")
    return reason


def main():
    cfg = json.loads(sys.argv[1])
    started = time.monotonic()
    h = Harness(cfg)
    try:
        h.check("login", lambda: check_login(h))
        h.check("many_pages_in_a_row", lambda: check_many_pages(h))
        h.check("fleet_lists_clusters", lambda: check_fleet(h))
        h.check("new_cluster_without_reload", lambda: check_live_cluster(h))
        h.check("approval_waits", lambda: check_waiting(h))
        h.check("reject_needs_reason", lambda: check_reject(h))
        h.check("approval_promotes_vip", lambda: check_approve(h))
        h.check("time_travel_early_seq", lambda: check_travel(h))
        h.check("explain_names_approval", lambda: check_explain(h))
        h.check("events_and_envelope", lambda: check_events(h))
        h.check("skills_and_agents", lambda: check_skills_agents(h))
        h.check("offline_refuses_action", lambda: check_offline(h))
        h.check("expired_token_to_login", lambda: check_expired(h))
    finally:
        h.drain_console()
        h.quit()
    errors = [c for c in h.console if not c["expected"]]
    h.checks["no_js_errors"] = {
        "ok": not errors,
        "detail": json.dumps(errors)[:3000] if errors else f"{len(h.console)} expected refusal line(s)",
    }
    narrow = {k: v for k, v in h.phone.items() if not v["ok"]}
    h.checks["phone_width"] = {
        "ok": bool(h.phone) and not narrow,
        "detail": json.dumps(narrow) if narrow else f"{len(h.phone)} page(s) fit 390 px",
    }
    report = h.report(time.monotonic() - started)
    failed = [k for k, v in report["checks"].items() if not v["ok"]]
    for k in failed:
        print(f"FAILED {k}: {report['checks'][k]['detail']}", file=sys.stderr)
    print(json.dumps(report))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
