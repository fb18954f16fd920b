#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (Fuzz/Corpus/<target>/seed-*): well-formed
messages the fuzzer mutates from. Run once; the corpus grown by fuzzing is merged next to them."""
import hmac, hashlib, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
COOKIE = 0x2112A442


def attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack(">HH", t, len(v)) + v + b"\0" * pad


def xor_addr(ip4, port):
    a = bytes(int(x) for x in ip4.split("."))
    x = bytes(b ^ c for b, c in zip(a, struct.pack(">I", COOKIE)))
    return struct.pack(">BBH", 0, 1, port ^ (COOKIE >> 16)) + x


def message(mtype, attrs, tid=b"\x01" * 12, key=None, fingerprint=False):
    body = b"".join(attrs)
    if key is not None:
        head = struct.pack(">HHI", mtype, len(body) + 24, COOKIE) + tid
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    if fingerprint:
        head = struct.pack(">HHI", mtype, len(body) + 8, COOKIE) + tid
        crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += attr(0x8028, struct.pack(">I", crc))
    return struct.pack(">HHI", mtype, len(body), COOKIE) + tid + body


def channel_data(ch, payload, pad=False):
    p = payload + (b"\0" * ((4 - len(payload) % 4) % 4) if pad else b"")
    return struct.pack(">HH", ch, len(payload)) + p


def write(target, name, data):
    d = os.path.join(HERE, "Corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


key = b"\x5a" * 16
peer = xor_addr("203.0.113.5", 7000)
decode = {
    "binding": message(0x0001, []),
    "binding-fp": message(0x0001, [attr(0x8022, b"tern")], fingerprint=True),
    "allocate": message(0x0003, [attr(0x0019, b"\x11\0\0\0"), attr(0x000D, struct.pack(">I", 600)),
                                 attr(0x0006, b"alice"), attr(0x0014, b"example.org"), attr(0x0015, b"obMatJos2wAAAnonce")],
                        key=key, fingerprint=True),
    "error": message(0x0113, [attr(0x0009, b"\0\0\x04\x01Unauthorized"), attr(0x0014, b"tern"),
                              attr(0x001D, b"\0\x01\0\0\0\x02\0\0")]),
    "permission": message(0x0008, [attr(0x0012, peer), attr(0x0012, xor_addr("203.0.113.6", 1))], key=key),
    "send": message(0x0016, [attr(0x0012, peer), attr(0x0013, b"hello world")]),
    "unknown": message(0x0001, [attr(0x0041, b"\1"), attr(0x7FFF, b""), attr(0xC001, b"xyz")]),
    "channeldata": channel_data(0x4000, b"payload!"),
}
for n, b in decode.items():
    write("decode", n, b)

# Streams: a chunk-size byte, then frames back to back (ChannelData padded, as on TCP).
stream = decode["allocate"] + channel_data(0x4001, b"abc", pad=True) + decode["binding-fp"] + channel_data(0x4FFF, b"", pad=True)
write("frame", "mixed", b"\x07" + stream)
write("frame", "one-byte-chunks", b"\x00" + decode["permission"] + decode["send"])
write("frame", "bad-cookie", b"\x10" + decode["binding"][:4] + b"\0\0\0\0" + decode["binding"][8:])


def record(kind, body):
    return struct.pack(">BH", kind, len(body)) + body


def signed(method_index, tlvs, client=0, fingerprint=False):
    return record(2 | (client << 3), bytes([method_index | (0x80 if fingerprint else 0)]) + b"".join(tlvs))


alloc = signed(0, [attr(0x0019, b"\x11\0\0\0")])
relay_session = (
    alloc
    + signed(2, [attr(0x0012, peer)])
    + signed(3, [attr(0x000C, b"\x40\0\0\0"), attr(0x0012, peer)])
    + record(0, channel_data(0x4000, b"to the peer"))
    + record(0, message(0x0016, [attr(0x0012, peer), attr(0x0013, b"indication")]))
    + record(3, b"from the peer")
    + signed(1, [attr(0x000D, b"\0\0\x02\x58")], fingerprint=True)
    + record(4, b"\x3c")
    + record(3, b"after a minute")
    + signed(1, [attr(0x000D, b"\0\0\0\0")])
)
write("handle", "relay-session", relay_session)
write("handle", "even-port", signed(0, [attr(0x0019, b"\x11\0\0\0"), attr(0x0018, b"\x80")], client=1)
      + signed(0, [attr(0x0019, b"\x11\0\0\0"), attr(0x0022, b"\0" * 8)], client=2) + record(4, b"\x40"))
write("handle", "dual", signed(0, [attr(0x0019, b"\x11\0\0\0"), attr(0x8000, b"\x02\0\0\0")], client=3)
      + signed(2, [attr(0x0012, xor_addr("203.0.113.9", 9))], client=3))
write("handle", "unauthenticated", record(0, decode["allocate"]) + record(1, decode["binding"]) + record(8, decode["unknown"])
      + record(0, channel_data(0x4000, b"no allocation")))
write("handle", "expiry", alloc + signed(2, [attr(0x0012, peer)]) + record(4, b"\xff") + record(4, b"\xff") + record(4, b"\xff")
      + record(3, b"late") + signed(0, [attr(0x0019, b"\x06\0\0\0")]))


# PROXY protocol headers (HAProxy's spec, sections 2.1 and 2.2), each followed by what the
# connection carries next (a STUN Binding request or a TLS record header).
V2_SIG = b"\r\n\r\n\0\r\nQUIT\n"


def proxy_v2(command, fam, body):
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack(">H", len(body)) + body


def pp2_tlv(t, v):
    return struct.pack(">BH", t, len(v)) + v


inet = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack(">HH", 40000, 3478)
inet6 = bytes.fromhex("20010db8000000000000000000000001") + bytes.fromhex("00000000000000000000ffffc0000201") + struct.pack(">HH", 5000, 443)
write("proxy", "v1-tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + decode["binding"])
write("proxy", "v1-tcp6", b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 65535 0\r\n\x16\x03\x01")
write("proxy", "v1-unknown", b"PROXY UNKNOWN ffff:f::f 1.2.3.4 1 2\r\n")
write("proxy", "v2-inet-tlvs", proxy_v2(1, 0x11, inet + pp2_tlv(0x01, b"h2") + pp2_tlv(0x02, b"turn.example")
                                        + pp2_tlv(0x20, b"\x01\0\0\0\0" + pp2_tlv(0x21, b"TLSv1.3")) + pp2_tlv(0x04, b""))
      + decode["binding"])
write("proxy", "v2-inet6", proxy_v2(1, 0x21, inet6 + pp2_tlv(0x05, b"\xab" * 16)))
write("proxy", "v2-unix", proxy_v2(1, 0x31, b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")))
write("proxy", "v2-local", proxy_v2(0, 0x00, b"") + b"\x16\x03\x01\x00\x05")
