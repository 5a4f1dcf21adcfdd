#!/usr/bin/env python3
"""The embedded MongoDB-wire servers side by side on rcron's run-log queries.

For each server (nx-27017 as deploy/lib.sh starts it, SecantusDB's
`secantusd-py`), one after the other: start it on a free loopback port with
a fresh data dir, check what rcron needs from it (ping, indexes incl. TTL,
listIndexes, unordered inserts that tolerate duplicates, the `count`
command, find with sort/skip/limit/projection, explain), bulk-load N run
records shaped like rcron's, then time the log queries with 1 client and
with 8 concurrent clients, and report RSS and size on disk.

    deploy/store-compare.sh                      # both servers, 1M records (installs both), ~1.5 h
    python bench/store_compare.py --records 20000 --servers nx   # a quick look

Needs pymongo (either server's venv has it). Writes a JSON report
(--out) and prints a Markdown summary. Figures in BENCHMARKS.md §10.
"""

import argparse
import datetime as dt
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bson
import pymongo
from bson import json_util
from pymongo.errors import BulkWriteError, PyMongoError

HOT_JOBS = 5  # job-0000 … job-0004: 10% of the records each
JOBS = 1000
PAGE = 50
DEEP = 50_000  # where the keyset and skip pages start
SORT = [("startTime", -1), ("_id", -1)]
NO_OUTPUT = {"output": 0}
RUNS_ONLY = {"$nin": ["skipped", "missed"]}
# What a driver's heartbeat tolerates before it declares the server down
# (rcron: connect_timeout = server_selection_timeout = 3 s → 503).
HEARTBEAT_LIMIT_S = 3.0

INDEXES = [
    # shared/src/runlog/mongo.rs ensure_indexes
    ("jobName_1_startTime_-1", [("jobName", 1), ("startTime", -1)], {}),
    ("startTime_-1", [("startTime", -1)], {}),
    ("expireAt_1 (TTL)", [("expireAt", 1)], {"expireAfterSeconds": 0}),
    # what the keyset pages need
    ("jobName_1_startTime_-1__id_-1", [("jobName", 1), ("startTime", -1), ("_id", -1)], {}),
    ("startTime_-1__id_-1", [("startTime", -1), ("_id", -1)], {}),
    ("runId_1", [("runId", 1)], {}),
]

# --shape main: what main's MongoRunLog does since the keyset pages landed
# (shared/src/runlog/mongo.rs): pages by (startTime, runId, attempt) — not
# `_id`, which nx-27017 cannot have in a compound index — fetch limit + 1,
# count capped at COUNT_CAP + 1.
INDEXES_MAIN = [
    ("jobName_1_startTime_-1_runId_-1_attempt_-1",
     [("jobName", 1), ("startTime", -1), ("runId", -1), ("attempt", -1)], {}),
    ("startTime_-1_runId_-1_attempt_-1", [("startTime", -1), ("runId", -1), ("attempt", -1)], {}),
    ("runId_1", [("runId", 1)], {}),
    ("expireAt_1 (TTL)", [("expireAt", 1)], {"expireAfterSeconds": 0}),
]
SORT_MAIN = [("startTime", -1), ("runId", -1), ("attempt", -1)]
COUNT_CAP = 10_000


# ---------------------------------------------------------------- servers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server_command(kind, binary, data, port, logdir):
    if kind == "nx-27017":
        # As deploy/lib.sh start_mongo does.
        return [binary, "--data-dir", data, "--host", "127.0.0.1", "-p", str(port),
                "--log-file", os.path.join(logdir, "mongo.log"),
                "--pid-file", os.path.join(logdir, "mongo.pid")]
    if kind == "secantusdb":
        # Defaults otherwise (1 GiB WiredTiger cache, oplog of 100k entries).
        return [binary, "--host", "127.0.0.1", "--port", str(port),
                "--storage-path", data, "--log-level", "WARNING"]
    raise ValueError(kind)


def version_of(binary, dist):
    python = os.path.join(os.path.dirname(binary), "python")
    try:
        return subprocess.run(
            [python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "?"


def proc_tree(pid):
    """pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def rss_mib(pid):
    """(RSS, peak RSS) in MiB of pid and its descendants."""
    rss = hwm = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return round(rss / 1024, 1), round(hwm / 1024, 1)


def cpu_s(pid):
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def dir_size_mib(path):
    apparent = allocated = 0
    files = {}
    for root, _, names in os.walk(path):
        for n in names:
            try:
                st = os.stat(os.path.join(root, n))
            except OSError:
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files[os.path.relpath(os.path.join(root, n), path)] = st.st_size
    biggest = sorted(files.items(), key=lambda kv: -kv[1])[:40]
    return {"apparent_mib": round(apparent / 2**20, 1), "allocated_mib": round(allocated / 2**20, 1),
            "files": len(files), "biggest": {k: round(v / 2**20, 1) for k, v in biggest}}


class Server:
    def __init__(self, kind, binary, workdir):
        self.kind, self.binary = kind, binary
        self.dir = os.path.join(workdir, kind)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.out = open(os.path.join(self.dir, "server.out"), "wb")
        self.proc = subprocess.Popen(server_command(kind, binary, self.data, self.port, self.dir),
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited: see {self.dir}/server.out")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{kind} did not listen within 60 s")
                time.sleep(0.2)

    def client(self, **kw):
        kw.setdefault("serverSelectionTimeoutMS", 30_000)
        kw.setdefault("socketTimeoutMS", 600_000)
        return pymongo.MongoClient(self.uri, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


# ---------------------------------------------------------------- data


def uuid7(ms, rng):
    a = (ms << 16) | 0x7000 | rng.getrandbits(12)
    b = (0b10 << 62) | rng.getrandbits(62)
    h = f"{a:016x}{b:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Generator:
    """Records in time order over the last 30 days: 5 hot jobs with 10% of
    them each, 995 others sharing the rest; 90% success, 5% failed, 3%
    skipped, 2% missed; 2% of runs retried once (same runId, attempt 2)."""

    def __init__(self, total, now_ms, seed=19):
        self.total = total
        self.rng = random.Random(seed)
        self.now_ms = now_ms
        self.t0 = self.now_ms - 30 * 86_400_000
        self.step = 30 * 86_400_000 / max(total, 1)
        self.i = 0
        self.hot_keys = []  # (startTime, _id, status) of job-0000
        self.run_ids = []
        self.bson_sampled = self.bson_bytes = 0
        self.retention_ms = 90 * 86_400_000
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 .:/-_"
        self.words = ["".join(self.rng.choice(alphabet) for _ in range(12)) for _ in range(4096)]

    def job(self):
        r = self.rng.random()
        if r < 0.5:
            return f"job-{int(r / 0.1):04d}"
        return f"job-{self.rng.randrange(HOT_JOBS, JOBS):04d}"

    def output(self):
        # ~200 bytes of varied text (not one repeated string: compression).
        return " ".join(self.rng.choice(self.words) for _ in range(15)) + "\n"

    def batch(self, n):
        docs = []
        rng = self.rng
        while len(docs) < n and self.i < self.total:
            plan = int(self.t0 + self.i * self.step) // 1000 * 1000
            start = plan + rng.randrange(1, 40)
            job = self.job()
            r = rng.random()
            status = "success" if r < 0.90 else "failed" if r < 0.95 else "skipped" if r < 0.98 else "missed"
            verdict = status in ("skipped", "missed")
            end = start if verdict else start + rng.randrange(5, 5_000)
            run_id = uuid7(start, rng)
            attempts = 2 if (status == "failed" and rng.random() < 0.4) else 1
            for attempt in range(1, attempts + 1):
                if len(docs) >= n or self.i >= self.total:
                    break
                st = status if attempt == attempts else "failed"
                s = start + (attempt - 1) * 10_000
                e = end + (attempt - 1) * 10_000
                doc = {
                    "_id": f"{run_id}-{attempt}",
                    "jobName": job,
                    "command": "" if verdict else f"/usr/local/bin/{job}.sh --quiet",
                    "err": "exit status 1" if st == "failed" else "",
                    "output": "" if verdict else self.output(),
                    "planTime": plan,
                    "scheduleTime": plan + rng.randrange(0, 3),
                    "startTime": s,
                    "endTime": e,
                    "runId": run_id,
                    "worker": f"w{rng.randrange(1, 5)}",
                    "exitCode": None if verdict else (0 if st == "success" else 1),
                    "status": st,
                    "attempt": attempt,
                    "outputTruncated": False,
                    "trigger": "schedule" if rng.random() < 0.98 else rng.choice(["manual", "chain"]),
                    "expireAt": dt.datetime.fromtimestamp((e + self.retention_ms) / 1000, dt.timezone.utc),
                }
                if verdict:
                    doc["reason"] = "previous run still running" if st == "skipped" else "no free slot"
                docs.append(doc)
                self.i += 1
                if job == "job-0000":
                    self.hot_keys.append((s, doc["_id"], st))
                if self.i % 997 == 0:
                    self.run_ids.append(run_id)
                if self.i % 101 == 0:
                    self.bson_sampled += 1
                    self.bson_bytes += len(bson.encode(doc))
        return docs


# ---------------------------------------------------------------- checks


def make_indexes(coll, indexes=None):
    """Creates the indexes on (empty) coll; an index after which an insert
    fails is dropped again, so the rest can be measured without it."""
    status, good = {}, []
    for name, keys, opts in indexes or INDEXES:
        try:
            created = coll.create_index(keys, **opts)
        except PyMongoError as e:
            status[name] = f"createIndex FAILED: {str(e)[:200]}"
            continue
        try:
            coll.insert_one({"_id": "__probe__", "jobName": "p", "startTime": 0, "runId": "p",
                             "expireAt": dt.datetime(2100, 1, 1)})
            coll.delete_one({"_id": "__probe__"})
            status[name] = "ok"
            good.append((keys, opts))
        except PyMongoError as e:
            status[name] = f"created, but then every insert FAILED ({str(e)[:120]})"
            try:
                coll.drop_index(created)
                status[name] += "; dropped, measured without it"
            except PyMongoError as e2:
                # Start the collection over with the indexes that work.
                status[name] += f"; dropIndex({created!r}) FAILED ({str(e2)[:80]}); collection recreated without it"
                coll.drop()
                for k, o in good:
                    coll.create_index(k, **o)
    return status


def compat(server):
    """What rcron does against the store, on a scratch database."""
    c = server.client(serverSelectionTimeoutMS=10_000)
    db = c["compat"]
    res = {}

    def check(name, fn):
        try:
            res[name] = {"ok": True, "detail": fn()}
        except Exception as e:  # noqa: BLE001 — recorded, not raised
            res[name] = {"ok": False, "detail": f"{type(e).__name__}: {str(e)[:300]}"}

    check("ping", lambda: c.admin.command("ping").get("ok"))
    hello = c.admin.command("hello")
    res["hello"] = {k: hello.get(k) for k in ("setName", "hosts", "isWritablePrimary", "maxWireVersion")}
    res["buildInfo.version"] = c.admin.command("buildInfo").get("version")
    coll = db["log"]
    for name, status in make_indexes(coll).items():
        res[f"createIndex {name}"] = {"ok": status == "ok", "detail": status}
    check("listIndexes", lambda: [dict(i["key"]) | ({"ttl": i["expireAfterSeconds"]} if "expireAfterSeconds" in i else {})
                                  for i in coll.list_indexes()])
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    docs = [{"_id": f"r{i}-1", "jobName": "j", "startTime": i, "status": "success", "output": "x" * i,
             "expireAt": dt.datetime(2100, 1, 1)} for i in range(10)]
    check("insert_many ordered=false", lambda: len(coll.insert_many(docs, ordered=False).inserted_ids))

    def dup():
        try:
            coll.insert_many(docs[:3] + [{"_id": "new-1", "jobName": "j", "startTime": 99}], ordered=False)
            return "no error (duplicates silently ignored)"
        except BulkWriteError as e:
            d = e.details
            codes = sorted({w["code"] for w in d["writeErrors"]})
            if codes != [11000] or d.get("writeConcernErrors") or d["nInserted"] != 1:
                raise AssertionError(f"codes {codes}, nInserted {d['nInserted']}")
            return f"E11000 x{len(d['writeErrors'])}, the new one inserted"
    check("duplicate tolerated (E11000 only, rest inserted)", dup)
    check("count command", lambda: db.command({"count": "log", "query": {"jobName": "j"}})["n"])
    check("count command, limit 5", lambda: db.command({"count": "log", "query": {"jobName": "j"}, "limit": 5})["n"])
    check("find sort/skip/limit/projection", lambda: [
        (d["_id"], "output" in d) for d in coll.find({"jobName": "j"}, NO_OUTPUT).sort(SORT).skip(2).limit(3)])
    check("keyset $or", lambda: [d["_id"] for d in coll.find(
        {"jobName": "j", "$or": [{"startTime": {"$lt": 5}}, {"startTime": 5, "_id": {"$lt": "r5-1"}}]},
        NO_OUTPUT).sort(SORT).limit(3)])
    check("$nin status", lambda: coll.count_documents({"status": RUNS_ONLY}))
    check("explain", lambda: sorted(coll.find({"jobName": "j"}).sort(SORT).limit(3).explain().keys())[:8])
    # TTL: one document already expired; looked for again at the end.
    check("insert expired doc (TTL)", lambda: coll.insert_one({"_id": "expired-1", "expireAt": past}).inserted_id)
    c.close()
    return res


def ttl_swept(server):
    c = server.client()
    gone = c["compat"]["log"].find_one({"_id": "expired-1"}) is None
    c.close()
    return gone


# ---------------------------------------------------------------- timing


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)  # nearest rank
    k = min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))
    return xs[k]


class HelloProbe:
    """A driver-heartbeat stand-in: `hello` every 0.5 s on its own
    connection; the longest answer says whether rcron's 3 s monitor would
    have declared the server down (the master then answers 503)."""

    def __init__(self, server):
        self.c = server.client(maxPoolSize=1)
        self.c.admin.command("ping")
        self.max = 0.0
        self.over = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            t = time.perf_counter()
            try:
                self.c.admin.command("hello")
            except PyMongoError:
                pass
            d = time.perf_counter() - t
            self.max = max(self.max, d)
            if d > HEARTBEAT_LIMIT_S:
                self.over += 1
            self.stop_ev.wait(0.5)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        self.c.close()
        return round(self.max * 1000, 1), self.over


def time_query(server, fn, clients, runs, budget):
    """Latencies (s) of fn(coll) with `clients` concurrent clients, each
    doing up to `runs` calls while under `budget` seconds."""
    lat, errors, lock = [], [], threading.Lock()
    deadline = time.time() + budget
    conns = [server.client(maxPoolSize=1) for _ in range(clients)]
    for c in conns:
        c.admin.command("ping")
    probe = HelloProbe(server)

    def worker(c):
        coll = c["cron"]["log"]
        for _ in range(runs):
            if time.time() > deadline:
                return
            t = time.perf_counter()
            try:
                fn(coll)
                d = time.perf_counter() - t
                with lock:
                    lat.append(d)
            except PyMongoError as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    hello_max_ms, hello_over = probe.stop()
    for c in conns:
        c.close()
    ms = [x * 1000 for x in lat]
    return {
        "n": len(lat), "errors": len(errors), "first_error": errors[0] if errors else None,
        "p50_ms": round(pct(ms, 50), 2) if ms else None,
        "p99_ms": round(pct(ms, 99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
        "per_s": round(len(lat) / wall, 1) if wall else None,
        "hello_max_ms": hello_max_ms, "hello_over_3s": hello_over,
        "ms": [round(x, 1) for x in ms],
    }


def plan_summary(explain):
    """Stages and index names of the winning plan, whatever its shape."""
    stages, indexes, text = [], [], []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "stage" and isinstance(v, str):
                    stages.append(v)
                elif k == "indexName" and isinstance(v, str):
                    indexes.append(v)
                elif isinstance(v, str) and ("USING" in v or "SCAN" in v or "SEARCH" in v):
                    text.append(v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    qp = explain.get("queryPlanner", explain)
    walk(qp.get("winningPlan", qp))
    stats = explain.get("executionStats", {})
    out = {"stages": stages, "indexes": indexes}
    if text:
        out["plan_text"] = text[:6]
    for k in ("totalKeysExamined", "totalDocsExamined", "executionTimeMillis"):
        if k in stats:
            out[k] = stats[k]
    return out


def queries(gen):
    """The timed queries: name → (description, fn(coll))."""
    J = "job-0000"
    hot = sorted(gen.hot_keys, key=lambda k: (k[0], k[1]), reverse=True)
    deep = min(DEEP, len(hot) - 1)
    t, i = hot[deep][0], hot[deep][1]
    failed = [k for k in hot if k[2] == "failed"]
    fdeep = min(2_000, len(failed) - 1)
    ft, fi = failed[fdeep][0], failed[fdeep][1]
    runs = [k for k in hot if k[2] not in ("skipped", "missed")]
    rdeep = min(DEEP, len(runs) - 1)
    rt, ri = runs[rdeep][0], runs[rdeep][1]
    run_ids = gen.run_ids
    rid = {"i": 0}

    def after(tt, ii):
        return {"$or": [{"startTime": {"$lt": tt}}, {"startTime": tt, "_id": {"$lt": ii}}]}

    def page(filt, skip=0):
        return lambda c: list(c.find(filt, NO_OUTPUT).sort(SORT).skip(skip).limit(PAGE))

    def one_run(c):
        rid["i"] = (rid["i"] + 1) % len(run_ids)
        return list(c.find({"runId": run_ids[rid["i"]]}))

    def count(q, limit=None):
        cmd = {"count": "log", "query": q}
        if limit:
            cmd["limit"] = limit
        return lambda c: c.database.command(cmd)["n"]

    return {
        "a": ("newest page, all jobs", page({}), True),
        "b": (f"newest page, hot job ({len(hot):,} records)", page({"jobName": J}), True),
        "c": (f"keyset page, hot job, after {deep:,}", page({"jobName": J, **after(t, i)}), True),
        "c+": (f"keyset page, hot job, after {deep:,}, with startTime $lte bound",
               page({"jobName": J, "startTime": {"$lte": t}, **after(t, i)}), True),
        "d1": ("newest page, hot job, status failed", page({"jobName": J, "status": "failed"}), False),
        "d2": (f"keyset page, hot job, status failed, after {fdeep:,}",
               page({"jobName": J, "status": "failed", **after(ft, fi)}), True),
        "d3": ("newest page, all jobs, status $nin [skipped, missed]", page({"status": RUNS_ONLY}), False),
        "d4": (f"keyset page, hot job, status $nin, after {rdeep:,}",
               page({"jobName": J, "status": RUNS_ONLY, **after(rt, ri)}), True),
        "e1": (f"skip {deep:,} limit 50, hot job", page({"jobName": J}, skip=deep), False),
        "e2": (f"skip {DEEP:,} limit 50, all jobs", page({}, skip=DEEP), False),
        "f1": ("count {jobName: hot}", count({"jobName": J}), False),
        "f2": ("count {jobName: hot}, limit 10001", count({"jobName": J}, 10_001), False),
        "f3": ("count all", count({}), False),
        "f4": ("count {jobName: hot, status $nin}", count({"jobName": J, "status": RUNS_ONLY}), False),
        "g": ("one run's records, with output", one_run, True),
    }, {"a": {}, "b": {"jobName": J}, "c": {"jobName": J, **after(t, i)},
        "c+": {"jobName": J, "startTime": {"$lte": t}, **after(t, i)}}


def queries_main(gen):
    """The same questions as main's MongoRunLog asks them."""
    J = "job-0000"
    by_id = {}
    for st, _id, status in gen.hot_keys:
        run_id, attempt = _id.rsplit("-", 1)
        by_id[_id] = (st, run_id, int(attempt), status)
    hot = sorted(by_id.values(), key=lambda k: (k[0], k[1], k[2]), reverse=True)
    deep = min(DEEP, len(hot) - 1)
    runs = [k for k in hot if k[3] not in ("skipped", "missed")]
    rdeep = min(DEEP, len(runs) - 1)
    run_ids = gen.run_ids
    rid = {"i": 0}

    def after(k):
        t, r, a = k[0], k[1], k[2]
        return {"$or": [{"startTime": {"$lt": t}}, {"startTime": t, "runId": {"$lt": r}},
                        {"startTime": t, "runId": r, "attempt": {"$lt": a}}]}

    def page(filt):
        return lambda c: list(c.find(filt, NO_OUTPUT).sort(SORT_MAIN).limit(PAGE + 1))

    def count(q):
        return lambda c: c.database.command({"count": "log", "query": q, "limit": COUNT_CAP + 1})["n"]

    def one_run(c):
        rid["i"] = (rid["i"] + 1) % len(run_ids)
        return list(c.find({"runId": run_ids[rid["i"]]}).sort([("attempt", 1)]))

    return {
        "a": ("newest page, all jobs", page({}), True),
        "b": (f"newest page, hot job ({len(hot):,} records)", page({"jobName": J}), True),
        "c": (f"keyset page, hot job, after {deep:,}", page({"jobName": J, **after(hot[deep])}), True),
        "c'": (f"keyset page, all jobs, from the hot job's record {deep:,}",
               page(after(hot[deep])), True),
        "d1": ("newest page, hot job, status failed", page({"jobName": J, "status": "failed"}), False),
        "d3": ("newest page, all jobs, status $nin [skipped, missed]", page({"status": RUNS_ONLY}), False),
        "d4": (f"keyset page, hot job, status $nin, after {rdeep:,}",
               page({"jobName": J, "status": RUNS_ONLY, **after(runs[rdeep])}), True),
        "f1": ("count {jobName: hot}, limit 10001", count({"jobName": J}), False),
        "f3": ("count all, limit 10001", count({}), False),
        "f4": ("count {jobName: hot, status $nin}, limit 10001", count({"jobName": J, "status": RUNS_ONLY}), False),
        "g": ("one run's records, with output, by attempt", one_run, True),
    }, {"a": {}, "b": {"jobName": J}, "c": {"jobName": J, **after(hot[deep])}}


# ---------------------------------------------------------------- main


def bench_server(kind, binary, args, workdir):
    report = {"server": kind, "binary": binary}
    report["version"] = version_of(binary, {"nx-27017": "nx-27017", "secantusdb": "SecantusDB"}[kind])
    server = Server(kind, binary, workdir)
    try:
        report["compat"] = compat(server)
        c = server.client()
        coll = c["cron"]["log"]
        report["shape"] = args.shape
        report["indexes"] = make_indexes(coll, INDEXES_MAIN if args.shape == "main" else INDEXES)
        log(f"{kind}: indexes {report['indexes']}")

        gen = Generator(args.records, args.now_ms)
        inserted, ins_time, errors = 0, 0.0, 0
        cpu0 = cpu_s(server.proc.pid)
        t_start = time.time()
        next_note = 50_000
        stopped_early = None
        while gen.i < args.records:
            docs = gen.batch(args.batch)
            t = time.perf_counter()
            try:
                coll.insert_many(docs, ordered=False)
                inserted += len(docs)
            except BulkWriteError as e:
                inserted += e.details["nInserted"]
                errors += len(e.details["writeErrors"])
            ins_time += time.perf_counter() - t
            if inserted >= next_note:
                log(f"{kind}: {inserted:,} inserted, {inserted / ins_time:,.0f}/s, "
                    f"RSS {rss_mib(server.proc.pid)[0]} MiB")
                next_note += 50_000
            if time.time() - t_start > args.insert_budget:
                stopped_early = f"insert budget of {args.insert_budget} s spent at {inserted:,} records"
                log(f"{kind}: {stopped_early}")
                break
        report["insert"] = {
            "records": inserted, "seconds": round(ins_time, 1), "per_s": round(inserted / ins_time, 1),
            "errors": errors, "server_cpu_s": round(cpu_s(server.proc.pid) - cpu0, 1),
            "stopped_early": stopped_early, "batch": args.batch,
        }
        report["records"] = inserted
        report["avg_bson_bytes"] = round(gen.bson_bytes / max(gen.bson_sampled, 1))
        # What the server says it holds (it may differ on a weak count).
        report["count_all_after_load"] = c["cron"].command({"count": "log"})["n"]
        report["rss_after_load_mib"], report["peak_rss_mib"] = rss_mib(server.proc.pid)
        report["disk_after_load"] = dir_size_mib(server.data)
        log(f"{kind}: loaded {inserted:,} in {ins_time:,.0f} s; disk {report['disk_after_load']}")

        qs, explained = (queries_main if args.shape == "main" else queries)(gen)
        sort = SORT_MAIN if args.shape == "main" else SORT
        report["explain"] = {}
        for name, filt in explained.items():
            try:
                e = coll.find(filt, NO_OUTPUT).sort(sort).limit(PAGE).explain()
                report["explain"][name] = plan_summary(e)
                report["explain_raw_" + name] = json.loads(json_util.dumps(e))
            except PyMongoError as e:
                report["explain"][name] = {"error": str(e)[:300]}
        log(f"{kind}: explain {json.dumps(report['explain'])}")

        # Results must agree between servers: a digest of each answer.
        report["answers"] = {}
        for name, (desc, fn, _) in qs.items():
            if args.only and name not in args.only.split(","):
                continue
            try:
                r = fn(coll)
                report["answers"][name] = r if isinstance(r, int) else [d["_id"] for d in r][:3] + [len(r)]
            except PyMongoError as e:
                report["answers"][name] = f"ERROR {str(e)[:200]}"
        report["queries"] = {}
        for name, (desc, fn, _) in qs.items():
            if args.only and name not in args.only.split(","):
                continue
            row = {"what": desc, "loadavg_before": os.getloadavg()[0]}
            row["c1"] = time_query(server, fn, 1, args.runs, args.budget)
            if row["c1"]["n"] and row["c1"]["p50_ms"] > args.concurrent_cap_ms:
                # N clients of a server that is already this slow alone only queue.
                row[f"c{args.clients}"] = {"n": 0, "errors": 0, "skipped": True,
                                           "first_error": f"not run: 1 client p50 > {args.concurrent_cap_ms:g} ms"}
            else:
                row[f"c{args.clients}"] = time_query(server, fn, args.clients, max(1, args.runs // 2),
                                                     args.budget)
            report["queries"][name] = row
            log(f"{kind}: {name} {desc}: 1 client {fmt(row['c1'])}; {args.clients} clients "
                f"{fmt(row[f'c{args.clients}'])}")
        report["rss_end_mib"], report["peak_rss_end_mib"] = rss_mib(server.proc.pid)
        report["disk_end"] = dir_size_mib(server.data)
        report["ttl_expired_doc_removed"] = ttl_swept(server)
        c.close()
    finally:
        server.stop()
    report["disk_after_stop"] = dir_size_mib(server.data)
    if kind == "nx-27017":
        report["neosqlite_explain"] = neosqlite_explain(os.path.join(server.data, "cron.db"), explained,
                                                        SORT_MAIN if args.shape == "main" else SORT)
    if not args.keep:
        shutil.rmtree(server.dir, ignore_errors=True)
    return report


def neosqlite_explain(path, explained, sort):
    """nx-27017's own explain ignores sort, skip and limit (it explains
    find(filter) alone, with zeroed stats); neosqlite's cursor explain on
    the server's file, once the server is stopped, shows the SQL plan of
    the whole cursor."""
    try:
        import neosqlite
    except ImportError:
        return "neosqlite not importable from this python"
    out = {}
    try:
        conn = neosqlite.Connection(path)
        coll = conn["log"]
        for name, filt in explained.items():
            e = coll.find(filt, NO_OUTPUT).sort(sort).limit(PAGE).explain()
            out[name] = [row["detail"] for row in e["queryPlanner"]["winningPlan"]]
        e = coll.find({"jobName": "job-0000"}, NO_OUTPUT).sort(sort).skip(DEEP).limit(PAGE).explain()
        out["e1"] = [row["detail"] for row in e["queryPlanner"]["winningPlan"]]
        conn.close()
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def fmt(r):
    if not r["n"]:
        return f"no answer ({r['errors']} errors: {r['first_error']})"
    return (f"n={r['n']} p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms "
            f"err {r['errors']} hello max {r['hello_max_ms']} ms")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def markdown(reports, clients):
    names = list(reports[0]["queries"].keys())
    out = []
    head = "| query | " + " | ".join(
        f"{r['server']} 1 client p50 / p99 ms | {r['server']} {clients} clients p50 / p99 ms" for r in reports) + " |"
    out.append(head)
    out.append("|---|" + "---:|" * (2 * len(reports)))
    for n in names:
        cells = []
        for r in reports:
            q = r["queries"].get(n)
            for k in ("c1", f"c{clients}"):
                if not q:
                    cells.append("–")
                    continue
                x = q[k]
                if x.get("skipped"):
                    cells.append("not run ¶")
                elif not x["n"]:
                    cells.append(f"error ({x['errors']})")
                else:
                    cell = f"{x['p50_ms']:,} / {x['p99_ms']:,}"
                    if x["errors"]:
                        cell += f" ({x['errors']} err)"
                    if x["hello_over_3s"]:
                        cell += " ‡"
                    cells.append(cell)
        out.append(f"| {n}: {reports[0]['queries'][n]['what']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = os.environ.get("RCRON_CACHE", os.path.expanduser("~/.cache/rcron"))
    ap.add_argument("--servers", default="nx-27017,secantusdb", help="nx-27017 (nx), secantusdb (secantus)")
    ap.add_argument("--nx-bin", default=os.path.join(cache, "venv-nx-0.8.1/bin/nx-27017"))
    ap.add_argument("--secantus-bin", default=os.path.join(cache, "venv-secantus-0.7.0b3/bin/secantusd-py"))
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--shape", choices=["brief", "main"], default="brief",
                    help="brief: pages sorted by (startTime, _id) as issue 19 asks; "
                         "main: main's MongoRunLog — (startTime, runId, attempt), limit + 1, capped counts")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=50, help="calls per query with 1 client (each of N clients: half)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--budget", type=float, default=60, help="seconds per query and client count")
    ap.add_argument("--insert-budget", type=float, default=1800, help="seconds to bulk-load; stops there")
    ap.add_argument("--concurrent-cap-ms", type=float, default=5000,
                    help="skip the N-client run of a query whose 1-client p50 is above this")
    ap.add_argument("--only", help="comma-separated query names to time")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--now-ms", type=int, default=int(time.time() * 1000),
                    help="the newest record's time (the same data for every server)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs")
    ap.add_argument("--out", default="target/store-compare.json")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="print the tables of earlier reports (one per server) and exit")
    args = ap.parse_args()

    if args.merge:
        reports = [r for path in args.merge for r in json.load(open(path))["reports"]]
        summary(reports, args.clients)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="rcron-store-compare.")
    reports = []
    for kind in args.servers.split(","):
        kind = {"nx": "nx-27017", "secantus": "secantusdb"}.get(kind, kind)
        binary = {"nx-27017": args.nx_bin, "secantusdb": args.secantus_bin}[kind]
        log(f"{kind}: {binary}, {args.records:,} records, data under {workdir}")
        reports.append(bench_server(kind, binary, args, workdir))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "loadavg": os.getloadavg(), "reports": reports}, f, indent=1,
                      default=str)
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    summary(reports, args.clients)


def summary(reports, clients):
    print(markdown(reports, clients))
    if len(reports) > 1:
        a0 = reports[0]["answers"]
        for r in reports[1:]:
            diff = {k: (a0.get(k), v) for k, v in r["answers"].items() if a0.get(k) != v}
            print(f"\nanswers {reports[0]['server']} vs {r['server']}: "
                  + ("identical" if not diff else f"DIFFER {json.dumps(diff)}"))
    for r in reports:
        print(f"\n{r['server']} {r['version']}: {r['insert']['records']:,} records at {r['insert']['per_s']:,}/s; "
              f"RSS {r['rss_end_mib']} MiB (peak {r['peak_rss_end_mib']}); disk {r['disk_end']['apparent_mib']} MiB; "
              f"indexes {r['indexes']}; explain {json.dumps(r['explain'])}; TTL swept {r['ttl_expired_doc_removed']}")
        bad = {k: v for k, v in r["compat"].items() if isinstance(v, dict) and not v.get("ok", True)}
        if bad:
            print(f"  compat failures: {json.dumps(bad)}")


if __name__ == "__main__":
    main()
