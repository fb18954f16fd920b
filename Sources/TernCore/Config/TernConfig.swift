import STUN

/// The whole server configuration, read from one JSON file (see README.md, "Configuration").
/// Every key is optional; a missing key takes the value in `builtInDefault`.
public struct TernConfig: Sendable, Equatable {
    /// REALM (RFC 8489 section 14.9): non-empty, fewer than 128 characters, at most 763 bytes.
    public var realm: String
    /// SOFTWARE attribute text (RFC 8489 section 14.14); nil sends none. Same limits as realm.
    public var software: String?
    /// Number of worker queues, 1...256; nil means one per CPU core.
    public var workers: Int?
    /// Sockets to listen on, in order. Never empty.
    public var listeners: [ListenerConfig]
    public var relay: RelayConfig
    public var auth: AuthConfig
    public var peers: PeerConfig
    public var admin: AdminConfig
    public var log: LogConfig
    public var limits: LimitsConfig = LimitsConfig()
    public var tls: TLSConfig = TLSConfig()
    public var drain: DrainConfig = DrainConfig()
    /// Fleet settings: the alternates of 300 Try Alternate and the capacity that triggers it.
    public var cluster: ClusterConfig = ClusterConfig()
    public var io: IOConfig = IOConfig()
    /// The `stun:`/`turn:`/`turns:` URLs clients use to reach this server (RFC 7064, RFC 7065), for
    /// `POST /credentials`, the dashboard and the self-test; nil derives them from the listeners
    /// (`derivedPublicURLs`).
    public var publicURLs: [TurnURI]?
    /// RFC 5780 NAT behaviour discovery; nil (the default) leaves it off.
    public var natBehavior: NatBehaviorConfig?
    /// Where secret values came from: how many are written in the config itself, and the files
    /// named by `{"file": ...}` (for the permission warnings).
    public var secretSources = SecretSources()

    public static let defaultRealm = "tern"

    /// UDP and TCP on 0.0.0.0:3478 and [::]:3478; a host without IPv6 skips the `[::]` pair.
    public static let defaultListeners: [ListenerConfig] = [
        ListenerConfig(transport: .udp, address: .anyV4, port: 3478),
        ListenerConfig(transport: .tcp, address: .anyV4, port: 3478),
        ListenerConfig(transport: .udp, address: .anyV6, port: 3478, optional: true),
        ListenerConfig(transport: .tcp, address: .anyV6, port: 3478, optional: true),
    ]

    public init(realm: String = TernConfig.defaultRealm,
                software: String? = nil,
                workers: Int? = nil,
                listeners: [ListenerConfig] = TernConfig.defaultListeners,
                relay: RelayConfig = RelayConfig(),
                auth: AuthConfig = AuthConfig(),
                peers: PeerConfig = PeerConfig(),
                admin: AdminConfig = AdminConfig(),
                log: LogConfig = LogConfig()) {
        self.realm = realm
        self.software = software
        self.workers = workers
        self.listeners = listeners
        self.relay = relay
        self.auth = auth
        self.peers = peers
        self.admin = admin
        self.log = log
    }

    /// The configuration used when no file is given.
    public static var builtInDefault: TernConfig { TernConfig() }

    /// One line naming the listeners, for the start-up log:
    /// `udp 0.0.0.0:3478, tcp 0.0.0.0:3478, udp [::]:3478, tcp [::]:3478`.
    public func summary() -> String {
        listeners.map(\.description).joined(separator: ", ")
    }
}

/// Where the config's passwords, shared secrets and admin token are: inline, or in files.
public struct SecretSources: Sendable, Equatable {
    /// Secret values written in the config document itself.
    public var inline = 0
    /// Files that `{"file": ...}` values were read from.
    public var files: [String] = []
    public init() {}
}
