#!/usr/bin/env python3
"""Log-in and stream clients for bench/hostile_login.sh (loopback only, bounded in count and time).

  hostile_login.py loop HOST PORT N SECONDS USER PASSWORD
      N clients logging in as USER in a loop for SECONDS: status counts, logins/s
  hostile_login.py probe HOST PORT SECONDS TOKEN
      one client: GET /notes with TOKEN, one after another, for SECONDS: p50/p99 ms
  hostile_login.py guesses HOST PORT N USER FROM [concurrent|sequential]
      N wrong-password logins as USER from the loopback address FROM: status counts
  hostile_login.py login HOST PORT USER PASSWORD FROM
      one log-in from FROM: status and ms
  hostile_login.py streams HOST PORT TOKEN N
      N event streams opened one after another (time to the response head, then closed):
      median and p90 ms

Each prints one JSON line.
"""
import asyncio
import json
import statistics
import sys
import time


async def request(host, port, method, path, headers=(), body=b"", source=None, head_only=False):
    """One request on a fresh connection: (status, ms to the response head)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(
        host, port, local_addr=(source, 0) if source else None
    )
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        elapsed = (time.perf_counter() - start) * 1000
        status = int(head.split(b" ", 2)[1])
        if not head_only:
            await reader.read()
        return status, elapsed
    finally:
        writer.close()


def credentials(user, password):
    return json.dumps({"username": user, "password": password}).encode()


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))], 2)


async def loop(host, port, n, seconds, user, password):
    end = time.monotonic() + seconds
    counts = {}

    async def one():
        while time.monotonic() < end:
            try:
                status, _ = await request(host, port, "POST", "/sessions", body=credentials(user, password))
            except (OSError, asyncio.IncompleteReadError):
                status = "error"
            counts[status] = counts.get(status, 0) + 1

    await asyncio.gather(*(one() for _ in range(n)))
    total = sum(counts.values())
    return {"clients": n, "seconds": seconds, "statuses": counts, "per_second": round(total / seconds, 1)}


async def probe(host, port, seconds, token):
    end = time.monotonic() + seconds
    times, counts = [], {}
    while time.monotonic() < end:
        try:
            status, ms = await request(host, port, "GET", "/notes", [("Authorization", f"Bearer {token}")])
        except (OSError, asyncio.IncompleteReadError):
            status, ms = "error", None
        counts[status] = counts.get(status, 0) + 1
        if ms is not None:
            times.append(ms)
    return {"requests": len(times), "statuses": counts, "p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99)}


async def guesses(host, port, n, user, source, mode):
    counts = {}

    async def one(i):
        try:
            status, _ = await request(
                host, port, "POST", "/sessions", body=credentials(user, f"wrong guess {i}"), source=source
            )
        except (OSError, asyncio.IncompleteReadError):
            status = "error"
        counts[status] = counts.get(status, 0) + 1

    if mode == "concurrent":
        await asyncio.gather(*(one(i) for i in range(n)))
    else:
        for i in range(n):
            await one(i)
    return {"guesses": n, "from": source, "mode": mode, "statuses": counts}


async def login(host, port, user, password, source):
    status, ms = await request(host, port, "POST", "/sessions", body=credentials(user, password), source=source)
    return {"from": source, "status": status, "ms": round(ms, 2)}


async def streams(host, port, token, n):
    times, counts = [], {}
    for _ in range(n):
        status, ms = await request(
            host, port, "GET", "/notes/events", [("Authorization", f"Bearer {token}")], head_only=True
        )
        counts[status] = counts.get(status, 0) + 1
        times.append(ms)
    return {"opens": n, "statuses": counts, "median_ms": pct(times, 0.5), "p90_ms": pct(times, 0.9)}


def main():
    cmd, host, port, *rest = sys.argv[1:]
    port = int(port)
    if cmd == "loop":
        out = loop(host, port, int(rest[0]), float(rest[1]), rest[2], rest[3])
    elif cmd == "probe":
        out = probe(host, port, float(rest[0]), rest[1])
    elif cmd == "guesses":
        out = guesses(host, port, int(rest[0]), rest[1], rest[2], rest[3] if len(rest) > 3 else "sequential")
    elif cmd == "login":
        out = login(host, port, rest[0], rest[1], rest[2])
    elif cmd == "streams":
        out = streams(host, port, rest[0], int(rest[1]))
    else:
        sys.exit(__doc__)
    print(json.dumps(asyncio.run(out)))


if __name__ == "__main__":
    main()
