import STUN
import Testing
import TernCore

@Suite("Policy: PeerPolicy")
struct PeerPolicyTests {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }
    private func cidrs(_ list: [String]) -> [CIDR] { list.map { CIDR($0)! } }
    let open = PeerPolicy(allow: [], deny: [])

    /// First, last and a middle address of a prefix.
    private func samples(_ c: CIDR) -> [IPAddress] {
        switch c.address {
        case .v4(let a):
            let hostBits = UInt32(32 - c.prefixLength)
            let span: UInt32 = hostBits == 32 ? ~0 : (UInt32(1) << hostBits) &- 1
            return [.v4(a), .v4(a | span), .v4(a | (span / 2 + 1) & span), .v4(a | (span / 3))]
        case .v6(let h, let l):
            let n = c.prefixLength
            let spanHi: UInt64 = n >= 64 ? 0 : (n == 0 ? ~0 : (UInt64(1) << UInt64(64 - n)) &- 1)
            let spanLo: UInt64 = n >= 128 ? 0 : (n <= 64 ? ~0 : (UInt64(1) << UInt64(128 - n)) &- 1)
            return [.v6(h, l), .v6(h | spanHi, l | spanLo), .v6(h | spanHi / 2, l | spanLo / 3),
                    .v6(h | (spanHi / 5), l | (spanLo / 2 + 1) & spanLo)]
        }
    }

    @Test func defaultDeniedListIsAsDocumented() {
        let expected = [
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
            "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
            "224.0.0.0/4", "240.0.0.0/4",
            "::/128", "::1/128", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "fc00::/7", "fe80::/10",
            "fec0::/10", "ff00::/8", "64:ff9b:1::/48",
        ]
        #expect(Set(PeerPolicy.defaultDenied) == Set(cidrs(expected)))
        #expect(PeerPolicy.defaultDenied.count == expected.count)
    }

    @Test func everyDefaultDeniedRangeIsRefused() {
        for c in PeerPolicy.defaultDenied {
            for a in samples(c) {
                #expect(c.contains(a), "sample \(a) outside \(c)")
                #expect(!open.permits(a), "\(a) in \(c) permitted")
            }
        }
        for s in ["0.0.0.0", "0.255.255.255", "10.0.0.0", "10.255.255.255", "100.64.0.0", "100.127.255.255",
                  "127.0.0.1", "127.255.255.255", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.9",
                  "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.1",
                  "203.0.113.255", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
                  "::", "::1", "100::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:1ff:ffff::1",
                  "2001:db8::1", "3fff::1", "3fff:fff:ffff::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1",
                  "fec0::1", "ff02::1", "ff0e::fb", "64:ff9b:1::1", "64:ff9b:1:ffff::1"] {
            #expect(!open.permits(ip(s)), "\(s)")
        }
    }

    @Test func neighboursOfDeniedRangesArePermitted() {
        for s in ["1.0.0.0", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255", "128.0.0.0",
                  "169.253.255.255", "169.255.0.0", "172.15.255.255", "172.32.0.0", "192.0.1.0", "192.0.3.0",
                  "192.88.98.255", "192.88.100.0", "192.167.255.255", "192.169.0.0", "198.17.255.255", "198.20.0.0",
                  "198.51.99.255", "198.51.101.0", "203.0.112.255", "203.0.114.0", "223.255.255.255",
                  "::2:0:0:0", "100::1:0:0:0:1", "2001:200::1", "2001:db9::1", "3fff:1000::1", "fbff::1", "fe00::1",
                  "2400::1", "64:ff9b:2::1"] {
            #expect(open.permits(ip(s)), "\(s)")
        }
    }

    @Test func publicAddressesArePermitted() {
        for s in ["8.8.8.8", "1.1.1.1", "9.9.9.9", "93.184.216.34", "2606:4700::1111", "2001:4860:4860::8888",
                  "64:ff9b::808:808", "2002:0808:0808::", "2002:0808:0808:1::1", "::ffff:8.8.8.8", "::8.8.8.8",
                  "::ffff:0:8.8.8.8"] {
            #expect(open.permits(ip(s)), "\(s)")
        }
    }

    @Test func embeddedIPv4FormsAreJudgedByTheIPv4Address() {
        let denied: [(UInt32, String)] = [
            (0x7F00_0001, "127.0.0.1"), (0x0A01_0203, "10.1.2.3"), (0xA9FE_A9FE, "169.254.169.254"),
            (0xC0A8_0101, "192.168.1.1"), (0xAC10_0001, "172.16.0.1"), (0x6440_0001, "100.64.0.1"),
            (0xE000_0001, "224.0.0.1"), (0xFFFF_FFFF, "255.255.255.255"), (0x0000_0002, "0.0.0.2"),
        ]
        for (v4, text) in denied {
            let hi16 = String(v4 >> 16, radix: 16), lo16 = String(v4 & 0xFFFF, radix: 16)
            let forms = [
                "::ffff:\(text)",                       // IPv4-mapped
                "::ffff:0:\(text)",                     // IPv4-translated
                "::\(text)",                            // IPv4-compatible
                "2002:\(hi16):\(lo16)::",               // 6to4
                "2002:\(hi16):\(lo16):1:2:3:4:5",       // 6to4 with subnet and interface ID
                "64:ff9b::\(text)",                     // NAT64
                "64:ff9b::\(hi16):\(lo16)",
            ]
            for f in forms {
                #expect(PeerPolicy.embeddedIPv4(ip(f)) == v4, "\(f)")
                #expect(!open.permits(ip(f)), "\(f) permitted")
            }
        }
        for s in ["::ffff:127.0.0.1", "::ffff:10.1.2.3", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "::169.254.169.254"] {
            #expect(!open.permits(ip(s)), "\(s)")
        }
        // Not embedding forms.
        #expect(PeerPolicy.embeddedIPv4(ip("::")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("::1")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("8.8.8.8")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("2606:4700::1111")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("64:ff9b::1:808:808")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("::1:ffff:808:808")) == nil)
        #expect(PeerPolicy.embeddedIPv4(ip("2003:808:808::")) == nil)
    }

    @Test func allowOpensDefaultDeniedRanges() {
        let p = PeerPolicy(allow: cidrs(["127.0.0.0/8", "fd00::/8"]), deny: [])
        #expect(p.permits(ip("127.0.0.1")))
        #expect(p.permits(ip("127.9.9.9")))
        #expect(p.permits(ip("::ffff:127.0.0.1")), "allow on IPv4 opens the IPv4-mapped form")
        #expect(p.permits(ip("64:ff9b::7f00:1")))
        #expect(p.permits(ip("2002:7f00:1::")))
        #expect(p.permits(ip("fd00::1")))
        #expect(!p.permits(ip("fc00::1")))
        #expect(!p.permits(ip("::1")), "allow 127.0.0.0/8 does not open ::1")
        #expect(!p.permits(ip("10.0.0.1")))
        #expect(!p.permits(ip("::ffff:10.0.0.1")))
        #expect(p.permits(ip("8.8.8.8")))
        // Allowing the mapped IPv6 prefix opens the mapped address too (match on the address itself).
        let mapped = PeerPolicy(allow: cidrs(["::ffff:10.0.0.0/104"]), deny: [])
        #expect(mapped.permits(ip("::ffff:10.1.1.1")))
        #expect(!mapped.permits(ip("10.1.1.1")))
        // Allow everything.
        let all = PeerPolicy(allow: cidrs(["0.0.0.0/0", "::/0"]), deny: [])
        #expect(all.permits(ip("127.0.0.1")) && all.permits(ip("::1")) && all.permits(ip("169.254.169.254")))
    }

    @Test func denyWinsOverAllow() {
        let p = PeerPolicy(allow: cidrs(["127.0.0.0/8", "10.0.0.0/8"]), deny: cidrs(["127.0.0.53", "10.1.0.0/16"]))
        #expect(p.permits(ip("127.0.0.1")))
        #expect(!p.permits(ip("127.0.0.53")))
        #expect(!p.permits(ip("::ffff:127.0.0.53")))
        #expect(!p.permits(ip("2002:7f00:35::")))
        #expect(p.permits(ip("10.2.0.1")))
        #expect(!p.permits(ip("10.1.2.3")))
        let same = PeerPolicy(allow: cidrs(["127.0.0.0/8"]), deny: cidrs(["127.0.0.0/8"]))
        #expect(!same.permits(ip("127.0.0.1")))
        #expect(!same.permits(ip("::ffff:127.0.0.1")))
    }

    @Test func denyPublicRanges() {
        let p = PeerPolicy(allow: [], deny: cidrs(["8.8.8.0/24", "2606:4700::/32"]))
        #expect(!p.permits(ip("8.8.8.8")))
        #expect(!p.permits(ip("::ffff:8.8.8.8")))
        #expect(!p.permits(ip("64:ff9b::808:808")))
        #expect(!p.permits(ip("2002:808:808::")))
        #expect(!p.permits(ip("2606:4700::1111")))
        #expect(p.permits(ip("8.8.4.4")))
        #expect(p.permits(ip("1.1.1.1")))
        #expect(p.permits(ip("2606:4701::1")))
        // Still safe by default.
        #expect(!p.permits(ip("127.0.0.1")))
    }

    @Test func fromConfig() {
        let p = PeerPolicy(PeerConfig(allow: cidrs(["192.168.0.0/16"]), deny: cidrs(["192.168.66.0/24"])))
        #expect(p.permits(ip("192.168.1.1")))
        #expect(!p.permits(ip("192.168.66.1")))
        #expect(!p.permits(ip("10.0.0.1")))
    }
}
