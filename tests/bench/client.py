"""Load generator: many WebSocket clients that send messages and consume whole turns like a browser.

Runs as its own process (`python -m tests.bench.client < spec.json > result.json`) so its CPU is not the
server's. Times are `time.monotonic()`, which is system-wide on Linux, so they compare with the fake
vendor's send times directly.

Spec keys: `urls` (one per server process; client i uses urls[i % n]), `cookies` (one client each),
`message`, `stagger` (seconds over which clients start, uniformly at random), `until` (a monotonic
deadline: each client keeps taking turns on its socket until it passes; absent means one turn),
`verify` (hash the PCM so a test can compare it byte for byte), `idle` (open sockets and hold them),
`binary` (ask for binary audio frames, as the browser page does).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import sys
import time
from typing import Any

import aiohttp

_AUDIO_PREFIX = '{"type":"audio","audio_event":{"audio_base_64":"'


def _audio_bytes(frame: str) -> tuple[int, str]:
    """Byte count and base64 text of an audio frame, without parsing the JSON (the client must stay cheap)."""
    end = frame.index('"', len(_AUDIO_PREFIX))
    data = frame[len(_AUDIO_PREFIX) : end]
    return len(data) * 3 // 4 - data.count("=", len(data) - 2), data


def _ws_url(http_url: str) -> str:
    return http_url.replace("http", "ws", 1) + "/v1/convai/conversation"


async def one_turn(ws: aiohttp.ClientWebSocketResponse, spec: dict[str, Any], index: int) -> dict[str, Any]:
    """Send one message and read frames up to the turn's `agent_response_complete`."""
    result: dict[str, Any] = {"index": index, "audio": [], "errors": [], "status": None, "message_id": None}
    digest = hashlib.sha256() if spec.get("verify") else None
    audio = result["audio"]
    result["sent_at"] = time.monotonic()
    await ws.send_str(json.dumps({"type": "user_message", "text": spec["message"]}))
    started = False  # frames before our user_transcript belong to the greeting, not to this turn
    async for message in ws:
        now = time.monotonic()
        frame = message.data
        if message.type is aiohttp.WSMsgType.BINARY and started:
            audio.append((now, len(frame) - 5))  # kind byte + event id, then PCM
            if digest is not None:
                digest.update(frame[5:])
            continue
        if message.type is not aiohttp.WSMsgType.TEXT:
            if message.type is aiohttp.WSMsgType.BINARY:
                continue
            result["errors"].append(f"client: socket {message.type.name}")
            break
        if frame.startswith(_AUDIO_PREFIX):
            if not started:
                continue
            size, data = _audio_bytes(frame)
            audio.append((now, size))
            if digest is not None:
                digest.update(base64.b64decode(data))
            continue
        event = json.loads(frame)
        if event["type"] == "user_transcript":
            started = True
        elif not started:
            continue
        if event["type"] == "error":
            result["errors"].append(event["error_event"]["code"])
        elif event["type"] == "agent_response_complete":
            body = event["agent_response_complete_event"]
            result["status"], result["message_id"] = body["status"], body["message_id"]
            result["audio_status"], result["metrics"] = body["audio_status"], body["metrics"]
            break
    result["sha256"] = digest.hexdigest() if digest is not None else None
    return result


async def one_client(session: aiohttp.ClientSession, spec: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """One browser tab: connect, then take turns until the deadline (or once)."""
    urls, cookie = spec["urls"], spec["cookies"][index]
    url = urls[index % len(urls)]
    await asyncio.sleep(random.uniform(0, spec.get("stagger", 0.0)))
    turns: list[dict[str, Any]] = []
    try:
        headers = {"Cookie": cookie, "Origin": url}
        async with session.ws_connect(_ws_url(url), headers=headers, max_msg_size=0, heartbeat=None) as ws:
            await ws.receive(timeout=30)  # conversation_initiation_metadata
            if spec.get("binary"):  # what our own page asks for: binary audio frames
                first = {"type": "conversation_initiation_client_data", "voicechat": {"binary_audio": True}}
                await ws.send_str(json.dumps(first))
            while True:
                turns.append(await one_turn(ws, spec, index))
                if "until" not in spec or time.monotonic() >= spec["until"] or turns[-1]["status"] is None:
                    break
    except Exception as exc:
        failed = {"index": index, "audio": [], "status": None, "message_id": None, "sha256": None}
        turns.append({**failed, "errors": [f"client: {type(exc).__name__}: {exc}"], "sent_at": time.monotonic()})
    return turns


async def idle_connections(session: aiohttp.ClientSession, spec: dict[str, Any]) -> None:
    """Open one idle socket per cookie, report on stdout, and hold them until stdin closes."""
    sockets = []
    for index, cookie in enumerate(spec["cookies"]):
        url = spec["urls"][index % len(spec["urls"])]
        ws = await session.ws_connect(_ws_url(url), headers={"Cookie": cookie, "Origin": url})
        await ws.receive(timeout=30)
        sockets.append(ws)
    print(json.dumps({"open": len(sockets)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        await ws.close()


async def main() -> None:
    spec = json.loads(sys.stdin.readline())
    spec.setdefault("urls", [spec.get("url")])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if spec.get("idle"):
            await idle_connections(session, spec)
            return
        clients = await asyncio.gather(*(one_client(session, spec, i) for i in range(len(spec["cookies"]))))
    json.dump({"turns": [turn for turns in clients for turn in turns], "cpu_s": time.process_time()}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
