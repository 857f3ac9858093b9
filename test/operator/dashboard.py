"""Checks deploy/grafana/gatewayd.json and runs its queries on a real Prometheus.

  dashboard.py check DASHBOARD                      structure: variables, panels, datasources
  dashboard.py eval  DASHBOARD PROM_URL INSTANCE    every query, as Grafana would send it

Only the standard library: CI's python3 is Debian's.
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request

# Queries of metrics that this build may not export yet, or that have data
# only when something is wrong. They must still succeed.
MAY_BE_EMPTY = {
    "gatewayd_mqtt_publish_refused_total": "MQTT 5 refusals (none in this run)",
    "gatewayd_config_last_reload_successful": "set at the first reload (none in this run)",
}


def panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


def check(path):
    d = json.load(open(path, encoding="utf-8"))
    errs = []
    if not d.get("uid") or not d.get("title") or d.get("id") is not None:
        errs.append("uid and title must be set and id null (importable)")
    var = {v["name"]: v for v in d["templating"]["list"]}
    ds = var.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errs.append("no datasource variable of type prometheus")
    inst = var.get("instance", {})
    if inst.get("type") != "query" or "label_values(" not in json.dumps(inst.get("query")) or not inst.get("multi"):
        errs.append("no multi-value instance variable from label_values")
    ids, n = set(), 0
    for p in panels(d):
        if p["id"] in ids:
            errs.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            errs.append(f"panel {p['title']!r} is wider than the grid")
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errs.append(f"panel {p['title']!r} does not use ${{datasource}}")
        if not p.get("targets"):
            errs.append(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            n += 1
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errs.append(f"a query of {p['title']!r} does not use ${{datasource}}")
            if '$instance' not in t["expr"]:
                errs.append(f"a query of {p['title']!r} ignores $instance: {t['expr']}")
    if errs:
        print("\n".join(errs))
        sys.exit(1)
    print(f"{len(ids)} panels, {n} queries, variables {sorted(var)}")


def api(prom, path, params):
    url = f"{prom}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400 with a JSON error body
        return json.load(e)


def substitute(expr, regex):
    # $__rate_interval is at least 4 scrape intervals (1s here).
    for k, v in {"$__rate_interval": "15s", "$__interval": "1s", "$__range": "30s", "$instance": regex}.items():
        expr = expr.replace(k, v)
    return expr


def evaluate(path, prom, instance):
    d = json.load(open(path, encoding="utf-8"))
    failed, empty, ok = [], [], 0
    # The instance variable: its values must include the scraped gatewayd.
    q = next(v for v in d["templating"]["list"] if v["name"] == "instance")["definition"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", q).groups()
    r = api(prom, f"/api/v1/label/{label}/values", {"match[]": metric})
    if r.get("status") != "success" or instance not in r["data"]:
        failed.append(f"variable instance ({q}): {r}")
    # Grafana: a multi-value variable inside =~ becomes an escaped regex of
    # the chosen values, or the variable's allValue for "All".
    one = re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", instance)
    every = next(v for v in d["templating"]["list"] if v["name"] == "instance")["allValue"]
    queries = [(p["title"], substitute(t["expr"], regex))
               for p in panels(d) for t in p.get("targets", []) for regex in (one, every)]
    now = time.time()
    for title, expr in queries:
        r = api(prom, "/api/v1/query_range", {"query": expr, "start": now - 30, "end": now, "step": "1"})
        if r.get("status") != "success":
            failed.append(f"{title!r}: {expr}: {r.get('error')}")
            continue
        if r["data"]["result"]:
            ok += 1
            print(f"data     {title}: {expr} ({len(r['data']['result'])} series)")
            continue
        why = [w for m, w in MAY_BE_EMPTY.items() if m in expr]
        if why:
            empty.append(expr)
            print(f"no data  {title}: {expr} (allowed: {why[0]})")
        else:
            failed.append(f"{title!r}: {expr}: no data")
    for f in failed:
        print("FAILED  ", f)
    total = ok + len(empty) + len(failed)
    print(f"{total} queries ran (each panel query for one instance and for All), {ok} returned data, {len(empty)} empty as allowed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        evaluate(sys.argv[2], sys.argv[3], sys.argv[4])
