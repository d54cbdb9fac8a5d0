#!/usr/bin/env python3
"""python-socketio's AsyncClient on `parley-bench users`' storm: the peer in
`parley-bench users --compare`. It keeps what Parley keeps: every user by ID, and the
list in Parley's order (yourself first, then by username, then by ID) as each arrives,
with bisect. Prints one JSON line like parley-bench."""

import argparse
import asyncio
import bisect
import json
import time

import socketio


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()

    # aiohttp refuses WebSocket messages over 4 MiB by default: the list of 100,000 users is
    # about 8 MB (Parley accepts 16 MiB).
    sio = socketio.AsyncClient(reconnection=False, websocket_extra_options={"max_msg_size": 16 << 20})
    done = asyncio.Event()
    state = {"self": None, "start": None, "listed": None, "end": None, "connected": 0}
    users = {}
    order = []

    def key(user):
        return (user["userID"] != state["self"], user["username"], user["userID"])

    @sio.on("session")
    async def on_session(data):
        state["start"] = time.perf_counter()
        state["self"] = data["userID"]

    @sio.on("users")
    async def on_users(entries):
        for user in entries:
            users[user["userID"]] = user
        order[:] = sorted((key(user) for user in entries))
        state["listed"] = time.perf_counter()

    @sio.on("user connected")
    async def on_user_connected(user):
        user["connected"] = True
        users[user["userID"]] = user
        bisect.insort(order, key(user))
        state["connected"] += 1
        if state["connected"] == args.count:
            state["end"] = time.perf_counter()
            done.set()

    await sio.connect(args.url, transports=["websocket"], auth={"username": "bench-python"})
    await asyncio.wait_for(done.wait(), 600)
    print(json.dumps({
        "benchmark": "users", "client": "python-socketio", "users": args.count,
        "list_seconds": round(state["listed"] - state["start"], 3),
        "connected_seconds": round(state["end"] - state["listed"], 3),
        "connected_per_second": round(args.count / (state["end"] - state["listed"])),
    }), flush=True)
    await sio.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
