import STUN
import Testing
import TernCore

@Suite("Config: CIDR")
struct ConfigCIDRTests {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    @Test func parsing() throws {
        #expect(CIDR("10.0.0.0/8")?.description == "10.0.0.0/8")
        #expect(CIDR("2001:db8::/32")?.description == "2001:db8::/32")
        // A bare address is a host route.
        #expect(CIDR("192.0.2.7") == CIDR("192.0.2.7/32"))
        #expect(CIDR("::1")?.prefixLength == 128)
        // Host bits are accepted and cleared.
        #expect(CIDR("10.1.2.3/8")?.description == "10.0.0.0/8")
        #expect(CIDR("10.1.2.3/8") == CIDR("10.0.0.0/8"))
        #expect(CIDR("2001:db8:ffff::1/32")?.description == "2001:db8::/32")
        #expect(CIDR("0.0.0.0/0")?.prefixLength == 0)
        #expect(CIDR("::/0")?.prefixLength == 0)
        for bad in ["", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08",
                    "10.0.0.0/8/8", "10.0.0/8", "x/8", "10.0.0.0 /8", "10.0.0.0/ 8"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
        #expect(CIDR(address: ip("10.0.0.0"), prefixLength: 33) == nil)
        #expect(CIDR(address: ip("::"), prefixLength: 128) != nil)
    }

    @Test func containsIPv4() throws {
        let all = try #require(CIDR("0.0.0.0/0"))
        #expect(all.contains(ip("0.0.0.0")))
        #expect(all.contains(ip("255.255.255.255")))
        #expect(!all.contains(ip("::")))

        let host = try #require(CIDR("192.0.2.7/32"))
        #expect(host.contains(ip("192.0.2.7")))
        #expect(!host.contains(ip("192.0.2.6")))
        #expect(!host.contains(ip("192.0.2.8")))

        let net = try #require(CIDR("10.0.0.0/8"))
        #expect(net.contains(ip("10.0.0.0")))
        #expect(net.contains(ip("10.255.255.255")))
        #expect(!net.contains(ip("9.255.255.255")))
        #expect(!net.contains(ip("11.0.0.0")))

        let odd = try #require(CIDR("172.16.0.0/12"))
        #expect(odd.contains(ip("172.31.255.255")))
        #expect(!odd.contains(ip("172.32.0.0")))

        let half = try #require(CIDR("128.0.0.0/1"))
        #expect(half.contains(ip("200.1.1.1")))
        #expect(!half.contains(ip("127.255.255.255")))
    }

    @Test func containsIPv6() throws {
        let all = try #require(CIDR("::/0"))
        #expect(all.contains(ip("::")))
        #expect(all.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
        #expect(!all.contains(ip("0.0.0.0")))

        let host = try #require(CIDR("::1/128"))
        #expect(host.contains(ip("::1")))
        #expect(!host.contains(ip("::")))
        #expect(!host.contains(ip("::2")))

        let pair = try #require(CIDR("2001:db8::/127"))
        #expect(pair.contains(ip("2001:db8::")))
        #expect(pair.contains(ip("2001:db8::1")))
        #expect(!pair.contains(ip("2001:db8::2")))

        let slash64 = try #require(CIDR("2001:db8:0:1::/64"))
        #expect(slash64.contains(ip("2001:db8:0:1:ffff:ffff:ffff:ffff")))
        #expect(!slash64.contains(ip("2001:db8:0:2::")))

        let slash65 = try #require(CIDR("2001:db8::8000:0:0:0/65"))
        #expect(slash65.contains(ip("2001:db8::ffff:0:0:1")))
        #expect(!slash65.contains(ip("2001:db8::7fff:ffff:ffff:ffff")))

        let linkLocal = try #require(CIDR("fe80::/10"))
        #expect(linkLocal.contains(ip("febf::1")))
        #expect(!linkLocal.contains(ip("fec0::1")))
    }

    @Test func familiesNeverMix() throws {
        // An IPv4-mapped IPv6 address is not inside an IPv4 prefix, and vice versa.
        #expect(!(CIDR("127.0.0.0/8")!.contains(ip("::ffff:127.0.0.1"))))
        #expect(!(CIDR("::ffff:0:0/96")!.contains(ip("127.0.0.1"))))
        #expect(!(CIDR("0.0.0.0/0")!.contains(ip("::1"))))
        #expect(!(CIDR("::/0")!.contains(ip("127.0.0.1"))))
    }
}
