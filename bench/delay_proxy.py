"""A loopback TCP proxy that delays each direction by a fixed time: a slow link on one machine.

    python bench/delay_proxy.py TARGET_PORT DELAY_MS

It listens on 127.0.0.1 (a free port, printed on the first line of stdout) and connects each
client to 127.0.0.1:TARGET_PORT. Every chunk read is queued with a release time (now + delay)
and written when that time comes, so the two directions never wait for each other and a
chunk is never held longer than the delay: a round trip costs 2 x DELAY_MS whatever the
chunk sizes. Runs in its own process so a client timed in the bench process shares no GIL
with it. Stops when stdin closes (the bench ends it with terminate() too)."""

import asyncio
import sys


async def forward(reader, writer, delay):
    """Copy reader to writer, each chunk released `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def take():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except OSError:  # a reset: pass the end on, as an end of stream
            queue.put_nowait((loop.time() + delay, b""))

    async def give():
        while True:
            release, data = await queue.get()
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():  # half-close, as the sender did (QUIT, then FIN)
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    taker = asyncio.ensure_future(take())
    try:
        await give()
    finally:
        taker.cancel()


async def handle(target_port, delay, c_reader, c_writer):
    try:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        c_writer.close()
        return
    # asyncio sets TCP_NODELAY on its sockets: the proxy adds no Nagle stall of its own.
    try:
        await asyncio.gather(forward(c_reader, s_writer, delay),
                             forward(s_reader, c_writer, delay))
    except OSError:
        pass
    finally:
        s_writer.close()
        c_writer.close()


async def main(target_port, delay_ms):
    delay = delay_ms / 1000
    server = await asyncio.start_server(lambda r, w: handle(target_port, delay, r, w),
                                        "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until the parent closes our stdin (or terminates us).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
