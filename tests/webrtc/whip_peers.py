#!/usr/bin/env python3
"""aiortc peers that join a Confab conference by WHIP, each sending a tone and recording what
it hears (48 kHz mono WAV), for tests/webrtc.rs to measure.

usage: whip_peers.py URL OUTDIR SECONDS FREQ [FREQ ...] [--token T] [--hang | --close]

Prints one JSON line: {"peers": [{"freq", "status", "connect_s", "wav", "error"}]}.
--hang: once connected, the peers stop answering anything (the process then sleeps until it
is killed), to test an abrupt disappearance. --close: once connected, talk for SECONDS, then
close the peer connection (DTLS close_notify) without the WHIP DELETE.
"""
import asyncio
import fractions
import json
import math
import os
import sys
import time
import wave

import aioice.ice
import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

# aiortc gathers no loopback candidate; the bridge is on loopback, so offer only that.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

RATE = 48000
FRAME = 960  # 20 ms


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, freq, dbov=-20.0):
        super().__init__()
        self.freq = freq
        self.amp = 32767 * 10 ** (dbov / 20)
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.n / RATE
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(FRAME) + self.n) / RATE
        samples = (self.amp * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, RATE)
        self.n += FRAME
        return frame


async def record(track, path, until):
    out = []
    try:
        while time.monotonic() < until:
            frame = await asyncio.wait_for(track.recv(), timeout=max(0.1, until - time.monotonic()))
            a = frame.to_ndarray()
            channels = len(frame.layout.channels)
            mono = a.reshape(-1)[::channels] if channels > 1 else a.reshape(-1)
            if frame.sample_rate != RATE:
                # The bridge sends Opus at 48 kHz; anything else would be a finding of its own.
                raise RuntimeError(f"received {frame.sample_rate} Hz")
            out.append(mono.astype(np.int16))
    except (asyncio.TimeoutError, Exception):
        pass
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(out).tobytes() if out else b"")


async def peer(session, url, outdir, seconds, freq, token, hang, index, close=False):
    result = {"freq": freq, "status": 0, "connect_s": None, "wav": None, "error": None}
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(Tone(freq))
    connected = asyncio.Event()
    tracks = []

    @pc.on("track")
    def on_track(track):
        tracks.append(track)

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState == "connected":
            connected.set()

    try:
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if token:
            headers["Authorization"] = "Bearer " + token
        started = time.monotonic()
        async with session.post(f"{url}?name=tone{int(freq)}", data=pc.localDescription.sdp, headers=headers) as r:
            result["status"] = r.status
            body = await r.text()
            location = r.headers.get("Location")
        if result["status"] != 201:
            result["error"] = body
            return result
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        await asyncio.wait_for(connected.wait(), timeout=15)
        result["connect_s"] = time.monotonic() - started
        if hang:
            return result
        if close:
            await asyncio.sleep(seconds)
            await pc.close()
            return result
        wav = os.path.join(outdir, f"peer{index}-{int(freq)}.wav")
        if tracks:
            await record(tracks[0], wav, time.monotonic() + seconds)
            result["wav"] = wav
        base = url.split("/v1/")[0]
        async with session.delete(base + location) as r:
            result["delete_status"] = r.status
    except Exception as e:  # reported, the test decides
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        if not hang:
            await pc.close()
    return result


async def main():
    args = sys.argv[1:]
    token = None
    hang = False
    if "--token" in args:
        i = args.index("--token")
        token = args[i + 1]
        del args[i : i + 2]
    if "--hang" in args:
        hang = True
        args.remove("--hang")
    close = "--close" in args
    if close:
        args.remove("--close")
    url, outdir, seconds = args[0], args[1], float(args[2])
    freqs = [float(f) for f in args[3:]]
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(peer(session, url, outdir, seconds, f, token, hang, i, close) for i, f in enumerate(freqs))
        )
    print(json.dumps({"peers": results}), flush=True)
    if hang:
        # Vanish without a word: no DELETE, no DTLS close, no more STUN.
        os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
