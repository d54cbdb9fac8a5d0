#!/usr/bin/env python3
"""python-engineio's and python-socketio's clients (independent implementations) against
`parley-server --app engine.io-test` and `--app socket.io-test`: the protocol documents'
test apps, as the official suites expect them, tried on one transport.

Usage: test_apps_scenario.py URL (engine.io | socket.io) (polling | websocket | upgrade)

- polling: HTTP long-polling only; websocket: WebSocket only; upgrade: long-polling first,
  then the upgrade to WebSocket (the clients' default).
Prints "SCENARIO OK" and exits 0 when every step holds; otherwise the failed step and 1.
"""

import asyncio
import sys

import engineio
import socketio

TIMEOUT = 10
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": ["polling", "websocket"]}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


async def engine_io(url, transports):
    client = engineio.AsyncClient()
    received = asyncio.Queue()

    @client.on("message")
    async def on_message(data):
        await received.put(data)

    await client.connect(url, engineio_path="engine.io", transports=transports)
    # The document's settings, as the handshake announces them.
    check(client.ping_interval == 0.3 and client.ping_timeout == 0.2, f"timing {client.ping_interval}/{client.ping_timeout}")
    # (python-engineio's connect() returns once the upgrade, when there is one, is done.)
    expected = "websocket" if transports == ["polling", "websocket"] else transports[0]
    check(client.current_transport == expected, f"transport {client.current_transport}, not {expected}")
    await client.send("hello")
    check(await asyncio.wait_for(received.get(), TIMEOUT) == "hello", "text echo")
    await client.send(b"\x01\x02\x03\x04")
    check(await asyncio.wait_for(received.get(), TIMEOUT) == b"\x01\x02\x03\x04", "binary echo")
    await client.send("ünïcödé \u2028 and more")
    check(await asyncio.wait_for(received.get(), TIMEOUT) == "ünïcödé \u2028 and more", "unicode echo")
    await client.disconnect()


async def socket_io(url, transports):
    client = socketio.AsyncClient(reconnection=False)
    events = asyncio.Queue()
    for name in ("auth", "message-back", "answer", "no-answer"):
        client.on(name, (lambda name: lambda *args: events.put_nowait((name, args)))(name))
    client.on("auth", lambda *args: events.put_nowait(("custom auth", args)), namespace="/custom")

    @client.on("question")
    async def on_question(*args):
        # Answering the server's question: the handler's return value is the acknowledgement.
        return ("answer to", *args)

    async def next_event(wanted):
        name, args = await asyncio.wait_for(events.get(), TIMEOUT)
        check(name == wanted, f"expected {wanted}, got {name} {args}")
        return args

    await client.connect(url, auth={"token": "123"}, namespaces=["/", "/custom"], transports=transports, wait_timeout=TIMEOUT)
    auths = sorted([await next_event_any(events), await next_event_any(events)])
    check(auths == [("auth", ({"token": "123"},)), ("custom auth", ({"token": "123"},))], f"auth events {auths}")

    await client.emit("message", (1, "2", {"3": [True]}))
    check(await next_event("message-back") == (1, "2", {"3": [True]}), "message-back")
    await client.emit("message", (b"\x01\x02\x03", {"nested": b"\x04\x05"}))
    check(await next_event("message-back") == (b"\x01\x02\x03", {"nested": b"\x04\x05"}), "binary message-back")

    acked = await client.call("message-with-ack", (1, "2", {"3": [False]}), timeout=TIMEOUT)
    check(acked == [1, "2", {"3": [False]}] or acked == (1, "2", {"3": [False]}), f"ack {acked}")
    acked = await client.call("message-with-ack", (b"\x06",), timeout=TIMEOUT)
    check(acked == b"\x06" or list(acked) == [b"\x06"], f"binary ack {acked}")

    await client.emit("ask", ("why", b"\x07"))
    check(await next_event("answer") == ("answer to", "why", b"\x07"), "the server's question answered")

    if transports == ["polling", "websocket"]:
        check(client.transport() == "websocket", f"not upgraded: {client.transport()}")
    else:
        check(client.transport() == transports[0], f"transport {client.transport()}")
    await client.disconnect()


async def next_event_any(events):
    return await asyncio.wait_for(events.get(), TIMEOUT)


async def main():
    url, app, transport = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        await (engine_io if app == "engine.io" else socket_io)(url, TRANSPORTS[transport])
    except Exception as error:  # noqa: BLE001: report any failure as the failed step
        print(f"FAILED: {type(error).__name__}: {error}")
        sys.exit(1)
    print("SCENARIO OK")


asyncio.run(main())
