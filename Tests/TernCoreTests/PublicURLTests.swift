import STUN
import Testing
@testable import TernCore

@Suite("STUN/TURN URIs (RFC 7064, RFC 7065) and publicURLs")
struct PublicURLTests {
    @Test("Valid URIs parse and print back canonically", arguments: [
        ("stun:example.org", "stun:example.org"),
        ("STUN:example.org:3478", "stun:example.org:3478"),
        ("stuns:192.0.2.1:5349", "stuns:192.0.2.1:5349"),
        ("turn:[2001:db8::1]:3478?transport=udp", "turn:[2001:db8::1]:3478?transport=udp"),
        ("turn:turn.example.com?transport=tcp", "turn:turn.example.com?transport=tcp"),
        ("turns:turn.example.com:443?transport=tcp", "turns:turn.example.com:443?transport=tcp"),
        ("turn:[::1]", "turn:[::1]"),
        ("turn:host_1.example~x:1", "turn:host_1.example~x:1"),
    ])
    func valid(text: String, canonical: String) throws {
        #expect(try TurnURI(parsing: text).description == canonical)
    }

    @Test("Invalid URIs are refused with the reason", arguments: [
        ("http://example.org", TurnURI.ParseError.scheme),
        ("stun", .scheme),
        ("turn://example.org:3478", .authority),
        ("turn:user@example.org", .authority),
        ("turn:example.org/path", .authority),
        ("stun:example.org?transport=udp", .query),
        ("turn:example.org?foo=bar", .query),
        ("turn:example.org?transport=", .query),
        ("turn:example.org:0", .port),
        ("turn:example.org:65536", .port),
        ("turn:example.org:", .port),
        ("turn:example.org:3x", .port),
        ("turn:", .host),
        ("turn:999.1.1.1", .host),
        ("turn:[192.0.2.1]", .host),
        ("turn:[2001:db8::1", .host),
        ("turn:2001:db8::1", .host),
        ("turn:exa mple.org", .host),
    ])
    func invalid(text: String, error: TurnURI.ParseError) {
        #expect(throws: error) { try TurnURI(parsing: text) }
    }

    @Test("publicURLs in the config: validated, with the key path and the reason in the error")
    func configKey() throws {
        let c = try parse(#"{"publicURLs": ["stun:turn.example.com", "turns:turn.example.com:443?transport=tcp"]}"#)
        #expect(c.publicURLs?.map(\.description) == ["stun:turn.example.com", "turns:turn.example.com:443?transport=tcp"])
        #expect(try parse(#"{"publicURLs": null}"#).publicURLs == nil)
        let bad = parseError(#"{"publicURLs": ["stun:ok.example", "turn://bad.example"]}"#)
        #expect(bad?.path == "publicURLs[1]")
        #expect(bad?.message.contains("not a STUN/TURN URI") == true)
        #expect(parseError(#"{"publicURLs": []}"#)?.path == "publicURLs")
        #expect(parseError(#"{"publicURLs": "stun:x"}"#)?.path == "publicURLs")
    }

    @Test("Derived URLs: external addresses first, wildcard listeners expand to the host's addresses, loopback only when nothing else exists")
    func derived() throws {
        var c = TernConfig()
        let host: [IPAddress] = [IPAddress("127.0.0.1")!, IPAddress("10.1.2.3")!, IPAddress("::1")!,
                                 IPAddress("fe80::1")!, IPAddress("2001:db8::7")!]
        #expect(c.derivedPublicURLs(hostAddresses: host).map(\.description) == [
            "stun:10.1.2.3:3478", "stun:[2001:db8::7]:3478",
            "turn:10.1.2.3:3478?transport=udp", "turn:10.1.2.3:3478?transport=tcp",
            "turn:[2001:db8::7]:3478?transport=udp", "turn:[2001:db8::7]:3478?transport=tcp",
        ])
        // Only loopback: loopback it is.
        #expect(c.derivedPublicURLs(hostAddresses: [IPAddress("127.0.0.1")!]).map(\.description) == [
            "stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp",
        ])
        // An external address replaces the listener's; TLS and DTLS listeners give turns:.
        c.relay.externalIPv4 = IPAddress("203.0.113.9")
        c.listeners = [ListenerConfig(transport: .udp, address: .anyV4, port: 3478),
                       ListenerConfig(transport: .tls, address: IPAddress("10.1.2.3")!, port: 443),
                       ListenerConfig(transport: .dtls, address: IPAddress("10.1.2.3")!, port: 5349)]
        #expect(c.derivedPublicURLs(hostAddresses: host).map(\.description) == [
            "stun:203.0.113.9:3478", "turn:203.0.113.9:3478?transport=udp",
            "turns:203.0.113.9:443?transport=tcp", "turns:203.0.113.9:5349?transport=udp",
        ])
        // Configured publicURLs win.
        c.publicURLs = [try TurnURI(parsing: "turn:turn.example.com")]
        #expect(c.effectivePublicURLs(hostAddresses: host).map(\.description) == ["turn:turn.example.com"])
    }
}

@Suite("Credentials for iceServers (TURN REST API)")
struct CredentialIssuerTests {
    @Test("An issued credential is one the server accepts until it expires; user and ttl are checked")
    func issue() throws {
        let issuer = CredentialIssuer(secret: "s3cret", urls: ["turn:192.0.2.1:3478?transport=udp"])
        let ice = try issuer.issue(user: "alice", ttl: 3600, now: 1_800_000_000)
        #expect(ice.username == "1800003600:alice")
        #expect(ice.urls == ["turn:192.0.2.1:3478?transport=udp"])
        #expect(ice.expires == "2027-01-15T09:00:00Z")
        let store = CredentialStore(realm: "tern", users: [:], secrets: ["s3cret"])
        let expected = LongTermKey.md5(username: ice.username, realm: "tern", password: ice.credential)
        #expect(store.lookup(username: ice.username, algorithm: .md5, now: 1_800_003_600) == .keys([expected]))
        #expect(store.lookup(username: ice.username, algorithm: .md5, now: 1_800_003_601) == .expired)
        // Defaults: a day, and a random user id of its own.
        let d = try issuer.issue(user: nil, ttl: nil, now: 1_800_000_000)
        #expect(d.username.hasPrefix("1800086400:user-"))
        #expect(d.username != (try issuer.issue(user: nil, ttl: nil, now: 1_800_000_000)).username)
        #expect(ice.iceServersEntry == #"{"urls":["turn:192.0.2.1:3478?transport=udp"],"username":"1800003600:alice","credential":"\#(ice.credential)"}"#)
        for (user, ttl) in [("", 60), ("a", 0), ("a", CredentialIssuer.maxTTL + 1), ("bad\u{7}", 60),
                            (String(repeating: "u", count: 491), 60)] {
            #expect(throws: CredentialIssuer.Problem.self) { try issuer.issue(user: user, ttl: ttl, now: 1) }
        }
        let none = CredentialIssuer(secret: nil, urls: [])
        #expect(throws: CredentialIssuer.Problem.noSecret) { try none.issue(user: "a", ttl: 60, now: 1) }
        none.update(secret: "later", urls: ["stun:x"])
        #expect(try none.issue(user: "a", ttl: 60, now: 1).urls == ["stun:x"])
    }

    @Test("Generated secrets are long, URL-safe and different each time")
    func randomSecret() {
        let a = CredentialIssuer.randomSecret(), b = CredentialIssuer.randomSecret()
        #expect(a.count == 43 && b.count == 43 && a != b)
        #expect(a.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
    }
}
