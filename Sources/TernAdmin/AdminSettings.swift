import STUN
import TernCore

/// What the admin endpoint is told by the config (`admin` section).
public struct AdminSettings: Sendable {
    public var address: IPAddress
    public var port: UInt16
    /// Bearer token; nil allows loopback only.
    public var token: String?
    /// Per-user Prometheus labels (off by default: a label per user grows without bound).
    public var perUserMetrics: Bool

    public init(address: IPAddress = .loopbackV4, port: UInt16 = 8478, token: String? = nil, perUserMetrics: Bool = false) {
        self.address = address
        self.port = port
        self.token = token
        self.perUserMetrics = perUserMetrics
    }

    public init(_ config: AdminConfig) {
        self.init(address: config.address, port: config.port, token: config.token, perUserMetrics: config.perUserMetrics)
    }
}

public struct AdminError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

extension AdminSettings {
    /// An endpoint that can end allocations must not be open to the network without a token.
    public func validate() throws(AdminError) {
        if token == nil && !address.isLoopback {
            throw AdminError(description: "admin endpoint on \(address) needs admin.token: without a token it only binds to loopback (127.0.0.1 or ::1)")
        }
    }
}
