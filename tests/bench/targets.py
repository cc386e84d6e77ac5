#!/usr/bin/env python3
"""One table of issue 22's targets from a run.sh result directory (stdlib only).

usage: targets.py RESULTS_DIR

Reads RESULTS_DIR/raw.jsonl (search_incident, federation, writes, idle memory, instructions),
cluster/raw.jsonl, agent/raw.jsonl and workflow/raw.jsonl. Every figure is given per
repetition (' / '); a target is met when every repetition meets it. Nothing here judges a
missing measurement: it is shown as '–' and the target as 'not measured'.
"""

import json
import os
import sys
from collections import defaultdict


def rows_of(path):
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def name_rep(r):
    parts = r.get("label", "?#1").split("#")
    return parts[0], parts[1] if len(parts) > 1 else "1"


def index(rows, mode="load"):
    """(name, transport, c) -> {rep: row}"""
    ix = defaultdict(dict)
    for r in rows:
        if r.get("mode") == mode:
            name, rep = name_rep(r)
            ix[(name, r.get("transport"), r.get("concurrency"))][rep] = r
    return ix


def calls(r):
    return r.get("calls_per_s", 0.0)


def p50(r):
    return r.get("latency_us", {}).get("p50", 0) / 1000


def p99(r):
    return r.get("latency_us", {}).get("p99", 0) / 1000


def errors(r):
    return r.get("errors", {}).get("total", 0) + r.get("sessions_failed", 0)


def cpu(r):
    return (r.get("cpu") or {}).get("server_cpu_us_per_call")


def paired(ix, a, b, f):
    """f(row_a, row_b) per repetition both have."""
    ra, rb = ix.get(a, {}), ix.get(b, {})
    return [f(ra[k], rb[k]) for k in sorted(ra) if k in rb]


def single(ix, a, f):
    return [f(r) for _, r in sorted(ix.get(a, {}).items())]


def fmt(vals, spec):
    return " / ".join(format(v, spec) for v in vals) if vals else "–"


ROWS = []


def target(name, measured, vals, ok):
    met = "not measured" if not vals else ("**yes**" if all(ok(v) for v in vals) else "no")
    ROWS.append((name, measured, met))


def main():
    out = sys.argv[1]
    raw = rows_of(os.path.join(out, "raw.jsonl"))
    ix = index(raw)
    env = open(os.path.join(out, "env.txt")).read() if os.path.exists(os.path.join(out, "env.txt")) else ""

    # Throughput and latency, everything on.
    v = paired(ix, ("switchboard", "streamable", 64), ("rmcp", "streamable", 64), lambda a, b: calls(a) / calls(b))
    target("Streamable HTTP c=64 ≥ 1.0× bare rmcp", fmt(v, ".2f") + "×", v, lambda x: x >= 1.0)
    v = paired(ix, ("switchboard", "sse", 64), ("python", "sse", 64), lambda a, b: calls(a) / calls(b))
    target("legacy SSE c=64 ≥ 12× the Python SDK", fmt(v, ".1f") + "×", v, lambda x: x >= 12)
    for t in ("sse", "streamable", "stateless"):
        v = single(ix, ("switchboard", t, 64), p99)
        target(f"p99 ≤ 5 ms at c=64, {t}", fmt(v, ".2f") + " ms", v, lambda x: x <= 5)
    for t in ("sse", "streamable", "stateless"):
        v = single(ix, ("switchboard", t, 256), lambda r: (errors(r), p99(r)))
        shown = " / ".join(f"{e} errors, p99 {p:.2f} ms" for e, p in v) if v else "–"
        target(f"c=256 no errors and p99 ≤ 20 ms, {t}", shown, v, lambda x: x[0] == 0 and x[1] <= 20)
    for c in sorted({k[2] for k in ix if k[0] == "switchboard" and k[1] == "stateless"}):
        v = paired(ix, ("switchboard", "stateless", c), ("switchboard", "streamable", c), lambda a, b: calls(a) / calls(b))
        target(f"stateless 2026-07-28 ≥ session path, c={c} (calls/s ratio)", fmt(v, ".2f") + "×", v, lambda x: x >= 1.0)

    # Federation: p50 added over calling rmcp directly.
    for c in (1, 16, 64):
        v = paired(ix, ("federated", "streamable", c), ("rmcp-direct", "streamable", c), lambda a, b: p50(a) - p50(b))
        target(f"federation adds ≤ 0.3 ms p50, c={c}", fmt(v, "+.2f") + " ms", v, lambda x: x <= 0.3)

    # Cluster: a local session against the single gateway.
    cix = index(rows_of(os.path.join(out, "cluster", "raw.jsonl")))
    for t in ("sse", "streamable"):
        for c in (1, 16, 64):
            v = paired(cix, ("local", t, c), ("single", t, c), lambda a, b: p50(a) - p50(b))
            target(f"cluster adds ≤ 0.5 ms p50 on a local session, {t} c={c}", fmt(v, "+.2f") + " ms", v, lambda x: x <= 0.5)

    # Writes.
    for t in ("sse", "streamable"):
        v = single(ix, ("create_incident", t, 16), lambda r: (calls(r), p99(r)))
        shown = " / ".join(f"{c:,.0f}/s, p99 {p:.1f} ms" for c, p in v) if v else "–"
        target(f"create_incident c=16 ≥ 5,000/s, p99 ≤ 10 ms, {t}", shown, v, lambda x: x[0] >= 5000 and x[1] <= 10)

    # Idle memory at the largest stage, parking on.
    idle = defaultdict(list)
    for r in raw:
        if r.get("mode") == "idle":
            idle[(name_rep(r)[0], r.get("transport"))].append(r)
    for t, limit in (("sse", 16), ("streamable", 8)):
        rs = idle.get(("switchboard", t), [])
        v = [r["stages"][-1].get("kib_per_session") for r in rs if r.get("stages")]
        v = [x for x in v if x is not None]
        n = rs[0]["stages"][-1]["established"] if rs and rs[0].get("stages") else "?"
        target(f"idle memory ≤ {limit} KiB per session, {t}, parking on ({n} sessions)", fmt(v, ".1f") + " KiB", v, lambda x: x <= limit)

    # Agent and workflow overhead per LLM turn.
    for kind, turns in (("agent", 2), ("workflow", 4)):
        arows = rows_of(os.path.join(out, kind, "raw.jsonl"))
        probes = {name_rep(r)[1]: r for r in arows if r.get("mode") == "llm-probe" and name_rep(r)[0] == "fake-alone"}
        for t in ("sse", "streamable"):
            v = []
            for r in arows:
                rep = name_rep(r)[1]
                if r.get("mode") == "load" and r.get("transport") == t and rep in probes:
                    v.append((p50(r) - turns * p50(probes[rep])) / turns)
            c = next((r.get("concurrency") for r in arows if r.get("mode") == "load"), "?")
            target(f"{kind} overhead ≤ 1 ms per LLM turn (p50), {t}, c={c}", fmt(v, ".2f") + " ms", v, lambda x: x <= 1.0)

    print("## Targets at this commit (issue 22, with issue 24's agent overhead)\n")
    print("```")
    print(env.rstrip())
    print("```\n")
    print("One figure per repetition (' / '); met = every repetition meets it.\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    for name, measured, met in ROWS:
        print(f"| {name} | {measured} | {met} |")

    # Beside calls/s: CPU and instructions per call.
    print("\n### search_incident: calls/s, latency, CPU and instructions per call\n")
    instr = {(r.get("label"), r.get("transport")): r.get("instructions_per_call") for r in raw if r.get("mode") == "instructions"}
    print("| server | path | c | calls/s | p50 ms | p99 ms | errors | server CPU µs/call | instructions/call (callgrind, c=4) |")
    print("|---|---|---:|---|---|---|---|---|---:|")
    for (name, t, c), reps in sorted(ix.items(), key=lambda kv: (["switchboard", "rmcp", "python", "federated", "rmcp-direct", "create_incident", "update_incident"].index(kv[0][0]) if kv[0][0] in ["switchboard", "rmcp", "python", "federated", "rmcp-direct", "create_incident", "update_incident"] else 99, kv[0][1], kv[0][2])):
        rs = [r for _, r in sorted(reps.items())]
        ins = instr.get((name, "sse" if t == "sse" else "streamable")) if t != "stateless" and name in ("switchboard", "rmcp") else None
        print(f"| {name} | {t} | {c} | {fmt([calls(r) for r in rs], ',.0f')} | {fmt([p50(r) for r in rs], '.2f')} | "
              f"{fmt([p99(r) for r in rs], '.2f')} | {fmt([errors(r) for r in rs], 'd')} | "
              f"{fmt([cpu(r) or 0 for r in rs], '.0f')} | {'–' if ins is None else f'{ins:,}'} |")


if __name__ == "__main__":
    main()
