import Foundation
import Logging
import STUN

extension TernConfig {
    static let topLevelKeys = ["realm", "software", "workers", "listeners", "relay", "auth", "peers", "admin", "log", "limits", "tls", "drain", "io", "publicURLs", "natBehavior", "cluster"]
    static let tlsKeys = ["certificate", "privateKey", "handshakeTimeout"]
    static let limitsKeys = ["defaultLifetime", "maxLifetime", "allocationsPerUser", "allocationsPerIP", "allocationsTotal",
                              "allocationRatePerIP", "permissionsPerAllocation", "channelsPerAllocation",
                              "bandwidthPerAllocation", "bandwidthPerUser", "unauthenticatedRatePerIP", "bindingRatePerIP",
                              "handshakesInFlight", "streamIdleTimeout", "connectionsPerIP", "connectionsWithoutAllocation",
                              "streamQueueBytes"]
    static let listenerKeys = ["transport", "address", "port", "proxyProtocol"]
    static let relayKeys = ["ipv4", "ipv6", "externalIPv4", "externalIPv6", "portRange", "discoverExternal"]
    static let authKeys = ["users", "secrets"]
    static let peerKeys = ["allow", "deny"]
    static let adminKeys = ["enabled", "address", "port", "token", "perUserMetrics"]
    static let drainKeys = ["timeoutSeconds", "alternateServer"]
    static let ioKeys = ["eventLoop", "lingerMicroseconds", "receiveBuffer", "sendBuffer", "relayReceiveBuffer", "relaySendBuffer", "gso", "offload",
                         "offloadInterfaces"]
    static let logKeys = ["level"]

    /// Parses a JSON config document. `source` names it in errors (usually the file path); `files`
    /// reads the secret files it names.
    public static func parse(json: Data, source: String, files: SecretFileReader = .none) throws(ConfigError) -> TernConfig {
        try parse(json: [UInt8](json), source: source, files: files)
    }

    /// Parses a JSON config document. `source` names it in errors (usually the file path); `files`
    /// reads the secret files it names.
    public static func parse(json: [UInt8], source: String, files: SecretFileReader = .none) throws(ConfigError) -> TernConfig {
        let root = JSONNode(value: try jsonTree(json, source: source), path: "", source: source, files: files)
        guard root.value is [String: Any] else {
            throw root.error("expected a JSON object at the top level, found \(JSONNode.describe(root.value))")
        }
        return try parseRoot(root)
    }

    // MARK: JSON text

    static func jsonTree(_ bytes: [UInt8], source: String) throws(ConfigError) -> Any {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw ConfigError(path: "", message: "invalid JSON: the file is empty (use {} for all defaults)", source: source)
        }
        do {
            return try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let ns = error as NSError
            let detail = (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
            var message = "invalid JSON: \(detail)"
            if let offset = characterOffset(in: detail) {
                let (line, column) = lineAndColumn(bytes, offset: offset)
                message = "invalid JSON at line \(line), column \(column): \(detail)"
            }
            throw ConfigError(path: "", message: message, source: source)
        }
    }

    /// The N in Foundation's "... around character N." (a byte offset into the data).
    static func characterOffset(in detail: String) -> Int? {
        guard let r = detail.range(of: "character ") else { return nil }
        let digits = detail[r.upperBound...].prefix(while: { $0.isASCII && $0.isNumber })
        return Int(digits)
    }

    /// 1-based line and column (in bytes) of a byte offset.
    static func lineAndColumn(_ bytes: [UInt8], offset: Int) -> (Int, Int) {
        var line = 1, column = 1
        for b in bytes.prefix(max(0, min(offset, bytes.count))) {
            if b == 0x0A { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    // MARK: Sections

    static func parseRoot(_ root: JSONNode) throws(ConfigError) -> TernConfig {
        let obj = try root.object(known: topLevelKeys)
        var config = TernConfig()

        if let n = obj["realm"] { config.realm = try parseRFC8489Text(n, what: "realm") }
        if let n = obj.nonNull("software") { config.software = try parseRFC8489Text(n, what: "software") }
        if let n = obj.nonNull("workers") { config.workers = try n.integer(in: 1...256, "an integer 1...256 or null") }
        if let n = obj["listeners"] { config.listeners = try parseListeners(n) }
        if let n = obj["relay"] { config.relay = try parseRelay(n) }
        if let n = obj["auth"] { config.auth = try parseAuth(n) }
        if let n = obj["peers"] { config.peers = try parsePeers(n) }
        if let n = obj["admin"] { config.admin = try parseAdmin(n) }
        if let n = obj["log"] { config.log = try parseLog(n) }
        if let n = obj.nonNull("publicURLs") { config.publicURLs = try parsePublicURLs(n) }
        if let n = obj.nonNull("natBehavior") { config.natBehavior = try parseNatBehavior(n, listeners: config.listeners) }
        if let n = obj["limits"] { config.limits = try parseLimits(n) }
        if let n = obj["tls"] { config.tls = try parseTLS(n) }
        if let n = obj["drain"] { config.drain = try parseDrain(n) }
        if let n = obj.nonNull("cluster") { config.cluster = try parseCluster(n) }
        if let n = obj["io"] { config.io = try parseIO(n) }
        config.secretSources = secretSources(obj)
        // An endpoint that can end allocations is not opened to the network without a token.
        if config.admin.enabled, let problem = config.admin.missingTokenProblem {
            throw ConfigError(path: "admin.token", message: problem, source: root.source)
        }
        // A tls or dtls listener needs a certificate and key.
        if let i = config.listeners.firstIndex(where: { $0.transport == .tls || $0.transport == .dtls }) {
            if config.tls.certificate == nil {
                throw ConfigError(path: "tls.certificate", message: "required by the \(config.listeners[i].transport) listener listeners[\(i)]", source: root.source)
            }
            if config.tls.privateKey == nil {
                throw ConfigError(path: "tls.privateKey", message: "required by the \(config.listeners[i].transport) listener listeners[\(i)]", source: root.source)
            }
        }
        return config
    }

    /// Counts the inline secret values and lists the secret files (already read and checked).
    static func secretSources(_ root: JSONObject) -> SecretSources {
        var sources = SecretSources()
        var values: [Any] = []
        if let auth = root.members["auth"] as? [String: Any] {
            values += (auth["users"] as? [String: Any]).map { Array($0.values) } ?? []
            values += auth["secrets"] as? [Any] ?? []
        }
        if let admin = root.members["admin"] as? [String: Any], let token = admin["token"] { values.append(token) }
        if let cluster = root.members["cluster"] as? [String: Any], let key = cluster["nonceSecret"] { values.append(key) }
        for v in values {
            if v is String { sources.inline += 1 }
            if let file = (v as? [String: Any])?["file"] as? String { sources.files.append(file) }
        }
        return sources
    }

    /// REALM and SOFTWARE: RFC 8489 sections 14.9 and 14.14 allow fewer than 128 characters,
    /// at most 763 bytes.
    static func parseRFC8489Text(_ n: JSONNode, what: String) throws(ConfigError) -> String {
        let s = try n.nonEmptyString()
        guard s.count < 128, s.utf8.count <= 763 else {
            throw n.error("\(what) must be fewer than 128 characters and at most 763 bytes (RFC 8489), found \(s.count) characters")
        }
        return s
    }

    static func parseListeners(_ n: JSONNode) throws(ConfigError) -> [ListenerConfig] {
        let items = try n.array("an array of listener objects")
        guard !items.isEmpty else { throw n.error("at least one listener is required") }
        var result: [ListenerConfig] = []
        var firstIndex: [ListenerConfig: Int] = [:]
        for item in items {
            let obj = try item.object(known: listenerKeys)
            var transport = ClientTransport.udp
            if let t = obj["transport"] {
                let names = ClientTransport.allCases.map { "\"\($0)\"" }.joined(separator: ", ")
                guard let s = t.value as? String, let parsed = ClientTransport(name: s) else {
                    throw t.mismatch("one of \(names)")
                }
                transport = parsed
            }
            var address = IPAddress.anyV4
            if let a = obj["address"] { address = try a.ipAddress() }
            var port = transport.defaultPort
            if let p = obj["port"] { port = UInt16(try p.integer(in: 0...65535)) }
            var listener = ListenerConfig(transport: transport, address: address, port: port)
            if let p = obj.nonNull("proxyProtocol") { listener.proxyProtocol = try parseProxyProtocol(p, transport: transport) }
            // Port 0 (ephemeral) listeners never collide with each other.
            let key = ListenerConfig(transport: transport, address: address, port: port)
            if port != 0, let first = firstIndex[key] {
                throw item.error("duplicate listener \(key), same as listeners[\(first)]")
            }
            firstIndex[key] = result.count
            result.append(listener)
        }
        return result
    }

    static func parseRelay(_ n: JSONNode) throws(ConfigError) -> RelayConfig {
        let obj = try n.object(known: relayKeys)
        var relay = RelayConfig()
        relay.ipv4 = try optionalAddress(obj, "ipv4", family: .ipv4, allowUnspecified: true)
        relay.ipv6 = try optionalAddress(obj, "ipv6", family: .ipv6, allowUnspecified: true)
        relay.externalIPv4 = try optionalAddress(obj, "externalIPv4", family: .ipv4, allowUnspecified: false)
        relay.externalIPv6 = try optionalAddress(obj, "externalIPv6", family: .ipv6, allowUnspecified: false)
        if let r = obj["portRange"] {
            let expected = "[min, max], two integers with 1024 <= min <= max <= 65535"
            let items = try r.array(expected)
            guard items.count == 2 else {
                throw r.error("expected \(expected), found an array of \(items.count) element\(items.count == 1 ? "" : "s")")
            }
            let lo = try items[0].integer(in: 1024...65535)
            let hi = try items[1].integer(in: 1024...65535)
            guard lo <= hi else { throw r.error("min \(lo) is greater than max \(hi); expected \(expected)") }
            relay.portRange = UInt16(lo)...UInt16(hi)
        }
        if let d = obj.nonNull("discoverExternal") { relay.discoverExternal = try parseStunServers(d) }
        return relay
    }

    /// `relay.discoverExternal`: one `"HOST:PORT"` string or a non-empty array of them.
    static func parseStunServers(_ n: JSONNode) throws(ConfigError) -> [StunServerName] {
        let expected = "a STUN server \"HOST:PORT\" such as \"stun.example.com:3478\", an array of them, or null"
        let items: [JSONNode] = n.value is String ? [n] : try n.array(expected)
        guard !items.isEmpty else { throw n.mismatch(expected) }
        return try items.map { item throws(ConfigError) in
            guard let text = item.value as? String, let server = StunServerName(text) else { throw item.mismatch(expected) }
            return server
        }
    }

    static func optionalAddress(_ obj: JSONObject, _ key: String, family: AddressFamily,
                                allowUnspecified: Bool) throws(ConfigError) -> IPAddress? {
        guard let n = obj.nonNull(key) else { return nil }
        let name = family == .ipv4 ? "IPv4" : "IPv6"
        let example = family == .ipv4 ? "\"192.0.2.1\"" : "\"2001:db8::1\""
        let expected = "an \(name) address such as \(example)\(allowUnspecified ? "" : " (not unspecified)") or null"
        let ip = try n.ipAddress(expected)
        guard ip.family == family else { throw n.mismatch(expected) }
        if !allowUnspecified && ip.isUnspecified {
            throw n.error("expected a concrete \(name) address, found the unspecified address \(ip)")
        }
        return ip
    }

    static func parseAuth(_ n: JSONNode) throws(ConfigError) -> AuthConfig {
        let obj = try n.object(known: authKeys)
        var auth = AuthConfig()
        if let u = obj["users"] {
            for (name, password) in try u.dictionary("an object mapping user names to passwords") {
                // RFC 8489 section 14.3: USERNAME is fewer than 509 bytes.
                guard !name.isEmpty, name.utf8.count < 509 else {
                    throw u.error("user names must be non-empty and fewer than 509 bytes (RFC 8489)")
                }
                auth.users[name] = try password.secret("a non-empty password string or {\"file\": \"/path\"}")
            }
        }
        if let s = obj["secrets"] {
            auth.secrets = try s.array("an array of non-empty strings or {\"file\": \"/path\"} objects").map { item throws(ConfigError) in
                try item.secret()
            }
        }
        return auth
    }

    /// `natBehavior`: `{"otherAddress": "IP", "otherPort": N}` or null (RFC 5780 section 4.1: two
    /// addresses and two ports). Needs a `udp` listener of the same family on a concrete address and
    /// port (the primary), and an address and port that differ from it.
    static func parseNatBehavior(_ n: JSONNode, listeners: [ListenerConfig]) throws(ConfigError) -> NatBehaviorConfig {
        let obj = try n.object(known: ["otherAddress", "otherPort"])
        guard let a = obj["otherAddress"] else { throw n.error("needs otherAddress (the second IP address) and otherPort") }
        guard let text = a.value as? String, let ip = IPAddress(text), !ip.isUnspecified else {
            throw a.mismatch("a concrete IP address such as \"192.0.2.2\"")
        }
        guard let p = obj["otherPort"] else { throw n.error("needs otherPort (the second port)") }
        let port = UInt16(try p.integer(in: 1...65535))
        guard let primary = listeners.first(where: { $0.transport == .udp && $0.address.family == ip.family }) else {
            throw n.error("needs a udp listener of the same address family as otherAddress (the primary address)")
        }
        guard !primary.address.isUnspecified, primary.port != 0 else {
            throw n.error("the first udp listener of that family (\(primary)) must have a concrete address and port: it is RFC 5780's primary address")
        }
        guard ip != primary.address else { throw a.error("must differ from the primary address \(primary.address)") }
        guard port != primary.port else { throw p.error("must differ from the primary port \(primary.port)") }
        return NatBehaviorConfig(otherAddress: ip, otherPort: port)
    }

    /// `publicURLs`: a non-empty array of STUN/TURN URI strings (RFC 7064, RFC 7065), or null.
    static func parsePublicURLs(_ n: JSONNode) throws(ConfigError) -> [TurnURI] {
        let items = try n.array("an array of stun:/turn:/turns: URI strings, or null")
        guard !items.isEmpty else { throw n.mismatch("a non-empty array of stun:/turn:/turns: URI strings, or null") }
        return try items.map { item throws(ConfigError) in
            let text = try item.string("a stun:/turn:/turns: URI string such as \"turn:turn.example.com:3478?transport=udp\"")
            do {
                return try TurnURI(parsing: text)
            } catch {
                throw item.error("\"\(text)\" is not a STUN/TURN URI: \(error)")
            }
        }
    }

    static func parsePeers(_ n: JSONNode) throws(ConfigError) -> PeerConfig {
        let obj = try n.object(known: peerKeys)
        var peers = PeerConfig()
        if let a = obj["allow"] { peers.allow = try parseCIDRs(a) }
        if let d = obj["deny"] { peers.deny = try parseCIDRs(d) }
        return peers
    }

    static func parseCIDRs(_ n: JSONNode) throws(ConfigError) -> [CIDR] {
        try n.array("an array of CIDR strings").map { item throws(ConfigError) in
            guard let s = item.value as? String, let cidr = CIDR(s) else {
                throw item.mismatch("a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\"")
            }
            return cidr
        }
    }

    static func parseAdmin(_ n: JSONNode) throws(ConfigError) -> AdminConfig {
        let obj = try n.object(known: adminKeys)
        var admin = AdminConfig()
        if let e = obj["enabled"] { admin.enabled = try e.boolean() }
        if let e = obj["perUserMetrics"] { admin.perUserMetrics = try e.boolean() }
        if let a = obj["address"] { admin.address = try a.ipAddress() }
        if let p = obj["port"] { admin.port = UInt16(try p.integer(in: 0...65535)) }
        if let t = obj.nonNull("token") { admin.token = try t.secret("a non-empty string, {\"file\": \"/path\"} or null") }
        return admin
    }

    static func parseDrain(_ n: JSONNode) throws(ConfigError) -> DrainConfig {
        let obj = try n.object(known: drainKeys)
        var drain = DrainConfig()
        if let t = obj["timeoutSeconds"] { drain.timeoutSeconds = try t.integer(in: 0...86_400) }
        if let a = obj.nonNull("alternateServer") {
            let expected = "an address with port such as \"192.0.2.20:3478\" or \"[2001:db8::20]:3478\", or null"
            guard let address = TransportAddress(try a.string(expected)), address.port != 0,
                  !address.ip.isUnspecified else { throw a.mismatch(expected) }
            drain.alternateServer = address
        }
        return drain
    }

    static func parseIO(_ n: JSONNode) throws(ConfigError) -> IOConfig {
        let obj = try n.object(known: ioKeys)
        var io = IOConfig()
        if let e = obj["eventLoop"] {
            let expected = "\"epoll\" or \"sources\""
            guard let loop = IOConfig.EventLoop(rawValue: try e.string(expected)) else { throw e.mismatch(expected) }
            io.eventLoop = loop
        }
        if let l = obj["lingerMicroseconds"] { io.lingerMicroseconds = try l.integer(in: 0...10_000) }
        if let r = obj["receiveBuffer"] { io.receiveBuffer = try r.integer(in: 0...(256 << 20)) }
        if let w = obj["sendBuffer"] { io.sendBuffer = try w.integer(in: 0...(256 << 20)) }
        if let r = obj["relayReceiveBuffer"] { io.relayReceiveBuffer = try r.integer(in: 0...(256 << 20)) }
        if let w = obj["relaySendBuffer"] { io.relaySendBuffer = try w.integer(in: 0...(256 << 20)) }
        if let g = obj["gso"] { io.gso = try g.boolean() }
        if let o = obj["offload"] {
            let expected = "\"off\" or \"tc\""
            guard let mode = IOConfig.Offload(rawValue: try o.string(expected)) else { throw o.mismatch(expected) }
            io.offload = mode
        }
        if let list = obj.nonNull("offloadInterfaces") {
            var names: [String] = []
            for n in try list.array("a list of interface names, or null") {
                let name = try n.nonEmptyString("an interface name")
                // IFNAMSIZ is 16 with the terminating zero.
                guard name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else { throw n.mismatch("an interface name") }
                names.append(name)
            }
            guard !names.isEmpty else { throw list.mismatch("a non-empty list of interface names, or null") }
            io.offloadInterfaces = names
        }
        return io
    }

    static func parseTLS(_ n: JSONNode) throws(ConfigError) -> TLSConfig {
        let obj = try n.object(known: tlsKeys)
        var tls = TLSConfig()
        if let v = obj.nonNull("certificate") { tls.certificate = try v.nonEmptyString("a file path or null") }
        if let v = obj.nonNull("privateKey") { tls.privateKey = try v.nonEmptyString("a file path or null") }
        if let v = obj["handshakeTimeout"] { tls.handshakeTimeout = try v.integer(in: 1...300) }
        return tls
    }

    /// Every count and rate limit accepts 0 for "unlimited"; lifetimes, the idle timeout and the
    /// queue size do not.
    static func parseLimits(_ n: JSONNode) throws(ConfigError) -> LimitsConfig {
        let obj = try n.object(known: limitsKeys)
        var limits = LimitsConfig()
        if let v = obj["defaultLifetime"] { limits.defaultLifetime = try v.integer(in: 1...3600) }
        if let v = obj["maxLifetime"] { limits.maxLifetime = try v.integer(in: 600...86_400) }
        if let v = obj["allocationsPerUser"] { limits.allocationsPerUser = try v.integer(in: 0...1_000_000) }
        if let v = obj["allocationsPerIP"] { limits.allocationsPerIP = try v.integer(in: 0...1_000_000) }
        if let v = obj["allocationsTotal"] { limits.allocationsTotal = try v.integer(in: 0...10_000_000) }
        if let v = obj["allocationRatePerIP"] { limits.allocationRatePerIP = try v.integer(in: 0...1_000_000) }
        if let v = obj["bandwidthPerAllocation"] { limits.bandwidthPerAllocation = try v.integer(in: 0...(1 << 40)) }
        if let v = obj["bandwidthPerUser"] { limits.bandwidthPerUser = try v.integer(in: 0...(1 << 40)) }
        if let v = obj["unauthenticatedRatePerIP"] { limits.unauthenticatedRatePerIP = try v.integer(in: 0...1_000_000) }
        if let v = obj["bindingRatePerIP"] { limits.bindingRatePerIP = try v.integer(in: 0...1_000_000) }
        if let v = obj["connectionsWithoutAllocation"] { limits.connectionsWithoutAllocation = try v.integer(in: 0...10_000_000) }
        if let v = obj["handshakesInFlight"] { limits.handshakesInFlight = try v.integer(in: 0...1_000_000) }
        if let v = obj["permissionsPerAllocation"] { limits.permissionsPerAllocation = try v.integer(in: 0...10_000) }
        if let v = obj["channelsPerAllocation"] { limits.channelsPerAllocation = try v.integer(in: 0...16_384) }
        if let v = obj["streamIdleTimeout"] { limits.streamIdleTimeout = try v.integer(in: 5...86_400) }
        if let v = obj["connectionsPerIP"] { limits.connectionsPerIP = try v.integer(in: 0...1_000_000) }
        if let v = obj["streamQueueBytes"] { limits.streamQueueBytes = try v.integer(in: 16_384...67_108_864) }
        return limits
    }

    static func parseLog(_ n: JSONNode) throws(ConfigError) -> LogConfig {
        let obj = try n.object(known: logKeys)
        var log = LogConfig()
        if let l = obj["level"] {
            guard let s = l.value as? String, let level = Logger.Level(configName: s) else {
                throw l.mismatch("one of \(Logger.Level.configNames.joined(separator: ", "))")
            }
            log.level = level
        }
        return log
    }
}
