import STUN

/// A `stun:`, `stuns:`, `turn:` or `turns:` URI (RFC 7064 section 3.1, RFC 7065 section 3.1): what
/// a WebRTC application puts in `iceServers[].urls`.
///
///     stunURI = scheme ":" host [ ":" port ]                         scheme = "stun" / "stuns"
///     turnURI = scheme ":" host [ ":" port ] [ "?transport=" transport ]  scheme = "turn" / "turns"
///
/// `host` is RFC 3986's: an IPv4 literal, an IPv6 literal in brackets, or a registered name. There
/// is no "//" authority, no user information and no path. The scheme is case-insensitive (RFC 3986
/// section 3.1) and kept lower-case; `transport` is "udp", "tcp" or another token of unreserved
/// characters (RFC 7065's transport-ext), kept as written.
public struct TurnURI: Sendable, Equatable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable, CaseIterable {
        case stun, stuns, turn, turns
        var isTURN: Bool { self == .turn || self == .turns }
    }

    public var scheme: Scheme
    /// The host as written in the URI (an IPv6 literal with its brackets).
    public var host: String
    public var port: UInt16?
    /// `?transport=` (TURN only).
    public var transport: String?

    public init(scheme: Scheme, host: String, port: UInt16? = nil, transport: String? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.transport = transport
    }

    /// A URI for `address`: an IPv6 address in brackets.
    public init(scheme: Scheme, address: TransportAddress, transport: String? = nil) {
        let host = address.ip.family == .ipv6 ? "[\(address.ip)]" : "\(address.ip)"
        self.init(scheme: scheme, host: host, port: address.port, transport: transport)
    }

    public var description: String {
        var s = "\(scheme.rawValue):\(host)"
        if let port { s += ":\(port)" }
        if let transport { s += "?transport=\(transport)" }
        return s
    }

    /// Why `text` is not a STUN/TURN URI, or nil when it is one.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case scheme, authority, host, port, query

        public var description: String {
            switch self {
            case .scheme: return "the scheme must be stun:, stuns:, turn: or turns:"
            case .authority: return "no \"//\", user information or path: the form is scheme:host[:port] (RFC 7064, RFC 7065)"
            case .host: return "the host must be an IPv4 address, an IPv6 address in brackets, or a host name"
            case .port: return "the port must be a number from 1 to 65535"
            case .query: return "only turn: and turns: URIs take a query, and it must be ?transport=udp, ?transport=tcp or another transport token"
            }
        }
    }

    public init(parsing text: String) throws(ParseError) {
        guard let colon = text.firstIndex(of: ":"),
              let scheme = Scheme(rawValue: text[..<colon].lowercased()) else { throw .scheme }
        var rest = Substring(text[text.index(after: colon)...])
        var transport: String? = nil
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = rest[..<q]
            guard scheme.isTURN, query.hasPrefix("transport=") else { throw .query }
            let value = query.dropFirst("transport=".count)
            guard !value.isEmpty, value.allSatisfy(Self.isUnreserved) else { throw .query }
            transport = String(value)
        }
        guard !rest.hasPrefix("/"), !rest.contains("@"), !rest.contains("/") else { throw .authority }
        var host: Substring
        var portText: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .host }
            host = rest[...close]
            let inner = rest[rest.index(after: rest.startIndex)..<close]
            guard let ip = IPAddress(String(inner)), ip.family == .ipv6 else { throw .host }
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .host }
                portText = after.dropFirst()
            }
        } else if let c = rest.lastIndex(of: ":") {
            host = rest[..<c]
            portText = rest[rest.index(after: c)...]
        } else {
            host = rest
        }
        guard Self.isValidHost(host) else { throw .host }
        var port: UInt16? = nil
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let p = UInt16(portText), p > 0 else { throw .port }
            port = p
        }
        self.init(scheme: scheme, host: String(host), port: port, transport: transport)
    }

    /// RFC 3986 section 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
    static func isUnreserved(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "." || c == "_" || c == "~")
    }

    /// An IPv6 literal in brackets (checked by the caller), an IPv4 literal, or a registered name of
    /// unreserved characters (percent-encoding and sub-delims are not accepted: no DNS name needs them).
    static func isValidHost(_ host: Substring) -> Bool {
        if host.hasPrefix("[") { return true }
        guard !host.isEmpty, host.count <= 253, host.allSatisfy(isUnreserved) else { return false }
        // All digits and dots: must then be a valid IPv4 literal (no "999.1.1.1" as a name).
        if host.allSatisfy({ $0.isNumber || $0 == "." }) {
            guard let ip = IPAddress(String(host)), ip.family == .ipv4 else { return false }
        }
        return true
    }
}

extension TernConfig {
    /// The URLs clients use to reach this server when `publicURLs` is not set, derived from the
    /// listeners and `relay.externalIPv4/6` (RFC 7064, RFC 7065; `turns:` with `?transport=udp` is
    /// DTLS, RFC 7350 section 4.2):
    ///
    /// - `udp` listeners give `stun:` and `turn:...?transport=udp`; `tcp` `turn:...?transport=tcp`;
    ///   `tls` `turns:...?transport=tcp`; `dtls` `turns:...?transport=udp`.
    /// - The host is the family's `relay.external` address when set, else the listener's own address,
    ///   else (a wildcard listener) each of `hostAddresses` of that family.
    /// - Loopback and link-local addresses are left out when any other address exists.
    ///
    /// `hostAddresses` are this host's interface addresses (the caller reads them; the core reads no
    /// system state).
    public func derivedPublicURLs(hostAddresses: [IPAddress]) -> [TurnURI] {
        func hosts(for listener: ListenerConfig) -> [IPAddress] {
            let family = listener.address.family
            if family == .ipv4, let e = relay.externalIPv4 { return [e] }
            if family == .ipv6, let e = relay.externalIPv6 { return [e] }
            if !listener.address.isUnspecified { return [listener.address] }
            return hostAddresses.filter { $0.family == family }
        }
        var candidates: [(TurnURI.Scheme, TransportAddress, String?)] = []
        for l in listeners {
            for ip in hosts(for: l) {
                let a = TransportAddress(ip: ip, port: l.port)
                switch l.transport {
                case .udp:
                    candidates.append((.stun, a, nil))
                    candidates.append((.turn, a, "udp"))
                case .tcp: candidates.append((.turn, a, "tcp"))
                case .tls: candidates.append((.turns, a, "tcp"))
                case .dtls: candidates.append((.turns, a, "udp"))
                }
            }
        }
        let reachable = candidates.filter { !Self.isLocalOnly($0.1.ip) }
        let chosen = reachable.isEmpty ? candidates : reachable
        var out: [TurnURI] = []
        // STUN first, then TURN, then TURNS: the order browsers try them in does not matter, but a
        // reader scans for the STUN URL first.
        for scheme in [TurnURI.Scheme.stun, .turn, .turns] {
            for (s, a, t) in chosen where s == scheme {
                let uri = TurnURI(scheme: s, address: a, transport: t)
                if !out.contains(uri) { out.append(uri) }
            }
        }
        return out
    }

    /// Loopback, or IPv6 link-local (fe80::/10, which needs a zone a URI cannot carry).
    static func isLocalOnly(_ ip: IPAddress) -> Bool {
        if ip.isLoopback { return true }
        if case .v6(let hi, _) = ip, hi >> 54 == 0x3FA { return true }
        return false
    }

    /// `publicURLs` when set, else the derived ones.
    public func effectivePublicURLs(hostAddresses: [IPAddress]) -> [TurnURI] {
        publicURLs ?? derivedPublicURLs(hostAddresses: hostAddresses)
    }
}
