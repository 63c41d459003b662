"""Schemathesis hooks of the contract test (loaded by run.sh through SCHEMATHESIS_HOOKS).

Only two things JSON Schema cannot say, and one courtesy to the network:

- A workflow's nodes form a graph: names unique, `after` naming earlier nodes of the same
  document, no cycle. `/openapi.json` states it in words; here a valid (positive) workflow gets
  unique node names and `after` edges to earlier nodes. Invalid ones are left as drawn.
- Webhook URLs: the host gets the reserved `.invalid` suffix (RFC 6761), so the server under
  test never resolves or delivers to a real name. The URL stays as valid (or not) as drawn.
"""

import re

import schemathesis

HTTP_URL = re.compile(r"^([Hh][Tt][Tt][Pp][Ss]?://)([^/?:]+)(.*)$")


@schemathesis.hook.apply_to(method="POST", path="/v1/webhooks")
def map_body(ctx, body):
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        m = HTTP_URL.match(body["url"])
        url = f"{m.group(1)}{m.group(2)}.invalid{m.group(3)}" if m else ""
        # Within the documented 2048 characters (a boundary case keeps its name).
        if m and not m.group(2).lower().endswith(".invalid") and len(url) <= 2048:
            body = {**body, "url": url}
    return body


@schemathesis.hook.apply_to(method="POST", path="/v1/workflows")
def map_case(ctx, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    body = case.body
    if not positive or not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
        return case
    nodes = body["tasks"]
    if not all(isinstance(n, dict) and isinstance(n.get("name"), str) for n in nodes):
        return case
    names = []
    for i, node in enumerate(nodes):
        suffix = f"-{i}"
        names.append(node["name"][: 200 - len(suffix)] + suffix)
    tasks = []
    for i, node in enumerate(nodes):
        node = {**node, "name": names[i]}
        after = node.get("after")
        if isinstance(after, list):
            # Each edge goes to an earlier node (none for the first): a graph without cycles.
            node["after"] = [names[len(str(a)) % i] for a in after] if i else []
        tasks.append(node)
    case.body = {**body, "tasks": tasks}
    return case
