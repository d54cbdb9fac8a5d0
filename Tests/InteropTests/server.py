#!/usr/bin/env python3
"""The private-messaging server of the Socket.IO guide, part II (persistent
user ID), ported onto python-socketio + aiohttp: a real, independent
Socket.IO v4 implementation for Parley's interop tests (see PROTOCOL.md).

Prints "LISTENING <port>" once it accepts connections. With --exit-with-stdin
it exits when its stdin closes, so it never outlives the test process that
started it; without, it runs until interrupted (make run).
"""

import argparse
import asyncio
import json
import os
import secrets
import sys

import socketio
from aiohttp import web


def random_id():
    # crypto.randomBytes(8).toString("hex") in the guide.
    return secrets.token_hex(8)


class SessionStore:
    """In memory, as in the guide; with a file, sessions survive a restart
    (as a server with a persistent store does)."""

    def __init__(self, path=None):
        self.path = path
        self.sessions = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.sessions = json.load(f)
            for session in self.sessions.values():
                session["connected"] = False

    def find(self, session_id):
        return self.sessions.get(session_id)

    def save(self, session_id, session):
        self.sessions[session_id] = session
        if self.path:
            with open(self.path + ".tmp", "w") as f:
                json.dump(self.sessions, f)
            os.replace(self.path + ".tmp", self.path)

    def all(self):
        return list(self.sessions.values())


class MessageStore:
    """Part III of the guide: every private message is kept, so a message to a
    user who is offline is shown when they come back."""

    def __init__(self):
        self.messages = []

    def save(self, message):
        self.messages.append(message)

    def for_user(self, user_id):
        return [m for m in self.messages if m["from"] == user_id or m["to"] == user_id]


def create_app(ping_interval, ping_timeout, sessions_file=None, store_messages=False, transports=None):
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins="*",
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        transports=transports,
    )
    app = web.Application()
    sio.attach(app)
    store = SessionStore(sessions_file)
    messages = MessageStore() if store_messages else None

    @sio.event
    async def connect(sid, environ, auth):
        # The middleware: adopt a known session, else create one for a username.
        auth = auth if isinstance(auth, dict) else {}
        session_id = auth.get("sessionID")
        session = store.find(session_id) if isinstance(session_id, str) else None
        if session is not None:
            state = {"sessionID": session_id, "userID": session["userID"], "username": session["username"]}
        else:
            username = auth.get("username")
            if not isinstance(username, str) or not username:
                raise socketio.exceptions.ConnectionRefusedError("invalid username")
            state = {"sessionID": random_id(), "userID": random_id(), "username": username}
        await sio.save_session(sid, state)

        # On connection, in the guide's order.
        store.save(state["sessionID"], {"userID": state["userID"], "username": state["username"], "connected": True})
        await sio.emit("session", {"sessionID": state["sessionID"], "userID": state["userID"]}, to=sid)
        await sio.enter_room(sid, state["userID"])
        users = [
            {"userID": s["userID"], "username": s["username"], "connected": s["connected"]}
            for s in store.all()
        ]
        if messages is not None:
            # Part III: each entry carries the conversation between it and the receiver.
            mine = messages.for_user(state["userID"])
            for user in users:
                user["messages"] = [
                    m for m in mine
                    if (m["from"] == user["userID"] and m["to"] == state["userID"])
                    or (m["to"] == user["userID"] and m["from"] == state["userID"])
                ]
        await sio.emit("users", users, to=sid)
        connected = {"userID": state["userID"], "username": state["username"], "connected": True}
        if messages is not None:
            connected["messages"] = []
        await sio.emit("user connected", connected, skip_sid=sid)

    @sio.on("private message")
    async def private_message(sid, data):
        state = await sio.get_session(sid)
        if not isinstance(data, dict) or not isinstance(data.get("to"), str):
            return
        message = {"content": data.get("content"), "from": state["userID"], "to": data["to"]}
        if messages is not None:
            messages.save(message)
        await sio.emit("private message", message, to=[data["to"], state["userID"]], skip_sid=sid)

    @sio.event
    async def disconnect(sid, *args):
        state = await sio.get_session(sid)
        others = [s for s, _ in sio.manager.get_participants("/", state["userID"]) if s != sid]
        if not others:
            await sio.emit("user disconnected", state["userID"], skip_sid=sid)
            store.save(state["sessionID"], {"userID": state["userID"], "username": state["username"], "connected": False})

    return app


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ping-interval", type=float, default=25)
    parser.add_argument("--ping-timeout", type=float, default=20)
    parser.add_argument("--sessions-file", help="keep sessions in this JSON file across restarts")
    parser.add_argument("--store-messages", action="store_true", help="part III: keep messages, send them in users")
    parser.add_argument("--exit-with-stdin", action="store_true", help="exit when standard input closes")
    parser.add_argument("--transports", help="comma-separated, e.g. polling: a server that does not take WebSocket")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this PEM certificate and key")
    args = parser.parse_args()

    transports = args.transports.split(",") if args.transports else None
    runner = web.AppRunner(create_app(args.ping_interval, args.ping_timeout, args.sessions_file, args.store_messages, transports))
    await runner.setup()
    ssl_context = None
    if args.tls:
        import ssl
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls[0], args.tls[1])
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)

    if args.exit_with_stdin:
        # Until stdin closes (the parent is gone) or the process is signalled.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    else:
        await asyncio.Event().wait()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
