#!/usr/bin/env python3
"""python-socketio's AsyncClient on parley-bench's flood: the peer in
`parley-bench ingest --compare`. Prints one JSON line like parley-bench."""

import argparse
import asyncio
import json
import time

import socketio


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--transport", choices=["websocket", "polling"], default="websocket")
    args = parser.parse_args()

    sio = socketio.AsyncClient(reconnection=False)
    done = asyncio.Event()
    state = {"received": 0, "start": None, "end": None}

    @sio.on("session")
    async def on_session(data):
        state["start"] = time.perf_counter()

    @sio.on("private message")
    async def on_message(data):
        state["received"] += 1
        if state["received"] == args.count:
            state["end"] = time.perf_counter()
            done.set()

    await sio.connect(args.url, transports=[args.transport], auth={"username": "bench-python"})
    await done.wait()
    seconds = state["end"] - state["start"]
    print(json.dumps({
        "benchmark": "ingest", "client": f"python-socketio ({args.transport})", "received": state["received"],
        "seconds": round(seconds, 3), "per_second": round(state["received"] / seconds),
    }), flush=True)
    await sio.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
