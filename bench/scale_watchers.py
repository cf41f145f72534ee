"""``python -m bench.scale_watchers URL PATH COUNT [SELECTOR]``: simulated agents.

Opens COUNT watches of PATH at URL from the current resourceVersion (each
with its own connection, as COUNT agents would; ``{i}`` in SELECTOR becomes
the watcher's number, for label selectors), decodes every event as an agent
does, and on SIGTERM prints one JSON line: events and bytes per watcher and
this process's CPU seconds.  Benchmark support for ``bench_scale`` only.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys

import aiohttp


async def watch(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    counts: list[int],
    started: asyncio.Event,
) -> None:
    while True:
        async with session.get(url, params=params) as response:
            started.set()
            async for line in response.content:
                counts[1] += len(line)
                event = json.loads(line)
                if event.get("type") == "BOOKMARK":
                    continue
                counts[0] += 1
                meta = (event.get("object") or {}).get("metadata") or {}
                params["resourceVersion"] = str(meta.get("resourceVersion") or "")


async def main(url: str, path: str, count: int, selector: str) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(url + path, params={"limit": "1"}) as answer:
            version = (await answer.json())["metadata"]["resourceVersion"]
        counts = [[0, 0] for _ in range(count)]
        tasks, started = [], [asyncio.Event() for _ in range(count)]
        for i in range(count):
            params = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
            params["timeoutSeconds"] = "3600"
            if selector:
                params["labelSelector"] = selector.format(i=i)
            watching = watch(session, url + path, params, counts[i], started[i])
            tasks.append(asyncio.create_task(watching))
        await asyncio.gather(*(event.wait() for event in started))
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for task in tasks:
            task.cancel()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        found = {"events": [c[0] for c in counts], "bytes": [c[1] for c in counts],
                 "cpu": usage.ru_utime + usage.ru_stime}  # fmt: skip
        print(json.dumps(found), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), (sys.argv[4:] or [""])[0]))
