"""Drives powernode's MCP server with the official MCP Python SDK.

Usage: python3 mcp_session.py '<json config>' where the config names the
transport ("stdio": runs `powernode mcp`; "http": `/mcp` with a bearer
header), the API url, the operator token of the account under test
(`token`), another account's token (`other_token`), two active clusters of
the account (`clusters`), the powernode binary (`bin`, stdio) and the
confirmation TTL in seconds the server runs with (`ttl_secs`).

It asserts as it goes and prints one JSON summary line on stdout, which the
Rust test (tests/tests/mcp.rs) checks too.
"""

import asyncio
import json
import sys
from contextlib import asynccontextmanager

import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CFG = json.loads(sys.argv[1])
TRANSPORT = CFG["transport"]
DECOMMISSION = "kubernetes_decommission_cluster"


@asynccontextmanager
async def session(token, elicitation_callback=None):
    """An initialized client session as `token`, over the configured transport."""
    kwargs = {}
    if elicitation_callback is not None:
        kwargs["elicitation_callback"] = elicitation_callback
    if TRANSPORT == "stdio":
        params = StdioServerParameters(
            command=CFG["bin"],
            args=["mcp", "--url", CFG["url"], "--token", token,
                  "--confirmation-ttl", f"{CFG['ttl_secs']}s"],
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, **kwargs) as s:
                await s.initialize()
                yield s
    else:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with client:
            async with streamable_http_client(CFG["url"] + "/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write, **kwargs) as s:
                    await s.initialize()
                    yield s


async def call(s, tool, args):
    """Calls a tool; answers (is_error, structured content)."""
    r = await s.call_tool(tool, args)
    data = r.structured_content
    if data is None and r.content:
        data = json.loads(r.content[0].text)
    return bool(r.is_error), data


async def ok(s, tool, args):
    err, data = await call(s, tool, args)
    assert not err, f"{tool}({args}) failed: {data}"
    return data


async def refused(s, tool, args, code):
    err, data = await call(s, tool, args)
    assert err, f"{tool}({args}) was not refused: {data}"
    assert data["code"] == code, f"{tool}({args}): expected {code}, got {data}"
    assert data["message"], data
    return data


async def status(s, cluster_id):
    return (await ok(s, "kubernetes_get_cluster", {"id": cluster_id}))["cluster"]["status"]


async def main():
    summary = {"transport": TRANSPORT}
    c1, c2 = CFG["clusters"]
    async with session(CFG["token"]) as s:
        # Every action is a tool, annotated from its effect.
        tools = (await s.list_tools()).tools
        by_name = {t.name: t for t in tools}
        summary["tools"] = sorted(by_name)
        d = by_name[DECOMMISSION]
        assert d.annotations.destructive_hint is True and d.annotations.read_only_hint is False, d
        assert "confirmation_id" in d.input_schema["properties"], d.input_schema
        lc = by_name["kubernetes_list_clusters"]
        assert lc.annotations.read_only_hint is True and lc.annotations.destructive_hint is False, lc
        cn = by_name["system_sdwan_create_network"]
        assert cn.annotations.read_only_hint is False and cn.annotations.destructive_hint is False, cn
        for t in tools:
            assert t.input_schema.get("type") == "object", t
            assert "$defs" not in json.dumps(t.input_schema), t.name
        summary["annotations"] = {
            name: {"read_only": by_name[name].annotations.read_only_hint,
                   "destructive": by_name[name].annotations.destructive_hint}
            for name in (DECOMMISSION, "kubernetes_list_clusters", "system_sdwan_create_network",
                         "system_sdwan_failover_virtual_ip", "system_terminate_instance")
        }

        # The tutorial's reads.
        clusters = await ok(s, "kubernetes_list_clusters", {})
        ids = [c["id"] for c in clusters["clusters"]]
        assert c1 in ids and c2 in ids, clusters
        got = await ok(s, "kubernetes_get_cluster", {"id": c1})
        name1 = got["cluster"]["name"]
        nodes = await ok(s, "kubernetes_list_nodes", {"cluster_id": c1})
        assert len(nodes["nodes"]) >= 1, nodes
        vip = await ok(s, "system_sdwan_get_virtual_ip", {"cluster_id": c1})
        assert vip["virtual_ip"]["cluster_id"] == c1, vip
        summary["reads"] = {"clusters": len(ids), "nodes": len(nodes["nodes"]), "vip": vip["virtual_ip"]["vip"]}

        # A write.
        net = await ok(s, "system_sdwan_create_network", {"name": f"mcp-{TRANSPORT}"})
        summary["network_id"] = net["network"]["id"]
        await refused(s, "kubernetes_get_cluster", {"id": "cluster-nope"}, "not_found")

        # Decommission through the confirmation.
        first = await ok(s, DECOMMISSION, {"cluster_id": c1})
        assert first["status"] == "request_confirmation", first
        assert first["expires_in_secs"] == CFG["ttl_secs"], first
        assert name1 in first["summary"] and c1 in first["summary"], first
        id1 = first["confirmation_id"]
        other = await ok(s, DECOMMISSION, {"cluster_id": c2})
        await refused(s, DECOMMISSION, {"cluster_id": c1, "confirmation_id": other["confirmation_id"]},
                      "confirmation_for_another_object")
        await refused(s, DECOMMISSION, {"cluster_id": c1, "confirmation_id": "cf-00000000"},
                      "confirmation_unknown")
        await asyncio.sleep(CFG["ttl_secs"] + 1)
        await refused(s, DECOMMISSION, {"cluster_id": c1, "confirmation_id": id1}, "confirmation_expired")
        assert await status(s, c1) == "active"
        fresh = (await ok(s, DECOMMISSION, {"cluster_id": c1}))["confirmation_id"]

        async with session(CFG["other_token"]) as o:
            # Another account's token: this account's cluster is not found,
            # and this token's confirmation id confirms nothing for it.
            await refused(o, "kubernetes_get_cluster", {"id": c1}, "not_found")
            # Over HTTP both sessions share the API's store; over stdio each
            # `powernode mcp` has its own, so the id is unknown there.
            code = "confirmation_of_another_principal" if TRANSPORT == "http" else "confirmation_unknown"
            await refused(o, DECOMMISSION, {"cluster_id": c1, "confirmation_id": fresh}, code)
            summary["other_principal"] = code

        done = await ok(s, DECOMMISSION, {"cluster_id": c1, "confirmation_id": fresh})
        assert done["cluster"]["status"] == "decommissioned", done
        assert await status(s, c1) == "decommissioned"
        # Single use.
        await refused(s, DECOMMISSION, {"cluster_id": c1, "confirmation_id": fresh}, "confirmation_unknown")
        summary["decommissioned_by_confirmation"] = c1

    # Elicitation: the human types the cluster's name back.
    typed = {"answer": None, "messages": []}

    async def elicit(context, params):
        typed["messages"].append(params.message)
        if typed["answer"] is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"name": typed["answer"]})

    async with session(CFG["token"], elicit) as s:
        name2 = (await ok(s, "kubernetes_get_cluster", {"id": c2}))["cluster"]["name"]
        await refused(s, DECOMMISSION, {"cluster_id": c2}, "confirmation_declined")
        typed["answer"] = name2 + "-typo"
        await refused(s, DECOMMISSION, {"cluster_id": c2}, "confirmation_mismatch")
        assert await status(s, c2) == "active"
        typed["answer"] = name2
        done = await ok(s, DECOMMISSION, {"cluster_id": c2})
        assert await status(s, c2) == "decommissioned", done
        assert all(name2 in m for m in typed["messages"]), typed
        summary["elicitations"] = len(typed["messages"])
        summary["decommissioned_by_elicitation"] = c2

        # The audit: every call above is a system.mcp.tool_called event.
        ev = await ok(s, "recent_events", {"kind_prefix": "system.mcp.", "limit": 500})
        audit = [e["payload"] for e in ev["events"] if e["payload"]["transport"] == TRANSPORT]
        outcomes = sorted({a["outcome"] for a in audit if a["tool"] == DECOMMISSION})
        summary["audit_outcomes"] = outcomes
        summary["audit_events"] = len(audit)
        for a in audit:
            assert "args" not in a and "arguments" not in a, a
        confirmed = [a for a in audit if a["tool"] == DECOMMISSION and a["outcome"] == "ok"]
        assert {a.get("object_id") for a in confirmed} == {c1, c2}, confirmed
        assert any(a.get("confirmation_id") == fresh for a in confirmed), confirmed
    print(json.dumps(summary))


asyncio.run(main())
