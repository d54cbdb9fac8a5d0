"""A TCP proxy in front of several servers, as nginx with proxy_next_upstream is: each new
connection goes to the first backend that accepts it. Prints "LISTENING <port>" when ready;
exits when its standard input closes.

    failover_proxy.py --backend 127.0.0.1:3001 --backend 127.0.0.1:3002
"""
import argparse
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", action="append", required=True)
    args = parser.parse_args()
    backends = [(host, int(port)) for host, port in (b.rsplit(":", 1) for b in args.backend)]

    async def handle(client_reader, client_writer):
        for host, port in backends:
            try:
                server_reader, server_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
            return
        client_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
