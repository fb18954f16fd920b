/// `tls`: the certificate for `tls` and `dtls` listeners, reloaded on SIGHUP.
public struct TLSConfig: Sendable, Equatable {
    /// PEM file with the certificate chain, leaf first.
    public var certificate: String?
    /// PEM file with the private key (unencrypted).
    public var privateKey: String?
    /// Seconds a TLS handshake may take before the connection is closed.
    public var handshakeTimeout: Int = 10

    public init(certificate: String? = nil, privateKey: String? = nil) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}
