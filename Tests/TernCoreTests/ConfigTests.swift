import Foundation
import Logging
import STUN
import Testing
@testable import TernCore

/// Parses `json` and returns the error it raises, or nil when it parses.
func parseError(_ json: String) -> ConfigError? {
    do {
        _ = try TernConfig.parse(json: Array(json.utf8), source: "config.json")
        return nil
    } catch {
        return error
    }
}

func parse(_ json: String) throws -> TernConfig {
    try TernConfig.parse(json: Array(json.utf8), source: "config.json")
}

@Suite("Config: defaults and the example file")
struct ConfigDefaultsTests {
    @Test func emptyObjectGivesBuiltInDefault() throws {
        let config = try parse("{}")
        #expect(config == TernConfig.builtInDefault)
        #expect(config.realm == "tern")
        #expect(config.software == nil)
        #expect(config.workers == nil)
        #expect(config.listeners == [
            ListenerConfig(transport: .udp, address: .anyV4, port: 3478),
            ListenerConfig(transport: .tcp, address: .anyV4, port: 3478),
            // A host without IPv6 skips the [::] pair of the default instead of failing to start.
            ListenerConfig(transport: .udp, address: .anyV6, port: 3478, optional: true),
            ListenerConfig(transport: .tcp, address: .anyV6, port: 3478, optional: true),
        ])
        #expect(config.relay == RelayConfig(ipv4: nil, ipv6: nil, externalIPv4: nil, externalIPv6: nil, portRange: 49152...65535))
        #expect(config.auth.users.isEmpty && config.auth.secrets.isEmpty)
        #expect(config.peers.allow.isEmpty && config.peers.deny.isEmpty)
        #expect(config.admin == AdminConfig(address: IPAddress("127.0.0.1")!, port: 8478, token: nil))
        #expect(config.log.level == .info)
    }

    @Test func emptySectionsGiveDefaults() throws {
        let config = try parse(#"{"relay": {}, "auth": {}, "peers": {}, "admin": {}, "log": {}}"#)
        #expect(config == TernConfig.builtInDefault)
    }

    @Test func summaryListsListeners() {
        #expect(TernConfig.builtInDefault.summary() == "udp 0.0.0.0:3478, tcp 0.0.0.0:3478, udp [::]:3478, tcp [::]:3478")
    }

    @Test func fullConfigParses() throws {
        let config = try parse("""
        {
          "realm": "turn.example.net", "software": "Tern 0.1", "workers": 4,
          "listeners": [
            {"transport": "tcp", "address": "192.0.2.1", "port": 0},
            {"transport": "tls", "address": "2001:db8::1"},
            {"transport": "dtls"},
            {"port": 3479},
            {"transport": "udp", "address": "192.0.2.1", "port": 0}
          ],
          "relay": {"ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "portRange": [1024, 1024]},
          "auth": {"users": {"alice": "pw1", "bob": "pw2"}, "secrets": ["s1", "s2"]},
          "peers": {"allow": ["10.1.0.0/16"], "deny": ["10.0.0.0/8", "::1", "fe80::/10"]},
          "admin": {"address": "::1", "port": 9000, "token": "t0ken-t0ken-t0ken!"},
          "log": {"level": "trace"},
          "tls": {"certificate": "/etc/tern/cert.pem", "privateKey": "/etc/tern/key.pem"}
        }
        """)
        #expect(config.realm == "turn.example.net")
        #expect(config.tls == TLSConfig(certificate: "/etc/tern/cert.pem", privateKey: "/etc/tern/key.pem"))
        #expect(config.software == "Tern 0.1")
        #expect(config.workers == 4)
        #expect(config.listeners == [
            ListenerConfig(transport: .tcp, address: IPAddress("192.0.2.1")!, port: 0),
            ListenerConfig(transport: .tls, address: IPAddress("2001:db8::1")!, port: 5349),
            ListenerConfig(transport: .dtls, address: .anyV4, port: 5349),
            ListenerConfig(transport: .udp, address: .anyV4, port: 3479),
            ListenerConfig(transport: .udp, address: IPAddress("192.0.2.1")!, port: 0),
        ])
        #expect(config.summary() == "tcp 192.0.2.1:0, tls [2001:db8::1]:5349, dtls 0.0.0.0:5349, udp 0.0.0.0:3479, udp 192.0.2.1:0")
        #expect(config.relay.ipv4 == IPAddress("192.0.2.1"))
        #expect(config.relay.ipv6 == IPAddress("2001:db8::1"))
        #expect(config.relay.externalIPv4 == nil)
        #expect(config.relay.portRange == 1024...1024)
        #expect(config.auth.users == ["alice": "pw1", "bob": "pw2"])
        #expect(config.auth.secrets == ["s1", "s2"])
        #expect(config.peers.allow == [CIDR("10.1.0.0/16")!])
        #expect(config.peers.deny == [CIDR("10.0.0.0/8")!, CIDR("::1/128")!, CIDR("fe80::/10")!])
        #expect(config.admin == AdminConfig(address: .loopbackV6, port: 9000, token: "t0ken-t0ken-t0ken!"))
        #expect(config.log.level == .trace)
    }

    @Test func nullMeansUnsetForNullableKeys() throws {
        let config = try parse(#"{"software": null, "workers": null, "relay": {"ipv4": null, "externalIPv6": null}, "admin": {"token": null}}"#)
        #expect(config == TernConfig.builtInDefault)
    }

    @Test func everyLogLevelName() throws {
        for (name, level) in [("trace", Logger.Level.trace), ("debug", .debug), ("info", .info), ("notice", .notice),
                              ("warning", .warning), ("error", .error), ("critical", .critical)] {
            #expect(try parse(#"{"log": {"level": "\#(name)"}}"#).log.level == level)
            #expect(level.configName == name)
            #expect(Logger.Level(configName: name) == level)
        }
        #expect(Logger.Level(configName: "INFO") == nil)
        #expect(Logger.Level.configNames == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    }
}

@Suite("Config: errors name the key path")
struct ConfigErrorTests {
    @Test func unknownTopLevelKey() throws {
        let e = try #require(parseError(#"{"realm": "x", "relm": "y"}"#))
        #expect(e.path == "relm")
        #expect(e.source == "config.json")
        #expect(e.description ==
            "config.json: relm: unknown key; expected one of realm, software, workers, listeners, relay, auth, peers, admin, log, limits, tls, drain, io, publicURLs, natBehavior, cluster")
    }

    @Test func unknownNestedKey() throws {
        let e = try #require(parseError(#"{"relay": {"portRang": [1024, 2000]}}"#))
        #expect(e.description ==
            "config.json: relay.portRang: unknown key; expected one of ipv4, ipv6, externalIPv4, externalIPv6, portRange, discoverExternal")
    }

    @Test func unknownKeyInsideListener() throws {
        let e = try #require(parseError(#"{"listeners": [{"port": 1}, {"prot": 2}]}"#))
        #expect(e.path == "listeners[1].prot")
        #expect(e.message == "unknown key; expected one of transport, address, port, proxyProtocol")
    }

    @Test func unknownKeysInEverySection() throws {
        #expect(parseError(#"{"auth": {"user": {}}}"#)?.path == "auth.user")
        #expect(parseError(#"{"peers": {"allowed": []}}"#)?.path == "peers.allowed")
        #expect(parseError(#"{"admin": {"tokn": "x"}}"#)?.path == "admin.tokn")
        #expect(parseError(#"{"log": {"lvl": "info"}}"#)?.path == "log.lvl")
    }

    @Test func wrongTransportType() throws {
        let e = try #require(parseError(#"{"listeners": [{"transport": "udp"}, {"transport": "tcp"}, {"transport": 5}]}"#))
        #expect(e.path == "listeners[2].transport")
        #expect(e.message == #"expected one of "udp", "tcp", "tls", "dtls", found integer 5"#)
        let e2 = try #require(parseError(#"{"listeners": [{"transport": "sctp"}]}"#))
        #expect(e2.path == "listeners[0].transport")
        #expect(e2.message.hasSuffix(#"found string "sctp""#))
    }

    @Test func stringWhereIntegerExpected() throws {
        let e = try #require(parseError(#"{"listeners": [{"port": "x"}]}"#))
        #expect(e.description == #"config.json: listeners[0].port: expected an integer 0...65535, found string "x""#)
    }

    @Test func boolWhereIntegerExpected() throws {
        let e = try #require(parseError(#"{"listeners": [{"port": true}]}"#))
        #expect(e.path == "listeners[0].port")
        #expect(e.message == "expected an integer 0...65535, found true")
        let e2 = try #require(parseError(#"{"workers": false}"#))
        #expect(e2.path == "workers")
        #expect(e2.message.hasSuffix("found false"))
        // 1 and 0 are integers, not booleans.
        #expect(try parse(#"{"workers": 1}"#).workers == 1)
        #expect(try parse(#"{"listeners": [{"port": 0}]}"#).listeners[0].port == 0)
    }

    @Test func fractionWhereIntegerExpected() throws {
        let e = try #require(parseError(#"{"admin": {"port": 1.5}}"#))
        #expect(e.path == "admin.port")
        #expect(e.message == "expected an integer 0...65535, found number 1.5")
        #expect(parseError(#"{"workers": 2.0}"#)?.path == "workers")
        #expect(parseError(#"{"workers": 1e2}"#)?.path == "workers")
    }

    @Test func integerOutOfRange() throws {
        #expect(parseError(#"{"listeners": [{"port": 65536}]}"#)?.message == "expected an integer 0...65535, found integer 65536")
        #expect(parseError(#"{"listeners": [{"port": -1}]}"#)?.message == "expected an integer 0...65535, found integer -1")
        #expect(parseError(#"{"workers": 0}"#)?.message == "expected an integer 1...256 or null, found integer 0")
        #expect(parseError(#"{"workers": 257}"#)?.path == "workers")
        #expect(parseError(#"{"workers": 18446744073709551615}"#)?.path == "workers")
        #expect(parseError(#"{"workers": 100000000000000000000000}"#)?.path == "workers")
    }

    @Test func nullWhereValueRequired() throws {
        #expect(parseError(#"{"realm": null}"#)?.message == "expected a non-empty string, found null")
        #expect(parseError(#"{"listeners": null}"#)?.path == "listeners")
        #expect(parseError(#"{"relay": null}"#)?.message == "expected an object, found null")
        #expect(parseError(#"{"admin": {"port": null}}"#)?.path == "admin.port")
    }

    @Test func badIPAddress() throws {
        let e = try #require(parseError(#"{"listeners": [{"address": "0.0.0.256"}]}"#))
        #expect(e.path == "listeners[0].address")
        #expect(e.message == #"expected an IP address such as "192.0.2.1" or "2001:db8::1", found string "0.0.0.256""#)
        #expect(parseError(#"{"listeners": [{"address": "[::]"}]}"#)?.path == "listeners[0].address")
        #expect(parseError(#"{"admin": {"address": "localhost"}}"#)?.path == "admin.address")
        #expect(parseError(#"{"relay": {"externalIPv4": "1.2.3"}}"#)?.path == "relay.externalIPv4")
    }

    @Test func wrongFamilyForRelayAddresses() throws {
        let e = try #require(parseError(#"{"relay": {"ipv4": "::1"}}"#))
        #expect(e.path == "relay.ipv4")
        #expect(e.message == #"expected an IPv4 address such as "192.0.2.1" or null, found string "::1""#)
        #expect(parseError(#"{"relay": {"ipv6": "192.0.2.1"}}"#)?.path == "relay.ipv6")
        #expect(parseError(#"{"relay": {"externalIPv4": "2001:db8::1"}}"#)?.path == "relay.externalIPv4")
        #expect(parseError(#"{"relay": {"externalIPv6": "192.0.2.1"}}"#)?.path == "relay.externalIPv6")
    }

    @Test func unspecifiedRelayAddresses() throws {
        // The bind addresses may be unspecified (the server picks); the advertised ones may not.
        let config = try parse(#"{"relay": {"ipv4": "0.0.0.0", "ipv6": "::"}}"#)
        #expect(config.relay.ipv4 == .anyV4 && config.relay.ipv6 == .anyV6)
        let e = try #require(parseError(#"{"relay": {"externalIPv4": "0.0.0.0"}}"#))
        #expect(e.path == "relay.externalIPv4")
        #expect(e.message == "expected a concrete IPv4 address, found the unspecified address 0.0.0.0")
        #expect(parseError(#"{"relay": {"externalIPv6": "::"}}"#)?.path == "relay.externalIPv6")
    }

    @Test func badCIDR() throws {
        let e = try #require(parseError(#"{"peers": {"deny": ["10.0.0.0/8", "10.0.0.0/33"]}}"#))
        #expect(e.path == "peers.deny[1]")
        #expect(e.message == #"expected a CIDR such as "10.0.0.0/8" or "2001:db8::/32", found string "10.0.0.0/33""#)
        #expect(parseError(#"{"peers": {"allow": [7]}}"#)?.path == "peers.allow[0]")
        #expect(parseError(#"{"peers": {"allow": "10.0.0.0/8"}}"#)?.message == "expected an array of CIDR strings, found string \"10.0.0.0/8\"")
    }

    @Test func portRangeShape() throws {
        let reversed = try #require(parseError(#"{"relay": {"portRange": [60000, 50000]}}"#))
        #expect(reversed.path == "relay.portRange")
        #expect(reversed.message == "min 60000 is greater than max 50000; expected [min, max], two integers with 1024 <= min <= max <= 65535")
        let short = try #require(parseError(#"{"relay": {"portRange": [50000]}}"#))
        #expect(short.path == "relay.portRange")
        #expect(short.message == "expected [min, max], two integers with 1024 <= min <= max <= 65535, found an array of 1 element")
        #expect(parseError(#"{"relay": {"portRange": [1, 2, 3]}}"#)?.path == "relay.portRange")
        #expect(parseError(#"{"relay": {"portRange": "49152-65535"}}"#)?.path == "relay.portRange")
        let low = try #require(parseError(#"{"relay": {"portRange": [1023, 2000]}}"#))
        #expect(low.path == "relay.portRange[0]")
        #expect(low.message == "expected an integer 1024...65535, found integer 1023")
        #expect(parseError(#"{"relay": {"portRange": [2000, 65536]}}"#)?.path == "relay.portRange[1]")
        #expect(try parse(#"{"relay": {"portRange": [1024, 65535]}}"#).relay.portRange == 1024...65535)
    }

    @Test func duplicateListener() throws {
        let e = try #require(parseError("""
        {"listeners": [{"transport": "udp", "port": 3478}, {"transport": "tcp"}, {"address": "0.0.0.0"}]}
        """))
        #expect(e.path == "listeners[2]")
        #expect(e.message == "duplicate listener udp 0.0.0.0:3478, same as listeners[0]")
        // Same port on another transport or address is fine; so are several ephemeral (port 0) ones.
        let ok = try parse(#"{"listeners": [{"port": 0}, {"port": 0}, {"transport": "tcp", "port": 0}]}"#)
        #expect(ok.listeners.count == 3)
    }

    @Test func emptyListeners() throws {
        let e = try #require(parseError(#"{"listeners": []}"#))
        #expect(e.path == "listeners")
        #expect(e.message == "at least one listener is required")
        #expect(parseError(#"{"listeners": {}}"#)?.message == "expected an array of listener objects, found an object")
        #expect(parseError(#"{"listeners": ["udp"]}"#)?.path == "listeners[0]")
    }

    @Test func realmAndSoftwareLimits() throws {
        #expect(parseError(#"{"realm": ""}"#)?.path == "realm")
        #expect(parseError(#"{"software": ""}"#)?.path == "software")
        let long = String(repeating: "a", count: 128)
        #expect(parseError(#"{"realm": "\#(long)"}"#)?.path == "realm")
        #expect(try parse(#"{"realm": "\#(long.dropLast())"}"#).realm.count == 127)
        // 127 characters of 4 bytes each is 508 bytes: allowed.
        let wide = String(repeating: "\u{1F600}", count: 127)
        #expect(try parse(#"{"software": "\#(wide)"}"#).software == wide)
    }

    @Test func authValidation() throws {
        #expect(parseError(#"{"auth": {"users": {"alice": ""}}}"#)?.path == "auth.users.alice")
        #expect(parseError(#"{"auth": {"users": {"alice": 5}}}"#)?.message == "expected a non-empty password string or {\"file\": \"/path\"}, found integer 5")
        #expect(parseError(#"{"auth": {"users": {"": "pw"}}}"#)?.path == "auth.users")
        #expect(parseError(#"{"auth": {"users": ["alice"]}}"#)?.path == "auth.users")
        #expect(parseError(#"{"auth": {"secrets": ["ok", ""]}}"#)?.path == "auth.secrets[1]")
        #expect(parseError(#"{"auth": {"secrets": "s"}}"#)?.path == "auth.secrets")
    }

    @Test func adminAndLogValidation() throws {
        #expect(parseError(#"{"admin": {"token": ""}}"#)?.path == "admin.token")
        #expect(parseError(#"{"admin": {"port": 70000}}"#)?.path == "admin.port")
        let e = try #require(parseError(#"{"log": {"level": "verbose"}}"#))
        #expect(e.path == "log.level")
        #expect(e.message == #"expected one of trace, debug, info, notice, warning, error, critical, found string "verbose""#)
    }

    @Test("admin: enabled, perUserMetrics, and no non-loopback address without a token")
    func adminEndpointSettings() throws {
        let c = try parse(#"{"admin": {"enabled": false, "perUserMetrics": true, "address": "::1", "port": 0}}"#)
        #expect(c.admin == AdminConfig(enabled: false, address: .loopbackV6, port: 0, token: nil, perUserMetrics: true))
        #expect(try parse("{}").admin.enabled)
        #expect(try parse("{}").admin.perUserMetrics == false)
        #expect(parseError(#"{"admin": {"enabled": 1}}"#)?.path == "admin.enabled")
        #expect(parseError(#"{"admin": {"perUserMetrics": "yes"}}"#)?.path == "admin.perUserMetrics")
        let open = try #require(parseError(#"{"admin": {"address": "0.0.0.0"}}"#))
        #expect(open.path == "admin.token")
        #expect(open.message.contains("only binds to 127.0.0.1 or ::1"))
        #expect(parseError(#"{"admin": {"address": "2001:db8::1"}}"#)?.path == "admin.token")
        #expect(try parse(#"{"admin": {"address": "0.0.0.0", "token": "t0ken-t0ken-t0ken!"}}"#).admin.token == "t0ken-t0ken-t0ken!")
        // A short token is refused, and the error says why.
        let short = parseError(#"{"admin": {"address": "0.0.0.0", "token": "0123456789abcde"}}"#)
        #expect(short?.path == "admin.token")
        #expect(short?.message.contains("at least 16") == true)
        #expect(try parse(#"{"admin": {"token": "0123456789abcdef"}}"#).admin.token == "0123456789abcdef")
        #expect(try parse(#"{"admin": {"address": "127.0.0.53"}}"#).admin.address == IPAddress("127.0.0.53"))
        // A disabled endpoint may name any address.
        #expect(try parse(#"{"admin": {"address": "0.0.0.0", "enabled": false}}"#).admin.enabled == false)
    }

    @Test("drain: timeout and alternate server")
    func drainSettings() throws {
        #expect(try parse("{}").drain == DrainConfig(timeoutSeconds: 30, alternateServer: nil))
        let c = try parse(#"{"drain": {"timeoutSeconds": 0, "alternateServer": "[2001:db8::20]:3478"}}"#)
        #expect(c.drain == DrainConfig(timeoutSeconds: 0, alternateServer: TransportAddress("[2001:db8::20]:3478")))
        #expect(try parse(#"{"drain": {"alternateServer": "192.0.2.20:3478"}}"#).drain.alternateServer == TransportAddress("192.0.2.20:3478"))
        for bad in [#""192.0.2.20""#, #""192.0.2.20:0""#, #""0.0.0.0:3478""#, #""turn.example.com:3478""#, "3478"] {
            #expect(parseError(#"{"drain": {"alternateServer": \#(bad)}}"#)?.path == "drain.alternateServer", "\(bad)")
        }
        #expect(parseError(#"{"drain": {"timeoutSeconds": -1}}"#)?.path == "drain.timeoutSeconds")
        #expect(parseError(#"{"drain": {"timeout": 5}}"#)?.path == "drain.timeout")
    }

    @Test func invalidJSON() throws {
        let e = try #require(parseError("{\n  \"realm\": \"x\",\n  oops\n}"))
        #expect(e.path == "")
        #expect(e.message.hasPrefix("invalid JSON"))
        // Foundation reports a byte offset; it is turned into a line and column.
        #expect(e.message.contains("line 3"))
        #expect(e.description.hasPrefix("config.json: invalid JSON"))
        #expect(parseError("")?.message == "invalid JSON: the file is empty (use {} for all defaults)")
        #expect(parseError("{\"realm\": \"x\"")?.message.hasPrefix("invalid JSON") == true)
    }

    @Test func topLevelMustBeObject() throws {
        #expect(parseError("[]")?.description == "config.json: expected a JSON object at the top level, found an array")
        #expect(parseError("42")?.message == "expected a JSON object at the top level, found integer 42")
    }

    @Test func dataOverload() throws {
        let config = try TernConfig.parse(json: Data(#"{"realm": "r"}"#.utf8), source: "x")
        #expect(config.realm == "r")
    }

    @Test func booleanDetection() throws {
        // The Linux pitfall: `as? Bool` and `as? Int` succeed for both NSNumber booleans and 0/1.
        let tree = try #require(try JSONSerialization.jsonObject(with: Data(#"[true, false, 1, 0, 1.0, -2]"#.utf8)) as? [Any])
        #expect(tree.map(JSONNode.isBoolean) == [true, true, false, false, false, false])
        #expect(tree.map(JSONNode.integerValue) == [nil, nil, 1, 0, nil, -2])
    }
}

@Suite("Config: limits")
struct ConfigLimitsTests {
    @Test func defaultsAndValues() throws {
        #expect(try parse("{}").limits == LimitsConfig())
        let c = try parse(#"{"limits": {"maxLifetime": 7200, "allocationsPerUser": 3, "permissionsPerAllocation": 10, "channelsPerAllocation": 5}}"#)
        #expect(c.limits.maxLifetime == 7200)
        #expect(c.limits.allocationsPerUser == 3)
        #expect(c.limits.permissionsPerAllocation == 10)
        #expect(c.limits.channelsPerAllocation == 5)
        let abuse = try parse(#"{"limits": {"defaultLifetime": 30, "allocationsPerIP": 4, "allocationsTotal": 9, "allocationRatePerIP": 2, "bandwidthPerAllocation": 0, "bandwidthPerUser": 5000, "unauthenticatedRatePerIP": 7, "handshakesInFlight": 8}}"#).limits
        #expect(abuse.defaultLifetime == 30)
        #expect(abuse.allocationsPerIP == 4)
        #expect(abuse.allocationsTotal == 9)
        #expect(abuse.allocationRatePerIP == 2)
        #expect(abuse.bandwidthPerAllocation == 0)
        #expect(abuse.bandwidthPerUser == 5000)
        #expect(abuse.unauthenticatedRatePerIP == 7)
        #expect(abuse.handshakesInFlight == 8)
        // The per-IP, total, rate and per-allocation limits are on by default; the per-user ones are
        // off (a single static user shared by every browser of an application is the common set-up).
        let d = LimitsConfig()
        #expect(d.allocationsPerIP > 0 && d.allocationRatePerIP > 0 && d.bandwidthPerAllocation > 0 && d.allocationsTotal > 0)
        #expect(d.unauthenticatedRatePerIP > 0 && d.bindingRatePerIP > d.unauthenticatedRatePerIP)
        #expect(d.handshakesInFlight > 0 && d.connectionsPerIP > 0 && d.connectionsWithoutAllocation == 4096)
        #expect(d.allocationsPerUser == 0 && d.bandwidthPerUser == 0)
        #expect(d.handshakesPerIP == 32)
    }

    @Test("Every count and rate limit accepts 0 for unlimited; lifetimes, the idle timeout and the queue size do not")
    func zeroMeansUnlimited() throws {
        let countsAndRates = ["allocationsPerUser", "allocationsPerIP", "allocationsTotal", "allocationRatePerIP",
                              "bandwidthPerAllocation", "bandwidthPerUser", "unauthenticatedRatePerIP", "bindingRatePerIP",
                              "handshakesInFlight", "permissionsPerAllocation", "channelsPerAllocation", "connectionsPerIP",
                              "connectionsWithoutAllocation"]
        let body = countsAndRates.map { "\"\($0)\": 0" }.joined(separator: ", ")
        #expect(try parse("{\"limits\": {\(body)}}").limits == LimitsConfig.unlimited)
        for key in ["defaultLifetime", "maxLifetime", "streamIdleTimeout", "streamQueueBytes"] {
            #expect(parseError("{\"limits\": {\"\(key)\": 0}}")?.path == "limits.\(key)")
        }
        #expect(LimitsConfig.allows(1_000_000, under: 0))
        #expect(!LimitsConfig.allows(3, under: 3) && LimitsConfig.allows(2, under: 3))
        var tiny = LimitsConfig()
        tiny.handshakesInFlight = 4
        #expect(tiny.handshakesPerIP == 1)
        tiny.handshakesInFlight = 80
        #expect(tiny.handshakesPerIP == 10)
    }

    @Test func errorsNameTheKey() {
        #expect(parseError(#"{"limits": {"maxLifetime": 10}}"#)?.path == "limits.maxLifetime")
        #expect(parseError(#"{"limits": {"allocationsPerUser": "many"}}"#)?.path == "limits.allocationsPerUser")
        #expect(parseError(#"{"limits": {"bandwidth": 1}}"#)?.path == "limits.bandwidth")
        #expect(parseError(#"{"limits": {"unauthenticatedRatePerIP": -1}}"#)?.path == "limits.unauthenticatedRatePerIP")
        #expect(parseError(#"{"limits": {"bandwidthPerUser": -1}}"#)?.path == "limits.bandwidthPerUser")
    }
}

@Suite("Config: tls")
struct ConfigTLSTests {
    @Test func tlsListenerNeedsCertificateAndKey() throws {
        #expect(parseError(#"{"listeners": [{"transport": "tls", "port": 5349}]}"#)?.path == "tls.certificate")
        #expect(parseError(#"{"listeners": [{"transport": "tls"}], "tls": {"certificate": "/c.pem"}}"#)?.path == "tls.privateKey")
        let c = try parse(#"{"listeners": [{"transport": "tls"}], "tls": {"certificate": "/c.pem", "privateKey": "/k.pem", "handshakeTimeout": 5}}"#)
        #expect(c.tls.certificate == "/c.pem")
        #expect(c.tls.privateKey == "/k.pem")
        #expect(c.tls.handshakeTimeout == 5)
        #expect(parseError(#"{"tls": {"handshakeTimeout": 0}}"#)?.path == "tls.handshakeTimeout")
        #expect(parseError(#"{"tls": {"cert": "x"}}"#)?.path == "tls.cert")
    }
}
