#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into fuzz/seeds/TARGET/.

The SIP and SDP seeds are the real clients' messages in tests/fixtures (or a folder given);
the RTP, RTCP, RFC 4733 and SRTP seeds are built here. Each target's input layout is
described at the top of its file in fuzz/fuzz_targets/. Run from the repository root:
    python3 fuzz/make_seeds.py tests/fixtures
"""
import os
import struct
import sys

FIXTURES = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def rtp(pt, seq, ts, ssrc, payload, marker=False, csrcs=(), ext=None, pad=0):
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | pt
    out = struct.pack("!BBHII", b0, b1, seq, ts, ssrc)
    for c in csrcs:
        out += struct.pack("!I", c)
    if ext:
        profile, data = ext
        data += b"\0" * (-len(data) % 4)
        out += struct.pack("!HH", profile, len(data) // 4) + data
    out += payload
    if pad:
        out += b"\0" * (pad - 1) + bytes([pad])
    return out


# SIP: [k][k chunk lengths][message]; the stream framer reads the message in those chunks.
SIP = [
    "baresip-1.0.0-invite-pcmu.sip",
    "baresip-1.0.0-invite-opus-srtp.sip",
    "baresip-1.0.0-200-answer-opus.sip",
    "linphone-5.1-invite-opus.sip",
]
for i, name in enumerate(SIP):
    put("sip_message", name, bytes([3, 10 + i, 200, 37]) + fixture(name))
made = {
    "bye-compact.sip": "BYE sip:confab@127.0.0.1:5060 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5262;branch=z9hG4bKb1\r\nf: <sip:ann@127.0.0.1>;tag=a\r\nt: <sip:1234@127.0.0.1>;tag=b\r\ni: c1\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
    "options-folded.sip": "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5262;branch=z9hG4bKo1,\r\n SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKo0\r\nFrom: \"A, B\" <sip:ann@127.0.0.1>;tag=a\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nSupported:\r\nContent-Length: 0\r\n\r\n\r\n\r\n",
    "info-dtmf.sip": "INFO sip:confab@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch=z9hG4bKi1\r\nFrom: <sip:ann@127.0.0.1>;tag=a\r\nTo: <sip:1234@127.0.0.1>;tag=b\r\nCall-ID: c1\r\nCSeq: 3 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
    "two-messages.sip": "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKd1\r\nFrom: <sip:confab@127.0.0.1>;tag=x\r\nTo: <sip:bob@127.0.0.2>;tag=y\r\nCall-ID: d1@confab\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKd1\r\nFrom: <sip:confab@127.0.0.1>;tag=x\r\nTo: <sip:bob@127.0.0.2>;tag=y\r\nCall-ID: d1@confab\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
}
for name, text in made.items():
    put("sip_message", name, bytes([2, 5, 60]) + text.encode())


# SDP: the SIP fixtures' bodies and the WebRTC offers.
def body(sip):
    return sip.split(b"\r\n\r\n", 1)[1]


for name in SIP:
    if b"application/sdp" in fixture(name):
        put("sdp_offer", name.replace(".sip", ".sdp"), body(fixture(name)))
for name in ["chromium-156-offer.sdp", "aiortc-1.16-offer.sdp"]:
    put("sdp_offer", name, fixture(name))
    put("whip_offer", name, fixture(name))
put(
    "sdp_offer",
    "hold-g722-rtcp.sdp",
    b"v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n"
    b"m=audio 40000 RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n"
    b"a=rtcp:40005 IN IP6 ::2\r\na=sendonly\r\na=extmap:2/sendrecv urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n",
)

# RTP: G.711 with and without extensions, CSRCs and padding; an Opus packet.
pcmu = bytes(range(160))
put("rtp", "pcmu", rtp(0, 1000, 160000, 0x1234, pcmu))
put("rtp", "level-one-byte", rtp(0, 1001, 160160, 0x1234, pcmu, marker=True, ext=(0xBEDE, bytes([0x10, 0x85]))))
put("rtp", "level-two-byte", rtp(9, 7, 320, 0x99, pcmu, ext=(0x1000, bytes([1, 1, 0x7F, 0, 3, 2, 9, 9]))))
put("rtp", "csrcs-padding", rtp(8, 65535, 0xFFFFFF60, 7, pcmu[:80], csrcs=(1, 2, 3), pad=4))
put("rtp", "opus", rtp(111, 5, 960, 0xABCDEF, bytes([0x78, 0x02, 0x11, 0x22, 0x33])))


# RFC 4733: [clock][records], a record [step][len][datagram] (step's top bit: a poll).
def event(seq, ts, code, end, duration, marker=False):
    payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
    return rtp(101, seq, ts, 0x1234, payload, marker=marker)


def records(packets):
    out = b""
    for step, p in packets:
        out += bytes([step, len(p)]) + p
    return out


digit5 = [(2, event(10, 8000, 5, False, 160, True)), (2, event(11, 8000, 5, False, 320)), (2, event(12, 8000, 5, True, 480)), (0, event(13, 8000, 5, True, 480)), (0, event(14, 8000, 5, True, 480))]
put("rfc4733", "digit-5", bytes([0]) + records(digit5))
lost_end = [(2, event(20, 16000, 11, False, 160, True)), (2, event(21, 16000, 11, False, 320)), (2, event(22, 24000, 1, False, 160, True))]
put("rfc4733", "lost-end-then-1", bytes([0]) + records(lost_end) + bytes([0x80 | 50]))
put("rfc4733", "opus-clock-star", bytes([2]) + records([(2, event(1, 48000, 10, False, 960, True)), (0x7F, b"")]) + bytes([0xC0]))

# RTCP: our SSRC 0x11223344, the peer's 0x55667788.
OURS, PEER = 0x11223344, 0x55667788


def block(ssrc, lost=0x01000005, high=1000, jitter=40, lsr=0x12345678, dlsr=0x8000):
    return struct.pack("!IIIIII", ssrc, lost, high, jitter, lsr, dlsr)


sr = struct.pack("!BBHI", 0x81, 200, 12, PEER) + struct.pack("!IIIII", 0xE8000000, 0x80000000, 160000, 50, 8000) + block(OURS)
rr = struct.pack("!BBHI", 0x81, 201, 7, PEER) + block(OURS)
cname = b"ann@127.0.0.1"
sdes_body = struct.pack("!I", PEER) + bytes([1, len(cname)]) + cname + b"\0"
sdes_body += b"\0" * (-len(sdes_body) % 4)
sdes = struct.pack("!BBH", 0x81, 202, len(sdes_body) // 4) + sdes_body
bye = struct.pack("!BBHI", 0x81, 203, 1, PEER)
app = struct.pack("!BBHI", 0x80, 204, 2, PEER) + b"name"
put("rtcp", "sr-sdes", sr + sdes)
put("rtcp", "rr-sdes-bye", rr + sdes + bye)
put("rtcp", "rr-empty-app", struct.pack("!BBHI", 0x80, 201, 1, PEER) + app)


# SRTP: [suite][records], a record [op][flip][len lo][len hi][bytes].
def srtp_record(op, flip, data):
    return bytes([op, flip]) + struct.pack("<H", len(data)) + data


plain = [rtp(0, 1000 + i, 160000 + 160 * i, 0x1234, pcmu) for i in range(3)]
put("srtp", "rtp-round-trip", bytes([0]) + b"".join(srtp_record(2, 0, p) for p in plain))
put("srtp", "rtp-tampered-32", bytes([1]) + srtp_record(2, 0, plain[0]) + srtp_record(6, 77, plain[1]))
put("srtp", "rtcp-round-trip", bytes([0]) + srtp_record(3, 0, rr + sdes) + srtp_record(7, 9, sr))
put("srtp", "wire", bytes([0]) + srtp_record(0, 0, plain[0] + bytes(10)) + srtp_record(1, 0, rr + bytes([0x80, 0, 0, 1]) + bytes(10)))

# Opus: one packet per seed (SILK 20 ms voice-inactive and active, hybrid, CELT, code 3).
put("opus_toc", "silk-20ms-inactive", bytes([0x08, 0x10]) + bytes(30))
put("opus_toc", "silk-60ms-inactive", bytes([0x18, 0x1F, 0x44, 0x55]))
put("opus_toc", "silk-20ms-voice", bytes([0x08, 0x93, 0x21]) + bytes(range(40)))
put("opus_toc", "hybrid-20ms", bytes([0x68, 0x00, 0x12, 0x34]))
put("opus_toc", "celt-code3", bytes([0xFB, 0x03]) + bytes(20))
