#!/usr/bin/env python3
"""A scripted Engine.IO v4 server for the client's upgrade, slower than a real one where the
test needs it: after the WebSocket probe it holds the pending GET for --hold seconds before
answering it with a noop, so that the client is paused mid-upgrade, holding what it sends.

It prints one line per event on standard output ("LISTENING <port>", "PROBED", then
"POST <payload>" and "WS <frame>"), so that a test can see what reached it and by which way. It exits when
standard input closes."""

import argparse
import asyncio
import json
import sys

from aiohttp import web, WSMsgType


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=1.5)
    args = parser.parse_args()

    state = {"poll": None, "probed": asyncio.Event()}

    def say(line):
        print(line, flush=True)

    async def engine(request):
        if request.query.get("transport") == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                if message.data == "2probe":
                    await ws.send_str("3probe")
                    say("PROBED")
                    state["probed"].set()
                else:
                    say("WS " + message.data)
            return ws
        if "sid" not in request.query:
            return web.Response(text="0" + json.dumps({
                "sid": "s1", "upgrades": ["websocket"], "pingInterval": 300000,
                "pingTimeout": 200000, "maxPayload": 1000000,
            }))
        if request.method == "POST":
            say("POST " + (await request.text()).replace("\x1e", "|"))
            return web.Response(text="ok")
        # A GET: held until the probe, then for --hold seconds more, then a noop.
        await state["probed"].wait()
        await asyncio.sleep(args.hold)
        return web.Response(text="6")

    app = web.Application()
    app.router.add_route("*", "/engine.io/", engine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    say(f"LISTENING {site._server.sockets[0].getsockname()[1]}")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
