import ArgumentParser
import Dispatch
import CSystemd
import Foundation
import Logging
import STUN
import TernCore
import TernIO

/// `tern serve [--config FILE]`: binds every listener on every worker, serves until SIGINT/SIGTERM.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the STUN/TURN server (with no --config: UDP and TCP 3478 on all addresses).")

    @Option(name: .long, help: "Path to the JSON config file. Without it, the built-in default is used.")
    var config: String?

    func run() throws {
        let settings: TernConfig
        if let path = config {
            do {
                settings = try TernConfig.load(path: path)
            } catch {
                FileHandle.standardError.write(Data("tern: \(error)\n".utf8))
                throw ExitCode(1)
            }
        } else {
            settings = TernConfig.builtInDefault
        }
        LoggingSystem.bootstrap { label in makeLogHandler(label: label, level: settings.log.level) }
        let logger = Logger(label: "tern")
        let runner = ServerRunner(settings: settings, usingBuiltInDefault: config == nil, logger: logger)
        runner.configPath = config
        try runner.run()
    }
}

/// Wires config to the event loop and handles process signals. Kept out of the command so that the
/// signal handlers are set up in an ordinary type, not main-actor isolated code.
final class ServerRunner {
    let settings: TernConfig
    let usingBuiltInDefault: Bool
    let logger: Logger
    var configPath: String? = nil
    private var signalSources: [DispatchSourceSignal] = []
    let systemd = SystemdNotifier()

    init(settings: TernConfig, usingBuiltInDefault: Bool, logger: Logger) {
        self.settings = settings
        self.usingBuiltInDefault = usingBuiltInDefault
        self.logger = logger
    }

    /// TURN is served only with credentials configured: an open relay is never the default.
    static func turnContext(_ settings: TernConfig) -> TurnContext? {
        guard !settings.auth.users.isEmpty || !settings.auth.secrets.isEmpty else { return nil }
        var turn = TurnSettings()
        turn.externalIPv4 = settings.relay.externalIPv4
        turn.externalIPv6 = settings.relay.externalIPv6
        turn.maxLifetime = UInt32(settings.limits.maxLifetime)
        turn.maxAllocationsPerUser = settings.limits.allocationsPerUser
        turn.maxPermissionsPerAllocation = settings.limits.permissionsPerAllocation
        turn.maxChannelsPerAllocation = settings.limits.channelsPerAllocation
        return TurnContext(
            realm: settings.realm,
            credentials: CredentialStore(realm: settings.realm, users: settings.auth.users, secrets: settings.auth.secrets),
            nonces: NonceIssuer(key: NonceIssuer.randomKey()),
            policy: PeerPolicy(settings.peers),
            settings: turn)
    }

    static func streamLimits(_ limits: LimitsConfig) -> StreamLimits {
        var s = StreamLimits()
        s.idleTimeout = UInt64(limits.streamIdleTimeout)
        s.connectionsPerIP = limits.connectionsPerIP
        s.maxQueuedBytes = limits.streamQueueBytes
        return s
    }

    func run() throws -> Never {
        let workerCount = settings.workers ?? max(1, ProcessInfo.processInfo.activeProcessorCount)
        let specs = settings.listeners.map { l -> ListenerSpec in
            let transport: ClientTransport
            switch l.transport {
            case .udp: transport = .udp
            case .tcp: transport = .tcp
            case .tls: transport = .tls
            case .dtls: transport = .dtls
            }
            // The built-in default listens on :: too; a host without IPv6 just skips it.
            let optional = usingBuiltInDefault && l.address.family == .ipv6
            return ListenerSpec(transport: transport, address: TransportAddress(ip: l.address, port: l.port), optional: optional)
        }
        var tlsHolder: TLSContextHolder? = nil
        if specs.contains(where: { $0.transport == .tls }), let cert = settings.tls.certificate, let key = settings.tls.privateKey {
            do {
                tlsHolder = TLSContextHolder(try TLSServerContext(certificateChainPath: cert, privateKeyPath: key),
                                             handshakeTimeout: UInt64(settings.tls.handshakeTimeout))
            } catch {
                logger.critical("start failed: TLS certificate", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
        }
        var dtlsContext: TLSServerContext? = nil
        if specs.contains(where: { $0.transport == .dtls }), let cert = settings.tls.certificate, let key = settings.tls.privateKey {
            do {
                dtlsContext = try TLSServerContext.dtls(certificateChainPath: cert, privateKeyPath: key)
            } catch {
                logger.critical("start failed: DTLS certificate", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
        }
        let server = Server(listeners: specs, workerCount: workerCount,
                            handlerConfiguration: HandlerConfiguration(software: settings.software, turn: Self.turnContext(settings)),
                            relay: RelayAddresses(ipv4: settings.relay.ipv4, ipv6: settings.relay.ipv6,
                                                  portRange: settings.relay.portRange),
                            limits: Self.streamLimits(settings.limits),
                            tls: tlsHolder, dtls: dtlsContext,
                            logger: logger)
        // Socket activation: systemd passes listening sockets from fd 3 on (sd_listen_fds(3)).
        let passed = sd_listen_fds(1)
        if passed > 0 {
            server.inherited = (0..<passed).map { SD_LISTEN_FDS_START + $0 }
        }
        let bound: [BoundListener]
        do {
            bound = try server.start()
        } catch {
            logger.critical("start failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        let summary = "\(bound.count) listeners (\(bound.map(\.description).joined(separator: ", "))), \(workerCount) workers"
        systemd.ready(status: "serving: \(summary)")
        systemd.startWatchdog()
        logger.info("tern listening", metadata: [
            "turn": "\(settings.auth.users.isEmpty && settings.auth.secrets.isEmpty ? "off (no auth.users or auth.secrets)" : "on, realm \(settings.realm)")",
            "listeners": "\(bound.map(\.description).joined(separator: ", "))",
            "workers": "\(workerCount)",
            "config": "\(usingBuiltInDefault ? "built-in default" : "file")",
        ])
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [logger, systemd] in
                systemd.stopping()
                logger.info("stopping", metadata: ["signal": "\(sig == SIGINT ? "SIGINT" : "SIGTERM")"])
                server.stop()
                let totals = server.stats()
                logger.info("stopped", metadata: [
                    "bindingRequests": "\(totals.handler.bindingRequests)",
                    "malformed": "\(totals.handler.malformed)",
                ])
                exit(0)
            }
            source.activate()
            signalSources.append(source)
        }
        // SIGHUP: certificates are read again; new TLS connections use them, established ones keep theirs.
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hup.setEventHandler { [logger, settings, configPath, systemd] in
            systemd.reloading()
            var outcome = "reloaded"
            defer { systemd.ready(status: "serving: \(summary) (\(outcome))") }
            guard tlsHolder != nil || dtlsContext != nil else {
                logger.info("reload: nothing to reload (no tls or dtls listener)")
                return
            }
            // The certificate paths come from the config file as it is now, when there is one.
            var tls = settings.tls
            if let configPath, let fresh = try? TernConfig.load(path: configPath) { tls = fresh.tls }
            guard let cert = tls.certificate, let key = tls.privateKey else { return }
            do {
                if let holder = tlsHolder {
                    holder.replace(with: try TLSServerContext(certificateChainPath: cert, privateKeyPath: key))
                }
                if dtlsContext != nil {
                    try server.reloadDTLS(try TLSServerContext.dtls(certificateChainPath: cert, privateKeyPath: key))
                }
                logger.info("reload: tls certificate reloaded", metadata: ["certificate": "\(cert)"])
            } catch {
                logger.error("reload: tls certificate not reloaded, keeping the old one", metadata: ["error": "\(error)"])
                outcome = "reload failed, old certificate kept: \(error)"
            }
        }
        hup.activate()
        signalSources.append(hup)
        dispatchMain()
    }
}
