import Testing
@testable import STUN

@Suite("IP addresses")
struct IPAddressTests {
    @Test(arguments: [
        // RFC 5952 section 4 recommendations: lower case, no leading zeros, longest run of zeros
        // (first on ties) as "::", never "::" for a single zero group.
        ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
        ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
        ("2001:DB8::2:1", "2001:db8::2:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
        // RFC 5952 section 5: IPv4-mapped addresses in mixed notation.
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("::ffff:c000:0201", "::ffff:192.0.2.1"),
        ("::192.0.2.1", "::c000:201"),
        ("2001:db8:1234:5678:11:2233:4455:6677", "2001:db8:1234:5678:11:2233:4455:6677"),
        ("1.2.3.4", "1.2.3.4"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("192.0.2.1", "192.0.2.1"),
    ])
    func canonicalText(input: String, canonical: String) throws {
        let ip = try #require(IPAddress(input), "\(input) should parse")
        #expect(ip.description == canonical)
        #expect(IPAddress(canonical) == ip)
        #expect(IPAddress(bytes: ip.bytes) == ip)
    }

    @Test(arguments: [
        "", "1.2.3", "256.1.1.1", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1..2.3", "1.2.3.", " 1.2.3.4", "1.2.3.4 ",
        "+1.2.3.4", "1.2.3.-4", "a.b.c.d", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::",
        ":1::", "1:", ":1", "::1:", "g::", "+1::", "-0::", "1:2:3:4:5:6:7:8::", "::1.2.3", "::256.1.1.1",
        "1.2.3.4::", "fe80::1%eth0", "[::1]", "1:2:3:4:5:6:7:1.2.3.4",
    ])
    func rejects(input: String) {
        #expect(IPAddress(input) == nil, "\(input) should not parse")
    }

    @Test func valuesAndBytes() {
        #expect(IPAddress("127.0.0.1") == .loopbackV4)
        #expect(IPAddress("::1") == .loopbackV6)
        #expect(IPAddress("1.2.3.4")?.bytes == [1, 2, 3, 4])
        #expect(IPAddress("1.2.3.4")?.family == .ipv4)
        #expect(IPAddress("::1")?.family == .ipv6)
        #expect(IPAddress("::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
        #expect(IPAddress("2001:db8::")?.withBytes { Array($0) } == [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 12))
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress.anyV4.isUnspecified && IPAddress.anyV6.isUnspecified && !IPAddress.loopbackV6.isUnspecified)
    }

    @Test func transportAddresses() {
        #expect(TransportAddress("1.2.3.4:5") == TransportAddress(ip: .v4(0x0102_0304), port: 5))
        #expect(TransportAddress("[::1]:3478") == TransportAddress(ip: .loopbackV6, port: 3478))
        #expect(TransportAddress("1.2.3.4:65535")?.description == "1.2.3.4:65535")
        #expect(TransportAddress("[2001:DB8::1]:0")?.description == "[2001:db8::1]:0")
        for bad in ["1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:+5", "1.2.3.4:-1", "[::1]", "[::1]:", "::1:5",
                    "[1.2.3.4]:5", "[::1]5", "[::1:5", "1.2.3.4:5:6", "host:5"] {
            #expect(TransportAddress(bad) == nil, "\(bad)")
        }
    }
}
