# microsmtp.aio in an asyncio app, one driver for both runtimes: tests/test_aio.py calls
# run() on CPython (with the shim's net); the MicroPython unix port runs this module with a
# JSON config file as argv[1] (its wheel crashes on arguments over 255 characters) and
# prints one JSON line a result. Beside each send a ticker task wakes every 10 ms and keeps
# the largest gap it saw: the send must never hold the scheduler.
#
# cfg: server, port, from, to, subject, body (or body_file, sent from the file), how
# ("send", "session": two mails, "mail_send"), tls, cadata (the CA file's path), username,
# password, timeouts, cancel_after_ms (cancel the send this long after its body began: the
# body is read from body_file by a generator that marks its first chunk), then: a second
# send on the same client to next_port (reusable after any failure); outbox (a folder),
# alerts, up_port: alerts through an Outbox's run_forever() task (see outbox()).
import asyncio
import json
import sys
import time

import microsmtp
from microsmtp import aio

try:
    ticks_ms, ticks_diff = time.ticks_ms, time.ticks_diff
except AttributeError:  # CPython: the shim puts them into time when it is installed
    ticks_ms = ticks_diff = None


async def ticker(state):
    last = ticks_ms()
    while not state["stop"]:
        await asyncio.sleep(0.01)
        now = ticks_ms()
        state["gap"] = max(state["gap"], ticks_diff(now, last))
        state["ticks"] += 1
        last = now


def chunks(path, state):
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4096)
            if not chunk:
                return
            state["body_started"] = True
            yield chunk


async def one(client, cfg, state):
    """cfg's send (of its kind): None, or the SMTPError."""
    body = cfg.get("body", "Boiler at 92 C\n")
    if cfg.get("body_file"):
        body = chunks(cfg["body_file"], state)
    try:
        how = cfg.get("how", "send")
        if how == "session":
            async with client.session() as s:
                await s.send(cfg["to"], cfg["subject"] + " 1", body)
                await s.send(cfg["to"], cfg["subject"] + " 2", "second\n")
        elif how == "mail_send":
            status = await client.mail_send(cfg["to"][0], microsmtp.PRIORITY_NORMAL,
                                            cfg["subject"], body)
            if status:
                return microsmtp.SMTPError(status, "mail_send: status %d" % status)
        else:
            await client.send(cfg["to"], cfg["subject"], body)
    except microsmtp.SMTPError as e:
        return e
    return None


async def outbox(client, cfg, state, res):
    """cfg["alerts"] put into an Outbox whose run_forever() task sends them; with
    cfg["up_port"], the server is down at first (cfg["port"] refuses) and comes up at
    up_port once a try has failed; with cfg["put_later"], put once the task sleeps (its
    interval is 30 s: only put() waking it sends them soon). Until the queue is empty (or
    20 s: res["ms"] says how long), then the task is cancelled."""
    from microsmtp.outbox import Outbox

    box = Outbox(client, path=cfg["outbox"], backoff=0.2)
    task = asyncio.create_task(box.run_forever(interval=30 if cfg.get("put_later") else 5))
    if cfg.get("put_later"):
        await asyncio.sleep(0.3)  # the task has found nothing due and sleeps
    for k in range(cfg["alerts"]):  # before the task runs again: one flush takes them all
        box.put(cfg["to"], "%s %d" % (cfg["subject"], k), "Boiler at 9%d C\n" % k)
    started = ticks_ms()
    failed = None
    while box.pending() and ticks_diff(ticks_ms(), started) < 20000:
        if cfg.get("up_port") and failed is None and box.last_error is not None:
            failed = box.last_error.status
            client._session.port = cfg["up_port"]  # the server is back
        await asyncio.sleep(0.02)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    res.update(pending=len(box.pending()), dead=len(box.dead()), first_failure=failed,
               delivered_ms=ticks_diff(ticks_ms(), started))


async def outbox_cancel(client, cfg, state, res):
    """One alert; its aflush() task cancelled after cfg["cancel_after_ms"] (the server
    answers slowly, so mid-session): the alert stays queued; then aflush() sends it."""
    from microsmtp.outbox import Outbox

    box = Outbox(client, path=cfg["outbox"], backoff=0.2)
    box.put(cfg["to"], cfg["subject"], "Boiler at 92 C\n")
    task = asyncio.create_task(box.aflush())
    await asyncio.sleep(cfg["cancel_after_ms"] / 1000)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        res["cancelled"] = True
    res["pending_after_cancel"] = len(box.pending())
    res["pool_full_after_cancel"] = client.pool.available() == client.pool.count
    res["sent_later"] = await box.aflush()
    res.update(pending=len(box.pending()), dead=len(box.dead()))


async def main(cfg, report, net):
    global ticks_ms, ticks_diff
    if ticks_ms is None:
        ticks_ms, ticks_diff = time.ticks_ms, time.ticks_diff
    client = aio.Client(cfg["server"], cfg["port"], from_address=cfg["from"],
                        client_domain="boiler.example.com", username=cfg.get("username"),
                        password=cfg.get("password"), tls=cfg.get("tls"),
                        cadata=cfg.get("cadata"),
                        timeouts=cfg.get("timeouts"), net=net)
    state = {"stop": False, "gap": 0, "ticks": 0, "body_started": False}
    tick = asyncio.create_task(ticker(state))
    started = ticks_ms()
    res = {"status": 0, "cancelled": False}
    if cfg.get("outbox") and cfg.get("cancel_after_ms"):
        task = asyncio.create_task(outbox_cancel(client, cfg, state, res))
    elif cfg.get("outbox"):
        task = asyncio.create_task(outbox(client, cfg, state, res))
    else:
        task = asyncio.create_task(one(client, cfg, state))
    if cfg.get("cancel_after_ms") and not cfg.get("outbox"):  # (outbox_cancel: its own)
        while not state["body_started"] and not task.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(cfg["cancel_after_ms"] / 1000)
        task.cancel()
    try:
        e = await task
    except asyncio.CancelledError:
        e = None
        res["cancelled"] = True
    res["ms"] = ticks_diff(ticks_ms(), started)
    if e is not None:
        res.update(status=e.status, step=e.step, reply_code=e.reply_code, error=str(e))
    res["pool_full"] = client.pool.available() == client.pool.count
    if cfg.get("next_port"):  # the same client, once more, to a server that takes it
        client._session.port = cfg["next_port"]
        e = await one(client, {"to": cfg["to"], "subject": "next", "how": "send"}, state)
        res["next_status"] = e.status if e else 0
        res["next_pool_full"] = client.pool.available() == client.pool.count
    state["stop"] = True
    await tick
    res["max_gap_ms"] = state["gap"]
    res["ticks"] = state["ticks"]
    report(res)


def run(cfg, report, net=None):
    asyncio.run(main(cfg, report, net))


if sys.implementation.name == "micropython":
    with open(sys.argv[1]) as f:
        run(json.load(f), lambda res: print(json.dumps(res)))
