/// Credentials for the long-term credential mechanism (RFC 8489 section 9.2) and for
/// time-limited REST-style credentials derived from shared secrets.
public struct AuthConfig: Sendable, Equatable {
    /// User name -> password.
    public var users: [String: String]
    /// Shared secrets for time-limited credentials; the first one signs, all verify.
    public var secrets: [String]

    public init(users: [String: String] = [:], secrets: [String] = []) {
        self.users = users
        self.secrets = secrets
    }
}
