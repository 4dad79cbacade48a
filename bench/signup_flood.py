#!/usr/bin/env python3
"""Anonymous sign-ups from CONC threads, PER each (distinct usernames): what bench/signup_flood.sh
throws at the service. Prints the answers by status."""
import json, sys, threading, time, urllib.request, uuid
base = sys.argv[1]; conc = int(sys.argv[2]); per = int(sys.argv[3])
codes = {}
lock = threading.Lock()
def worker():
    for _ in range(per):
        body = json.dumps({"username": "u" + uuid.uuid4().hex[:20], "password": "correct horse battery staple"}).encode()
        req = urllib.request.Request(base + "/accounts", data=body, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r: c = r.status
        except urllib.error.HTTPError as e: c = e.code
        except Exception as e: c = type(e).__name__
        with lock: codes[c] = codes.get(c, 0) + 1
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"{conc}x{per} sign-ups in {time.time()-t0:.1f}s: {codes}")
