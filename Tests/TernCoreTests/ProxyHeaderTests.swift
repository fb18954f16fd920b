import STUN
import Testing
import TernCore
import TernFuzzing

/// The PROXY protocol header parser (HAProxy's "The PROXY protocol", versions 1 and 2): the spec's
/// examples, streaming (a header arriving a byte at a time), and malformed headers.
@Suite("PROXY protocol header")
struct ProxyHeaderTests {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    func parse(_ bytes: [UInt8]) -> ProxyHeaderParse {
        bytes.withUnsafeBytes { ProxyHeader.parse($0) }
    }

    func parse(_ text: String) -> ProxyHeaderParse { parse(Array(text.utf8)) }

    func address(_ text: String) -> TransportAddress { TransportAddress(text)! }

    /// A v2 header: signature, version 2 and `command`, `family`, the length, then `body`.
    func v2(command: UInt8 = 1, family: UInt8, body: [UInt8], length: Int? = nil) -> [UInt8] {
        let n = length ?? body.count
        return Self.v2Signature + [0x20 | command, family, UInt8(n >> 8), UInt8(n & 0xFF)] + body
    }

    func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type] + be16(UInt16(value.count)) + value }

    func v1(_ src: String, _ dst: String) -> ProxyHeader {
        ProxyHeader(version: .v1, source: address(src), destination: address(dst))
    }

    /// Every proper prefix is `.needMore`, the whole is complete with exactly its length, and bytes
    /// after it do not change the answer.
    func expectStreams(_ header: [UInt8], _ expected: ProxyHeader, sourceLocation: SourceLocation = #_sourceLocation) {
        for n in 0..<header.count {
            let r = parse(Array(header[0..<n]))
            #expect(r == .needMore, "prefix of \(n) bytes: \(r)", sourceLocation: sourceLocation)
        }
        #expect(parse(header) == .complete(expected, length: header.count), sourceLocation: sourceLocation)
        for trailing in [[0x00], [0x16, 0x03, 0x01], Array("GET / HTTP/1.1\r\n\r\n".utf8), Array(repeating: 0xFF, count: 2000)] as [[UInt8]] {
            #expect(parse(header + trailing) == .complete(expected, length: header.count), sourceLocation: sourceLocation)
        }
    }

    // MARK: Version 1 (section 2.1)

    @Test func v1SpecExamples() {
        expectStreams(Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".utf8),
                      v1("192.168.0.1:56324", "192.168.0.11:443"))
        let max4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        #expect(max4.utf8.count == 56)
        expectStreams(Array(max4.utf8), v1("255.255.255.255:65535", "255.255.255.255:65535"))
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let max6 = "PROXY TCP6 \(f) \(f) 65535 65535\r\n"
        #expect(max6.utf8.count == 104)
        expectStreams(Array(max6.utf8), v1("[\(f)]:65535", "[\(f)]:65535"))
        let unknown = ProxyHeader(version: .v1, source: nil, destination: nil)
        expectStreams(Array("PROXY UNKNOWN\r\n".utf8), unknown)
        // The worst case of section 2.1: 107 bytes, the rest of an UNKNOWN line ignored.
        let worst = "PROXY UNKNOWN \(f) \(f) 65535 65535\r\n"
        #expect(worst.utf8.count == 107)
        expectStreams(Array(worst.utf8), unknown)
        expectStreams(Array("PROXY UNKNOWN whatever\u{1}\r\u{7F}\r\n".utf8), unknown)
        // The HTTP request after the line is not part of the header.
        let request = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
        #expect(parse(request) == .complete(v1("192.168.0.1:56324", "192.168.0.11:443"), length: 47))
    }

    @Test func v1AddressForms() {
        let cases: [(String, String)] = [
            ("::", "[::]:0"), ("::1", "[::1]:0"), ("2001:db8::1", "[2001:db8::1]:0"),
            ("2001:DB8:0:0:0:0:0:1", "[2001:db8::1]:0"), ("2001:0db8:0000:0000:0000:0000:0000:0001", "[2001:db8::1]:0"),
            ("1::", "[1::]:0"), ("1:2:3:4:5:6:7::", "[1:2:3:4:5:6:7:0]:0"), ("::2:3:4:5:6:7:8", "[0:2:3:4:5:6:7:8]:0"),
            ("1:2:3:4:5:6:7:8", "[1:2:3:4:5:6:7:8]:0"), ("::ffff:192.0.2.1", "[::ffff:192.0.2.1]:0"),
            ("1:2:3:4:5:6:1.2.3.4", "[1:2:3:4:5:6:102:304]:0"), ("::1.2.3.4", "[::102:304]:0"),
            ("fe80::a:0:B", "[fe80::a:0:b]:0"),
        ]
        for (text, expected) in cases {
            let line = "PROXY TCP6 \(text) \(text) 0 0\r\n"
            #expect(parse(line) == .complete(v1(expected, expected), length: line.utf8.count), "\(text)")
            expectStreams(Array(line.utf8), v1(expected, expected))
        }
        expectStreams(Array("PROXY TCP4 0.0.0.0 10.0.0.255 0 1\r\n".utf8), v1("0.0.0.0:0", "10.0.0.255:1"))
    }

    @Test func v1Malformed() {
        let bad: [(String, ProxyHeaderError)] = [
            ("PROXY TCP4 256.1.1.1 1.1.1.1 1 2\r\n", .address),
            ("PROXY TCP4 1.2.3 1.1.1.1 1 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4.5 1.1.1.1 1 2\r\n", .address),
            ("PROXY TCP4 1..2.3 1.1.1.1 1 2\r\n", .address),
            ("PROXY TCP4 01.2.3.4 1.1.1.1 1 2\r\n", .address),      // leading zero (section 2.1)
            ("PROXY TCP4 1.2.3.00 1.1.1.1 1 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 65536 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1 99999\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 080 2\r\n", .address),      // leading zero in a port
            ("PROXY TCP4 1.2.3.4 1.1.1.1 00 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 +1 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 -1 2\r\n", .address),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1 2 \r\n", .syntax),
            ("PROXY TCP4 ::1 ::1 1 2\r\n", .address),                 // TCP4 with IPv6 addresses
            ("PROXY TCP4 1.2.3.4 ::1 1 2\r\n", .address),
            ("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", .address),         // TCP6 with IPv4 addresses
            ("PROXY TCP6 ::1 1.2.3.4 1 2\r\n", .address),
            ("PROXY TCP6 ::1:: ::1 1 2\r\n", .address),
            ("PROXY TCP6 1::2::3 ::1 1 2\r\n", .address),
            ("PROXY TCP6 ::: ::1 1 2\r\n", .address),
            ("PROXY TCP6 :1 ::1 1 2\r\n", .address),
            ("PROXY TCP6 1: ::1 1 2\r\n", .address),
            ("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", .address),
            ("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", .address),
            ("PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n", .address),
            ("PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n", .address),
            ("PROXY TCP6 12345:: ::1 1 2\r\n", .address),
            ("PROXY TCP6 g:: ::1 1 2\r\n", .address),
            ("PROXY TCP6 ::ffff:1.2.3 ::1 1 2\r\n", .address),
            ("PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n", .address),
            ("PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n", .address),
            ("PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n", .address),
            ("PROXY TCP6 [::1] ::1 1 2\r\n", .address),
            ("PROXY TCP4  1.2.3.4 1.1.1.1 1 2\r\n", .syntax),         // extra spaces
            ("PROXY TCP4 1.2.3.4  1.1.1.1 1 2\r\n", .syntax),
            ("PROXY TCP4 1.2.3.4 1.1.1.1  1 2\r\n", .syntax),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1  2\r\n", .syntax),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1 2\n", .syntax),            // LF without CR
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1 2\r\r\n", .syntax),
            ("PROXY TCP4 1.2.3.4 1.1.1.1 1\r\n", .address),
            ("PROXY UNKNOWN\n", .syntax),
            ("PROXY UNKNOWN foo\n", .syntax),
            ("PROXY TCP5 1.2.3.4 1.1.1.1 1 2\r\n", .family),
            ("PROXY UDP4 1.2.3.4 1.1.1.1 1 2\r\n", .family),
            ("PROXY tcp4 1.2.3.4 1.1.1.1 1 2\r\n", .family),
            ("PROXY TCP41.2.3.4 1.1.1.1 1 2\r\n", .syntax),
            ("PROXY UNKNOWM\r\n", .family),
            ("PROXY  TCP4 1.2.3.4 1.1.1.1 1 2\r\n", .family),
            ("PROXYTCP4 1.2.3.4 1.1.1.1 1 2\r\n", .signature),
            ("proxy TCP4 1.2.3.4 1.1.1.1 1 2\r\n", .signature),
            ("PROXZ", .signature),
        ]
        for (text, reason) in bad {
            #expect(parse(text) == .invalid(reason), "\(text.debugDescription)")
        }
    }

    @Test func v1Length() {
        // 107 bytes without a LF are too long; 106 may still become a line.
        let pad = String(repeating: "x", count: 107 - 13)
        #expect(parse("PROXY UNKNOWN" + pad) == .invalid(.tooLong))
        #expect(parse("PROXY UNKNOWN" + pad.dropLast()) == .needMore)
        #expect(parse("PROXY UNKNOWN" + pad.dropLast(2) + "\r\n") == .complete(ProxyHeader(version: .v1, source: nil, destination: nil), length: 107))
        #expect(parse("PROXY UNKNOWN" + pad.dropLast() + "\r\n") == .invalid(.tooLong))
        // A TCP6 line over 107 bytes (two IPv4 tails), valid otherwise.
        let long = "1111:2222:3333:4444:5555:6666:255.255.255.255"
        #expect(parse("PROXY TCP6 \(long) \(long) 65535 65535\r\n") == .invalid(.tooLong))
        // A LF inside the first 107 bytes decides, whatever follows.
        #expect(parse("PROXY TCP4 1.2.3.4 1.1.1.1 1 2\r\n" + String(repeating: "y", count: 500)) != .invalid(.tooLong))
    }

    // MARK: Version 2 (section 2.2)

    @Test func v2Headers() {
        let inet: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 7] + be16(40000) + be16(3478)
        let expected4 = ProxyHeader(version: .v2, source: address("192.0.2.1:40000"), destination: address("198.51.100.7:3478"))
        expectStreams(v2(family: 0x11, body: inet), expected4)
        var inet6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1]
        inet6 += [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [2]
        inet6 += be16(5000) + be16(443)
        let expected6 = ProxyHeader(version: .v2, source: address("[2001:db8::1]:5000"), destination: address("[2001:db8::2]:443"))
        expectStreams(v2(family: 0x21, body: inet6), expected6)
        let none = ProxyHeader(version: .v2, source: nil, destination: nil)
        expectStreams(v2(family: 0x31, body: Array(repeating: 0x2F, count: 216)), none)
        expectStreams(v2(command: 0, family: 0x00, body: []), none)                         // LOCAL
        expectStreams(v2(command: 0, family: 0x11, body: inet), none)          // LOCAL: addresses ignored
        expectStreams(v2(command: 0, family: 0x12, body: [1, 2, 3]), none)                  // LOCAL: any family, unread
        expectStreams(v2(command: 1, family: 0x00, body: [9, 9]), none)                     // AF_UNSPEC
        expectStreams(v2(command: 1, family: 0x01, body: []), none)
        // TLVs after the address block (section 2.2): ALPN, authority, NOOP, SSL with sub-TLVs, custom.
        let tlvs = tlv(0x01, Array("h2".utf8)) + tlv(0x02, Array("turn.example".utf8)) + tlv(0x04, [])
            + tlv(0x20, [0x01, 0, 0, 0, 0] + tlv(0x21, Array("TLSv1.3".utf8))) + tlv(0xE0, Array(repeating: 7, count: 300))
        expectStreams(v2(family: 0x11, body: inet + tlvs), expected4)
        expectStreams(v2(family: 0x21, body: inet6 + tlv(0x05, Array(repeating: 0xAB, count: 128))), expected6)
        expectStreams(v2(family: 0x31, body: Array(repeating: 0, count: 216) + tlv(0x30, Array("ns".utf8))), none)
        // The largest accepted header, exactly maxLength bytes.
        let filler = tlv(0xEE, Array(repeating: 0, count: ProxyHeader.maxLength - 16 - 12 - 3))
        let biggest = v2(family: 0x11, body: inet + filler)
        #expect(biggest.count == ProxyHeader.maxLength)
        #expect(parse(biggest) == .complete(expected4, length: ProxyHeader.maxLength))
    }

    @Test func v2Malformed() {
        let inet: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 7, 0x9C, 0x40, 0x0D, 0x96]
        var badSignature = v2(family: 0x11, body: inet)
        badSignature[11] = 0x0B
        #expect(parse(badSignature) == .invalid(.signature))
        #expect(parse(Array(badSignature[0..<12])) == .invalid(.signature))
        #expect(parse([0x0D, 0x0A, 0x0D, 0x0A, 0x01]) == .invalid(.signature))
        let cases: [([UInt8], ProxyHeaderError)] = [
            (Self.v2Signature + [0x11, 0x11, 0, 12] + inet, .version),   // version nibble 1
            (Self.v2Signature + [0x31], .version),
            (Self.v2Signature + [0x22], .command),
            (Self.v2Signature + [0x2F, 0x11], .command),
            (v2(family: 0x12, body: inet), .protocol),                   // DGRAM
            (v2(family: 0x22, body: inet + Array(repeating: 0, count: 24)), .protocol),
            (v2(family: 0x13, body: inet), .protocol),
            (v2(family: 0x10, body: inet), .protocol),                   // AF_INET with UNSPEC
            (v2(command: 0, family: 0x13, body: []), .protocol),
            (v2(family: 0x41, body: inet), .family),
            (v2(command: 0, family: 0xF0, body: []), .family),
            (v2(family: 0x11, body: Array(inet[0..<11])), .length),      // short of the address block
            (v2(family: 0x21, body: inet + Array(repeating: 0, count: 23)), .length),
            (v2(family: 0x31, body: Array(repeating: 0, count: 215)), .length),
            (v2(family: 0x11, body: inet + [0x01, 0x00]), .length),       // a TLV header cut short
            (v2(family: 0x11, body: inet + [0x01, 0x00, 0x03, 1, 2]), .length),  // a TLV value past the end
            (v2(family: 0x11, body: inet + tlv(0x04, []) + [0x04]), .length),
        ]
        for (bytes, reason) in cases {
            #expect(parse(bytes) == .invalid(reason), "\(bytes)")
        }
        // Over maxLength: refused as soon as the length field is in, before any of the rest.
        let tooLong = v2(family: 0x11, body: [], length: ProxyHeader.maxLength - 15)
        #expect(tooLong.count == 16)
        #expect(parse(tooLong) == .invalid(.tooLong))
        #expect(parse(v2(family: 0x11, body: [], length: 0xFFFF)) == .invalid(.tooLong))
        #expect(parse(v2(command: 0, family: 0x00, body: [], length: 0xFFFF)) == .invalid(.tooLong))
    }

    // MARK: First bytes

    @Test func refusedAtTheFirstByte() {
        // A client that skips the proxy: TLS (handshake record 0x16), STUN (0x00 0x01), ChannelData,
        // HTTP, and anything else.
        for first: UInt8 in [0x16, 0x00, 0x01, 0x40, 0x47, 0x0A, 0xFF, UInt8(ascii: "p")] {
            #expect(parse([first]) == .invalid(.signature), "\(first)")
        }
        let binding: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + Array(repeating: 7, count: 12)
        #expect(parse(binding) == .invalid(.signature))
        #expect(parse([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]) == .invalid(.signature))
        #expect(parse([UInt8]()) == .needMore)
        #expect(parse("P") == .needMore)
        #expect(parse([0x0D]) == .needMore)
        #expect(parse([0x0D, 0x0D]) == .invalid(.signature))
        #expect(parse("PROXY TCP4 1.2.3.4 x") == .invalid(.address))
    }

    /// The fuzz target's invariants (streaming consistency, bounds) over deterministic mutations of
    /// valid headers: the same checks `Fuzz/run.sh` makes, on every test run.
    @Test func mutationsKeepTheInvariants() {
        let seeds: [[UInt8]] = [
            Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET".utf8),
            Array("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 65535\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8),
            v2(family: 0x11, body: [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2] + tlv(1, [1, 2])),
            v2(family: 0x21, body: Array(repeating: 1, count: 36)),
            v2(command: 0, family: 0, body: []),
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        let alphabet = Array("0123456789abcdefABCDEF:. \r\nPROXYTCP46UNKOW".utf8) + [0x00, 0x0D, 0x0A, 0x20, 0x21, 0x11, 0xFF]
        for _ in 0..<3000 {
            var bytes = seeds[random(seeds.count)]
            for _ in 0...random(3) {
                let at = random(bytes.count)
                switch random(3) {
                case 0: bytes[at] = alphabet[random(alphabet.count)]
                case 1: bytes.insert(alphabet[random(alphabet.count)], at: at)
                default: bytes.remove(at: at)
                }
                if bytes.isEmpty { bytes = [0x50] }
            }
            bytes.withUnsafeBytes { FuzzTargets.proxyHeader($0) }
        }
    }
}
