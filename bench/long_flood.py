#!/usr/bin/env python3
"""Floods of long requests for bench/hostile_bulkheads.sh (loopback only, bounded in count
and time). Clients connect from 127.0.0.FIRST … 127.0.0.(FIRST+ADDRS-1), spread evenly.

  long_flood.py pg HOST PORT N SECONDS FIRST ADDRS
      N workers, each repeating GET /seed/postgres-async?delay=10 on a fresh connection
      (10 ms pause after a refusal): an anonymous flood of slow database requests
  long_flood.py sleep HOST PORT N SECONDS FIRST ADDRS
      N connections each running GET /seed/poll-sleep?seconds=30, reopened when they end
  long_flood.py streams HOST PORT N SECONDS FIRST ADDRS TOKEN
      N event streams (GET /notes/events) of one account, reopened 1 s after they end or
      are refused

Prints one JSON line when done: requests started, answers by status, connections the
server closed before the response ended, connect errors.
"""
import asyncio
import collections
import json
import sys
import time


async def one(host, port, local, request, end, stats, hold):
    """One request on a fresh connection from `local`; returns the status (0: none)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0))
    except OSError:
        stats["connect_errors"] += 1
        await asyncio.sleep(0.2)
        return 0
    stats["started"] += 1
    status = 0
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=max(end - time.monotonic(), 0.1))
        status = int(head.split(b" ", 2)[1])
        stats["status_%d" % status] += 1
        if hold and status == 200:
            # Read until the server ends the response (or closes the connection early).
            while time.monotonic() < end:
                try:
                    data = await asyncio.wait_for(reader.read(4096), timeout=max(end - time.monotonic(), 0.1))
                except asyncio.TimeoutError:
                    break
                if not data:
                    break
                if hold == "sleep" and b"slept 30/30" in data:
                    return status
            else:
                return status
            if time.monotonic() < end:
                stats["closed_early"] += 1
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, IndexError):
        if time.monotonic() < end:
            stats["cut"] += 1
    finally:
        writer.close()
    return status


async def worker(mode, host, port, local, end, stats, token):
    if mode == "pg":
        request = b"GET /seed/postgres-async?delay=10 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        hold = None
    elif mode == "sleep":
        request = b"GET /seed/poll-sleep?seconds=30 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        hold = "sleep"
    else:
        request = (
            "GET /notes/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
            "Accept: text/event-stream\r\n\r\n" % token
        ).encode()
        hold = "stream"
    while time.monotonic() < end:
        status = await one(host, port, local, request, end, stats, hold)
        if mode == "pg" and status != 200:
            await asyncio.sleep(0.01)
        elif mode == "streams":
            await asyncio.sleep(1.0)


async def main():
    mode, host, port, n, seconds, first, addrs = sys.argv[1:8]
    token = sys.argv[8] if len(sys.argv) > 8 else ""
    port, n, seconds, first, addrs = int(port), int(n), float(seconds), int(first), int(addrs)
    end = time.monotonic() + seconds
    stats = collections.Counter()
    tasks = [
        asyncio.ensure_future(worker(mode, host, port, "127.0.0.%d" % (first + i % addrs), end, stats, token))
        for i in range(n)
    ]
    await asyncio.wait(tasks, timeout=seconds + 15)
    for task in tasks:
        task.cancel()
    print(json.dumps(dict(sorted(stats.items()))))


if __name__ == "__main__":
    asyncio.run(main())
