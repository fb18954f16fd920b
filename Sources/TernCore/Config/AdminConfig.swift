import STUN

/// The admin HTTP endpoint: statistics, Prometheus metrics, allocation control.
public struct AdminConfig: Sendable, Equatable {
    /// False: no admin endpoint at all.
    public var enabled: Bool
    public var address: IPAddress
    /// 0 lets the kernel pick (tests); the bound port is logged.
    public var port: UInt16
    /// Bearer token required by the endpoint; nil means none, and then only loopback addresses are allowed.
    public var token: String?
    /// Prometheus series labelled by user (off: one series per user grows without bound).
    public var perUserMetrics: Bool

    public init(enabled: Bool = true, address: IPAddress = .loopbackV4, port: UInt16 = 8478, token: String? = nil,
                perUserMetrics: Bool = false) {
        self.enabled = enabled
        self.address = address
        self.port = port
        self.token = token
        self.perUserMetrics = perUserMetrics
    }

    /// An endpoint that can end allocations is not opened to the network without a token: the
    /// reason this address may not be used, or nil. Checked by the config parser and by the endpoint.
    public var missingTokenProblem: String? {
        if let token, token.utf8.count < Self.minimumTokenBytes {
            return "admin.token is \(token.utf8.count) bytes; at least \(Self.minimumTokenBytes) are needed so that it cannot be guessed (make one with: openssl rand -hex 16)"
        }
        guard token == nil && !address.isLoopback else { return nil }
        return "admin endpoint on \(address) needs admin.token: without a token it only binds to 127.0.0.1 or ::1"
    }

    /// The shortest bearer token accepted: 16 bytes (128 bits when random).
    public static let minimumTokenBytes = 16
}

/// Shutdown behaviour (SIGTERM): stop taking allocations, let the live ones finish. The handler
/// holds it while the server drains: RFC 8656 section 7.2 lets a server refuse an Allocate with 300
/// Try Alternate and ALTERNATE-SERVER (RFC 8489 section 10); without an alternate it answers 508.
public struct DrainConfig: Sendable, Equatable {
    /// Longest wait for live allocations to end before exiting; 0 exits at once.
    public var timeoutSeconds: Int
    /// Sent to clients whose Allocate arrives while draining (300 Try Alternate with ALTERNATE-SERVER);
    /// nil answers 508.
    public var alternateServer: TransportAddress?

    public init(timeoutSeconds: Int = 30, alternateServer: TransportAddress? = nil) {
        self.timeoutSeconds = timeoutSeconds
        self.alternateServer = alternateServer
    }
}

extension AdminConfig {
    /// What a reload cannot change (the endpoint is bound with it): everything but the token,
    /// which a reload replaces (a `{"file": ...}` token is re-read).
    public var restartOnly: AdminConfig {
        var c = self
        c.token = token == nil ? nil : ""
        return c
    }
}
