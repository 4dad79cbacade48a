#!/usr/bin/env python3
"""Hostile connection floods for bench/hostile.sh (loopback only, bounded in count and time).

  flood.py slowloris HOST PORT N SECONDS   N connections sending a request head one byte
                                           every 2 s, reopened when the server closes them
  flood.py idle HOST PORT N SECONDS        N keep-alive connections: one GET /healthz, then
                                           nothing

Prints one JSON line when done: connections opened, closed by the server, the longest any
connection stayed open, and how many were still open at the end.
"""
import asyncio
import json
import sys
import time

HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "


async def slowloris(host, port, end, stats):
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["opened"] += 1
        opened = time.monotonic()
        closed = False
        try:
            writer.write(HEAD[:1])
            sent = 1
            while time.monotonic() < end:
                try:
                    data = await asyncio.wait_for(reader.read(4096), timeout=2.0)
                    if not data:
                        closed = True
                        break
                except asyncio.TimeoutError:
                    writer.write(HEAD[sent:sent + 1] if sent < len(HEAD) else b"a")
                    sent += 1
                    await writer.drain()
        except OSError:
            closed = True
        lived = time.monotonic() - opened
        stats["longest"] = max(stats["longest"], lived)
        if closed:
            stats["closed_by_server"] += 1
        else:
            stats["open_at_end"] += 1
        writer.close()


async def idle(host, port, end, stats):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats["connect_errors"] += 1
        return
    stats["opened"] += 1
    opened = time.monotonic()
    closed = False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        while time.monotonic() < end:
            data = await asyncio.wait_for(reader.read(4096), timeout=max(0.1, end - time.monotonic()))
            if not data:
                closed = True
                break
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        pass
    except OSError:
        closed = True
    stats["longest"] = max(stats["longest"], time.monotonic() - opened)
    if closed:
        stats["closed_by_server"] += 1
    else:
        stats["open_at_end"] += 1
    writer.close()


async def main():
    mode, host, port, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    end = time.monotonic() + seconds
    stats = dict(mode=mode, connections=n, seconds=seconds, opened=0, closed_by_server=0,
                 open_at_end=0, connect_errors=0, longest=0.0)
    worker = slowloris if mode == "slowloris" else idle
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(worker(host, port, end, stats)))
        await asyncio.sleep(0.001)  # ~1,000 connects a second
    await asyncio.gather(*tasks, return_exceptions=True)
    stats["longest"] = round(stats["longest"], 1)
    print(json.dumps(stats), flush=True)


asyncio.run(main())
