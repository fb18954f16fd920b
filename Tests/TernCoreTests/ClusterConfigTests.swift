import STUN
import Testing
@testable import TernCore

/// `cluster` (alternate servers and capacity) and `listeners[].proxyProtocol`: what parses, and the
/// errors, each with its key path.
@Suite("Config: cluster and listeners[].proxyProtocol")
struct ClusterConfigTests {
    private static let expectedEntry =
        #"expected "IP:port" or "IP:port#domain" such as "192.0.2.20:3478#turn2.example.com" or "[2001:db8::20]:3478""#

    private func alternates(_ entries: String) throws -> [AlternateServer] {
        try parse(#"{"cluster": {"alternateServers": [\#(entries)]}}"#).cluster.alternateServers
    }

    @Test("IPv4, IPv6 in brackets, either with #domain; the order is kept; capacity parses")
    func validEntries() throws {
        let config = try parse("""
        {"cluster": {"alternateServers": ["192.0.2.20:3478", "[2001:db8::20]:3479", "192.0.2.21:5349#turn-b.example.com",
                                          "[2001:db8::21]:443#TURN-3.example"], "capacity": 250}}
        """)
        #expect(config.cluster.alternateServers == [
            AlternateServer(address: TransportAddress("192.0.2.20:3478")!),
            AlternateServer(address: TransportAddress("[2001:db8::20]:3479")!),
            AlternateServer(address: TransportAddress("192.0.2.21:5349")!, domain: "turn-b.example.com"),
            AlternateServer(address: TransportAddress("[2001:db8::21]:443")!, domain: "TURN-3.example"),
        ])
        #expect(config.cluster.capacity == 250)
        #expect(config.cluster.alternates(.ipv4).map(\.description) == ["192.0.2.20:3478", "192.0.2.21:5349#turn-b.example.com"])
        #expect(config.cluster.alternates(.ipv6).map(\.description) == ["[2001:db8::20]:3479", "[2001:db8::21]:443#TURN-3.example"])
        // A 63-character label and a single-label name are DNS names.
        let label63 = String(repeating: "a", count: 63)
        #expect(try alternates(#""192.0.2.20:1#\#(label63).example", "192.0.2.22:1#turn""#).map(\.domain) == ["\(label63).example", "turn"])
        // Absent, empty or null: no alternates, no capacity of its own.
        #expect(try parse("{}").cluster == ClusterConfig())
        #expect(try parse(#"{"cluster": {}}"#).cluster == ClusterConfig())
        #expect(try parse(#"{"cluster": null}"#).cluster == ClusterConfig())
        #expect(try alternates("") == [])
    }

    @Test("A bad address, port 0, an unspecified address or a missing port is named with its index")
    func badAddresses() throws {
        for bad in ["192.0.2.300:3478", "192.0.2.20", "192.0.2.20:0", "0.0.0.0:3478", "[::]:3478", "2001:db8::20:3478",
                    "[192.0.2.20]:3478", "192.0.2.20:65536", "192.0.2.20:+1", "turn.example.com:3478", ""] {
            let e = try #require(parseError(#"{"cluster": {"alternateServers": ["192.0.2.9:3478", "\#(bad)"]}}"#), "\(bad)")
            #expect(e.path == "cluster.alternateServers[1]", "\(bad)")
            #expect(e.message == "\(Self.expectedEntry), found string \(String(reflecting: bad))", "\(bad)")
        }
        let e = try #require(parseError(#"{"cluster": {"alternateServers": [3478]}}"#))
        #expect(e.description == "config.json: cluster.alternateServers[0]: \(Self.expectedEntry), found integer 3478")
    }

    @Test("A domain that is not a DNS name is refused: empty labels, leading or trailing hyphens, long labels, other characters")
    func badDomains() throws {
        let long = String(repeating: "a", count: 64) + ".example"
        let tooLongName = Array(repeating: String(repeating: "b", count: 63), count: 4).joined(separator: ".")  // 255
        for domain in ["a..b", "-x.com", "x-.com", "x.-com", long, tooLongName, "", ".example", "example.", "tu_rn.example",
                       "turn example", "tür.example", "a#b"] {
            let e = try #require(parseError(#"{"cluster": {"alternateServers": ["192.0.2.20:3478#\#(domain)"]}}"#), "\(domain)")
            #expect(e.path == "cluster.alternateServers[0]", "\(domain)")
            #expect(e.message.hasPrefix(Self.expectedEntry + ", found string"), "\(domain): \(e.message)")
        }
        // 253 characters in all is the most a name may have.
        let longest = Array(repeating: String(repeating: "c", count: 62), count: 4).joined(separator: ".") + ".d"
        #expect(longest.utf8.count == 253)
        #expect(try alternates(#""192.0.2.20:3478#\#(longest)""#).first?.domain == longest)
        #expect(AlternateServer("192.0.2.20:3478#\(longest)d") == nil)
    }

    @Test("The same address twice, with or without a domain, or spelled differently, is a duplicate")
    func duplicates() throws {
        let e = try #require(parseError(#"{"cluster": {"alternateServers": ["192.0.2.20:3478", "192.0.2.21:3478", "192.0.2.20:3478#b.example"]}}"#))
        #expect(e.path == "cluster.alternateServers[2]")
        #expect(e.message == "duplicate alternate server 192.0.2.20:3478")
        let e6 = try #require(parseError(#"{"cluster": {"alternateServers": ["[2001:db8::20]:3478", "[2001:DB8:0::20]:3478"]}}"#))
        #expect(e6.path == "cluster.alternateServers[1]")
        #expect(e6.message == "duplicate alternate server [2001:db8::20]:3478")
        // Another port is another server.
        #expect(try alternates(#""192.0.2.20:3478", "192.0.2.20:3479""#).count == 2)
    }

    @Test("capacity: 0...10000000 or null; anything else is refused")
    func capacity() throws {
        #expect(try parse(#"{"cluster": {"capacity": null}}"#).cluster.capacity == nil)
        #expect(try parse(#"{"cluster": {"capacity": 0}}"#).cluster.capacity == 0)
        #expect(try parse(#"{"cluster": {"capacity": 10000000}}"#).cluster.capacity == 10_000_000)
        let expected = "expected an integer 0...10000000 (0: never redirect) or null"
        for (bad, found) in [("-1", "integer -1"), ("10000001", "integer 10000001"), (#""5""#, #"string "5""#),
                             ("1.5", "number 1.5"), ("true", "true")] {
            let e = try #require(parseError(#"{"cluster": {"capacity": \#(bad)}}"#), "\(bad)")
            #expect(e.description == "config.json: cluster.capacity: \(expected), found \(found)")
        }
    }

    @Test("Unknown keys, a cluster that is not an object, alternateServers that is not an array")
    func shapes() throws {
        let e = try #require(parseError(#"{"cluster": {"alternates": []}}"#))
        #expect(e.path == "cluster.alternates")
        #expect(e.message == "unknown key; expected one of alternateServers, capacity, nonceSecret")
        #expect(parseError(#"{"cluster": []}"#)?.message == "expected an object, found an array")
        #expect(parseError(#"{"cluster": []}"#)?.path == "cluster")
        let na = try #require(parseError(#"{"cluster": {"alternateServers": "192.0.2.20:3478"}}"#))
        #expect(na.path == "cluster.alternateServers")
        #expect(na.message.hasPrefix(#"expected an array of "IP:port" or "IP:port#domain""#))
        #expect(na.message.hasSuffix(#"strings, found string "192.0.2.20:3478""#))
        #expect(parseError(#"{"cluster": {"alternateServers": null}}"#)?.path == "cluster.alternateServers")
    }

    @Test("effectiveCapacity: cluster.capacity (at most a non-zero allocationsTotal), else limits.allocationsTotal; 0 is none; the TURN settings carry it")
    func effectiveCapacity() throws {
        var limits = LimitsConfig()
        limits.allocationsTotal = 7
        #expect(ClusterConfig().effectiveCapacity(limits) == 7)
        #expect(ClusterConfig(capacity: 3).effectiveCapacity(limits) == 3)
        #expect(ClusterConfig(capacity: 0).effectiveCapacity(limits) == 0)
        #expect(ClusterConfig(capacity: 9).effectiveCapacity(limits) == 7, "above allocationsTotal: redirect where 508 would start")
        limits.allocationsTotal = 0
        #expect(ClusterConfig().effectiveCapacity(limits) == 0)
        let config = try parse(#"{"limits": {"allocationsTotal": 40}, "cluster": {"capacity": 30, "alternateServers": ["192.0.2.20:3478"]}}"#)
        #expect(TurnSettings(config: config).capacity == 30)
        #expect(TurnSettings(config: config).cluster == config.cluster)
        #expect(TurnSettings(config: try parse(#"{"limits": {"allocationsTotal": 40}, "cluster": {"capacity": null}}"#)).capacity == 40)
        #expect(TurnSettings(config: try parse(#"{"limits": {"allocationsTotal": 40}}"#)).capacity == 40)
    }

    @Test("The fleet's nonce key: from cluster.nonceSecret, else the first REST secret once there are alternates; else none (per process)")
    func nonceKey() throws {
        let rest = try parse(#"{"auth": {"secrets": ["s3cret", "older"]}, "cluster": {"alternateServers": ["192.0.2.20:3478"]}}"#)
        let sameSecret = try parse(#"{"auth": {"secrets": ["s3cret"]}, "cluster": {"alternateServers": ["192.0.2.21:3478"]}}"#)
        let key = try #require(rest.cluster.nonceKey(auth: rest.auth))
        #expect(key.count == 32)
        #expect(sameSecret.cluster.nonceKey(auth: sameSecret.auth) == key, "two nodes sharing the REST secret share the key")
        let other = try parse(#"{"auth": {"secrets": ["another"]}, "cluster": {"alternateServers": ["192.0.2.20:3478"]}}"#)
        #expect(other.cluster.nonceKey(auth: other.auth) != key)
        let alone = try parse(#"{"auth": {"secrets": ["s3cret"]}}"#)
        #expect(alone.cluster.nonceKey(auth: alone.auth) == nil, "no fleet: a key of this process only")
        let users = try parse(#"{"auth": {"users": {"a": "b"}}, "cluster": {"alternateServers": ["192.0.2.20:3478"], "nonceSecret": "fleet-nonces"}}"#)
        let usersKey = try #require(users.cluster.nonceKey(auth: users.auth))
        #expect(usersKey != key)
        let explicit = try parse(#"{"auth": {"secrets": ["s3cret"]}, "cluster": {"nonceSecret": "fleet-nonces"}}"#)
        #expect(explicit.cluster.nonceKey(auth: explicit.auth) == usersKey, "nonceSecret wins, with or without alternates")
        #expect(parseError(#"{"cluster": {"nonceSecret": ""}}"#)?.path == "cluster.nonceSecret")
        #expect(try parse(#"{"cluster": {"nonceSecret": null}}"#).cluster.nonceSecret == nil)
    }
}

@Suite("Config: listeners[].proxyProtocol")
struct ProxyProtocolConfigTests {
    /// A tls listener needs a certificate and key (their paths only; nothing is read here).
    static let tls = #""tls": {"certificate": "/c.pem", "privateKey": "/k.pem"}"#

    private func listener(_ transport: String, _ proxy: String) -> String {
        #"{"listeners": [{"transport": "udp"}, {"transport": "\#(transport)", "port": 3479, "proxyProtocol": \#(proxy)}], \#(Self.tls)}"#
    }

    @Test("On tcp and tls: the trusted CIDRs; absent or null: none; the description says so")
    func valid() throws {
        for transport in ["tcp", "tls"] {
            let config = try parse(listener(transport, #"{"trusted": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}"#))
            let pp = try #require(config.listeners[1].proxyProtocol, "\(transport)")
            #expect(pp.trusted == [CIDR("10.0.0.0/8")!, CIDR("2001:db8::/32")!, CIDR("192.0.2.7/32")!])
            #expect(pp.trusts(IPAddress("10.1.2.3")!))
            #expect(pp.trusts(IPAddress("2001:db8::99")!))
            #expect(!pp.trusts(IPAddress("192.0.2.8")!))
            #expect(config.listeners[1].description == "\(transport) 0.0.0.0:3479 (PROXY protocol)")
            #expect(config.listeners[0].proxyProtocol == nil)
        }
        #expect(try parse(listener("tcp", "null")).listeners[1].proxyProtocol == nil)
        // null is "off" on every transport.
        #expect(try parse(listener("udp", "null")).listeners[1].proxyProtocol == nil)
        #expect(try parse(#"{"listeners": [{"transport": "tcp"}]}"#).listeners[0].description == "tcp 0.0.0.0:3478")
    }

    @Test("On udp and dtls: refused, at the listener's proxyProtocol")
    func datagramTransports() throws {
        for transport in ["udp", "dtls"] {
            let e = try #require(parseError(listener(transport, #"{"trusted": ["10.0.0.0/8"]}"#)), "\(transport)")
            #expect(e.path == "listeners[1].proxyProtocol")
            #expect(e.message == "the PROXY protocol is for tcp and tls listeners, not \(transport)")
        }
    }

    @Test("trusted missing, empty, not an array, or with a bad CIDR; unknown keys; not an object")
    func errors() throws {
        let missing = try #require(parseError(listener("tcp", "{}")))
        #expect(missing.path == "listeners[1].proxyProtocol")
        #expect(missing.message == #"needs trusted: the CIDRs the proxies connect from, such as ["10.0.0.0/8"]"#)
        let empty = try #require(parseError(listener("tls", #"{"trusted": []}"#)))
        #expect(empty.path == "listeners[1].proxyProtocol.trusted")
        #expect(empty.message == "at least one CIDR is required (an empty list would refuse every connection)")
        let bad = try #require(parseError(listener("tcp", #"{"trusted": ["10.0.0.0/8", "10.0.0.0/33"]}"#)))
        #expect(bad.path == "listeners[1].proxyProtocol.trusted[1]")
        #expect(bad.message == #"expected a CIDR such as "10.0.0.0/8" or "2001:db8::/32", found string "10.0.0.0/33""#)
        let notArray = try #require(parseError(listener("tcp", #"{"trusted": "10.0.0.0/8"}"#)))
        #expect(notArray.path == "listeners[1].proxyProtocol.trusted")
        #expect(notArray.message == #"expected an array of CIDR strings, found string "10.0.0.0/8""#)
        #expect(parseError(listener("tcp", #"{"trusted": null}"#))?.path == "listeners[1].proxyProtocol.trusted")
        let unknown = try #require(parseError(listener("tcp", #"{"trusted": ["10.0.0.0/8"], "version": 2}"#)))
        #expect(unknown.path == "listeners[1].proxyProtocol.version")
        #expect(unknown.message == "unknown key; expected one of trusted")
        let notObject = try #require(parseError(listener("tcp", "true")))
        #expect(notObject.path == "listeners[1].proxyProtocol")
        #expect(notObject.message == "expected an object, found true")
    }

    @Test("The duplicate check ignores proxyProtocol: the same transport, address and port is one listener either way")
    func duplicates() throws {
        let pp = #"{"trusted": ["10.0.0.0/8"]}"#
        for (first, second) in [("null", pp), (pp, "null"), (pp, pp), (pp, #"{"trusted": ["192.0.2.0/24"]}"#)] {
            let json = #"{"listeners": [{"transport": "tcp", "port": 3478, "proxyProtocol": \#(first)}, {"transport": "udp"}, "#
                + #"{"transport": "tcp", "address": "0.0.0.0", "port": 3478, "proxyProtocol": \#(second)}]}"#
            let e = try #require(parseError(json), "\(first) / \(second)")
            #expect(e.path == "listeners[2]")
            #expect(e.message == "duplicate listener tcp 0.0.0.0:3478, same as listeners[0]")
        }
        // Another port, or another transport, is another listener.
        let config = try parse(#"{"listeners": [{"transport": "tcp", "port": 3478, "proxyProtocol": \#(pp)}, "#
            + #"{"transport": "tcp", "port": 3480}, {"transport": "tls", "port": 3478, "proxyProtocol": \#(pp)}], \#(Self.tls)}"#)
        #expect(config.listeners.map { $0.proxyProtocol != nil } == [true, false, true])
    }
}
