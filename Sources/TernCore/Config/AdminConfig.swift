import STUN

/// The admin/statistics HTTP endpoint (planned).
public struct AdminConfig: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16
    /// Bearer token required by the endpoint; nil means none.
    public var token: String?

    public init(address: IPAddress = .loopbackV4, port: UInt16 = 8478, token: String? = nil) {
        self.address = address
        self.port = port
        self.token = token
    }
}
