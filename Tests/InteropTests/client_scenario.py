#!/usr/bin/env python3
"""The whole private-messaging scenario (PROTOCOL.md) driven by python-socketio clients
against a server: login, users, user connected, delivery with from/to and no echo to the
sender, a second tab of the same user, an invalid username, an offline message kept and
delivered on return, reconnection with the sessionID.

Usage: client_scenario.py URL [URL2] [--websocket-only]

With URL2 (another server of the same cluster), bob logs in there, alice's second tab too,
and bob comes back on the first: every step crosses servers.
Prints "SCENARIO OK" and exits 0 when every step holds; otherwise the failed step and 1.
"""

import asyncio
import sys

import socketio

TIMEOUT = 10
# The step under way, for the failure's message.
STEP = ["start"]


class User:
    def __init__(self, name, transports):
        self.name = name
        self.transports = transports
        self.client = socketio.AsyncClient(reconnection=False)
        self.events = asyncio.Queue()
        for event in ("session", "users", "user connected", "user disconnected", "private message", "connect_error"):
            self.client.on(event, self._recorder(event))

    def _recorder(self, event):
        async def record(data):
            await self.events.put((event, data))
        return record

    async def connect(self, url, auth, attempts=1):
        STEP[0] = f"{self.name} connects to {url} with {sorted(auth)}"
        """With `attempts`: a session made on another server of a cluster may reach this one
        a few milliseconds late; a refusal is tried again, 200 ms apart (a server limits new sessions per address)."""
        for attempt in range(attempts):
            try:
                await self.client.connect(url, auth=auth, transports=self.transports, wait_timeout=TIMEOUT)
                return
            except socketio.exceptions.ConnectionError:
                if attempt == attempts - 1:
                    raise
                await self.client.disconnect()
                while not self.events.empty():
                    self.events.get_nowait()
                self.client = socketio.AsyncClient(reconnection=False)
                for event in ("session", "users", "user connected", "user disconnected", "private message", "connect_error"):
                    self.client.on(event, self._recorder(event))
                await asyncio.sleep(0.2)

    async def next(self, wanted):
        """The next event named `wanted`, skipping others."""
        while True:
            event, data = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if event == wanted:
                return data

    async def nothing_for(self, wanted, seconds):
        try:
            while True:
                event, data = await asyncio.wait_for(self.events.get(), seconds)
                if event == wanted:
                    raise AssertionError(f"{self.name} unexpectedly got {wanted}: {data}")
        except asyncio.TimeoutError:
            pass


def check(condition, what):
    if not condition:
        raise AssertionError(what)


async def scenario(url, transports, other=None):
    other = other or url
    # Across servers, a login by session may come before the session does: a few tries.
    tries = 1 if other == url else 15
    # Login: session, then users with oneself in it.
    alice = User("alice", transports)
    await alice.connect(url, {"username": "alice"})
    alice_session = await alice.next("session")
    check(set(alice_session) >= {"sessionID", "userID"}, f"session has sessionID and userID: {alice_session}")
    users = await alice.next("users")
    check(any(u["userID"] == alice_session["userID"] and u["username"] == "alice" and u["connected"] for u in users),
          f"alice is in her users list: {users}")
    if transports is None:
        await asyncio.sleep(0.5)
        check(alice.client.transport() == "websocket", f"the polling session upgraded: {alice.client.transport()}")

    # A second user: the first is told.
    bob = User("bob", transports)
    await bob.connect(other, {"username": "bob"})
    bob_session = await bob.next("session")
    bob_users = await bob.next("users")
    # On another server of a cluster, alice's account may reach it a few milliseconds after
    # she was created: bob logs in again (his session) until his list has her, 2 s at most.
    for _ in range(15):
        if other == url or any(u["username"] == "alice" for u in bob_users):
            break
        await bob.client.disconnect()
        bob = User("bob", transports)
        await asyncio.sleep(0.2)
        await bob.connect(other, {"sessionID": bob_session["sessionID"]}, tries)
        await bob.next("session")
        bob_users = await bob.next("users")
    check({u["username"] for u in bob_users} >= {"alice", "bob"}, f"bob sees alice and bob: {bob_users}")
    joined = await alice.next("user connected")
    check(joined["userID"] == bob_session["userID"] and joined["username"] == "bob" and joined["connected"] is True,
          f"user connected for bob: {joined}")

    # Delivery with the server's from/to; never echoed to the sending socket.
    await alice.client.emit("private message", {"content": "hello bob 😀", "to": bob_session["userID"], "from": "forged"})
    message = await bob.next("private message")
    check(message == {"content": "hello bob 😀", "from": alice_session["userID"], "to": bob_session["userID"]},
          f"bob got the message from alice: {message}")
    await alice.nothing_for("private message", 0.3)

    # A second tab of alice: same userID; a message to alice reaches both tabs.
    tab = User("alice-tab", transports)
    await tab.connect(other, {"sessionID": alice_session["sessionID"]}, tries)
    tab_session = await tab.next("session")
    check(tab_session["userID"] == alice_session["userID"], "the second tab is the same user")
    await bob.client.emit("private message", {"content": "hi alice", "to": alice_session["userID"]})
    for where in (alice, tab):
        got = await where.next("private message")
        check(got["from"] == bob_session["userID"] and got["content"] == "hi alice", f"{where.name} got bob's reply: {got}")
    # What one tab sends shows in the other.
    await tab.client.emit("private message", {"content": "from the tab", "to": bob_session["userID"]})
    echoed = await alice.next("private message")
    check(echoed["content"] == "from the tab" and echoed["from"] == alice_session["userID"], f"the other tab saw it: {echoed}")
    await bob.next("private message")
    await tab.client.disconnect()

    # An invalid username is refused.
    nobody = User("nobody", transports)
    try:
        await nobody.connect(url, {})
        raise AssertionError("a connection without username was accepted")
    except socketio.exceptions.ConnectionError:
        refusal = await nobody.next("connect_error")
        check(refusal == {"message": "invalid username"}, f"refused with invalid username: {refusal}")
    finally:
        await nobody.client.disconnect()

    # Bob leaves: alice is told; a message to him is kept; he comes back with his sessionID.
    await bob.client.disconnect()
    left = await alice.next("user disconnected")
    check(left == bob_session["userID"], f"user disconnected with the bare userID: {left}")
    await alice.client.emit("private message", {"content": "while you were away", "to": bob_session["userID"]})
    await asyncio.sleep(0.2)
    back = User("bob-again", transports)
    await back.connect(url, {"sessionID": bob_session["sessionID"]}, tries)
    back_session = await back.next("session")
    check(back_session["userID"] == bob_session["userID"], "reconnecting with the sessionID keeps the userID")
    back_users = await back.next("users")
    alice_entry = next((u for u in back_users if u["userID"] == alice_session["userID"]), None)
    check(alice_entry is not None, "alice is in bob's users list")
    contents = [m["content"] for m in alice_entry.get("messages", [])]
    check("while you were away" in contents, f"the offline message was kept: {contents}")
    check("hello bob 😀" in contents, f"the whole conversation is there: {contents}")
    back_again = await alice.next("user connected")
    check(back_again["userID"] == bob_session["userID"], "alice is told bob is back")

    await back.client.disconnect()
    await alice.client.disconnect()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    transports = ["websocket"] if "--websocket-only" in sys.argv[2:] else None
    urls = [argument for argument in sys.argv[1:] if not argument.startswith("--")]
    try:
        asyncio.run(scenario(urls[0], transports, urls[1] if len(urls) > 1 else None))
    except (AssertionError, asyncio.TimeoutError, socketio.exceptions.SocketIOError) as error:
        print(f"SCENARIO FAILED: {type(error).__name__}: {error} (during: {STEP[0]})")
        return 1
    print("SCENARIO OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
