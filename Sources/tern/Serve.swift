import ArgumentParser
import Dispatch
import CSystemd
import Foundation
import Logging
import STUN
import TernAdmin
import TernCore
import TernIO

/// `tern serve [--config FILE]`: binds every listener on every worker, serves until SIGINT/SIGTERM.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the STUN/TURN server (with no --config: STUN and TURN on UDP and TCP 3478, with a shared secret generated for this run).")

    @Option(name: .long, help: "Path to the JSON config file. Without it, the built-in default is used.")
    var config: String?

    func run() throws {
        let settings: TernConfig
        if let path = config {
            do {
                settings = try ConfigFile.load(path: path)
            } catch {
                FileHandle.standardError.write(Data("tern: \(error)\n".utf8))
                throw ExitCode(1)
            }
        } else {
            // The first run relays: TURN needs credentials, so the built-in default gets a shared
            // secret generated now, held in memory only (never written anywhere), and prints an
            // iceServers entry signed with it once it is ready.
            var first = TernConfig.builtInDefault
            first.auth.secrets = [CredentialIssuer.randomSecret()]
            settings = first
        }
        LoggingSystem.bootstrap { label in makeLogHandler(label: label, level: settings.log.level) }
        let logger = Logger(label: "tern")
        if let path = config, let warning = ConfigFile.permissionWarning(path: path, config: settings) {
            logger.warning("\(warning)")
        }
        let runner = ServerRunner(settings: settings, configPath: config, logger: logger)
        try runner.run()
    }
}

/// Wires config to the event loop, the admin endpoint and systemd, and handles process signals:
/// SIGHUP reloads, SIGTERM/SIGINT drain (a second one stops at once). Kept out of the command so
/// that the signal handlers live in an ordinary type, not main-actor isolated code.
final class ServerRunner: @unchecked Sendable {
    /// The configuration in force (replaced by each successful reload).
    private(set) var settings: TernConfig
    let configPath: String?
    let logger: Logger
    let systemd = SystemdNotifier()
    /// Kept across reloads: allocation quotas, reservations and ids live here, and nonces already
    /// handed out stay valid because the nonce key does not change (unless the fleet's does:
    /// `cluster.nonceKey`).
    let shared = SharedTurnState()
    let processNonceKey = NonceIssuer.randomKey()
    func nonces(_ config: TernConfig) -> NonceIssuer {
        NonceIssuer(key: config.cluster.nonceKey(auth: config.auth) ?? processNonceKey)
    }
    private var signalSources: [DispatchSourceSignal] = []
    /// Signal handling, reload and drain run here, one at a time.
    private let control = DispatchQueue(label: "tern.control")
    private var server: Server!
    private var tlsHolder: TLSContextHolder?
    private var dtlsEnabled = false
    /// "admin http://127.0.0.1:8478" or "admin off", set once the endpoint is up.
    private var adminLine = "admin off"
    /// The admin endpoint's address once it is bound (a peer there is refused).
    private var adminAddress: TransportAddress?
    /// Signs `POST /credentials` (and the first run's printed entry) with the first of `auth.secrets`.
    private var issuer = CredentialIssuer(secret: nil, urls: [])
    /// The one-line summary in systemd's STATUS=, from what is bound now (reloads change it).
    private var summary: String {
        "\(server.bound.count) listeners (\(server.bound.map(\.description).joined(separator: ", "))), \(server.workers.count) workers, \(adminLine)\(server.externalAddresses.statusLine)"
    }
    /// Runs `relay.discoverExternal` (start and reload).
    private var discovery: DiscoveryRunner?
    /// The admin endpoint, once started (a reload replaces its token).
    private var admin: AdminServer?
    private var drainStarted: Date?
    private var drainTimer: DispatchSourceTimer?

    init(settings: TernConfig, configPath: String?, logger: Logger) {
        self.settings = settings
        self.configPath = configPath
        self.logger = logger
    }

    var usingBuiltInDefault: Bool { configPath == nil }

    /// TURN is served only with credentials configured: an open relay is never the default. `own`:
    /// the server's own endpoints, which the peer policy refuses or admits (relay loops).
    static func turnContext(_ settings: TernConfig, shared: SharedTurnState, nonces: NonceIssuer,
                            own: PeerPolicy.OwnEndpoints = .init(), withheld: Set<AddressFamily> = []) -> TurnContext? {
        guard !settings.auth.users.isEmpty || !settings.auth.secrets.isEmpty else { return nil }
        var turnSettings = TurnSettings(config: settings)
        turnSettings.withheldFamilies = withheld
        return TurnContext(
            realm: settings.realm,
            credentials: CredentialStore(realm: settings.realm, users: settings.auth.users, secrets: settings.auth.secrets),
            nonces: nonces,
            policy: PeerPolicy(settings.peers).with(own),
            settings: turnSettings,
            shared: shared)
    }

    func run() throws -> Never {
        // A parent may hand down a signal mask that blocks SIGTERM or SIGHUP; a daemon sets its own.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let workerCount = settings.workers ?? max(1, ProcessInfo.processInfo.activeProcessorCount)
        let specs = settings.listeners + settings.natBehaviorListeners
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
                dtlsEnabled = true
            } catch {
                logger.critical("start failed: DTLS certificate", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
        }
        let server = Server(listeners: specs, workerCount: workerCount,
                            handlerConfiguration: HandlerConfiguration(
                                config: settings, turn: Self.turnContext(settings, shared: shared, nonces: nonces(settings))),
                            relay: settings.relay,
                            limits: settings.limits,
                            tls: tlsHolder, dtls: dtlsContext, handshakeTimeout: settings.tls.handshakeTimeout,
                            io: settings.io,
                            logger: logger)
        self.server = server
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
        if settings.admin.enabled {
            do {
                let port = try startAdmin(server)
                adminAddress = TransportAddress(ip: settings.admin.address, port: UInt16(port))
                adminLine = "admin http://\(adminAddress!)"
            } catch {
                logger.critical("start failed: admin endpoint", metadata: ["error": "\(error)"])
                server.stop()
                throw ExitCode(1)
            }
        }
        // Now that every port is known: the peer policy refuses the listeners and the admin endpoint.
        applyAdvertised(settings)
        startDiscovery()
        systemd.ready(status: "serving: \(summary)")
        systemd.startWatchdog()
        if usingBuiltInDefault { printFirstRun() }
        logger.info("tern listening", metadata: [
            "turn": "\(settings.auth.users.isEmpty && settings.auth.secrets.isEmpty ? "off (no auth.users or auth.secrets)" : "on, realm \(settings.realm)")",
            "listeners": "\(bound.map(\.description).joined(separator: ", "))",
            "workers": "\(workerCount)",
            "config": "\(usingBuiltInDefault ? "built-in default" : "file")",
            "admin": "\(adminLine)",
        ])
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: control)
            source.setEventHandler { [unowned self] in self.terminate(signal: sig == SIGINT ? "SIGINT" : "SIGTERM") }
            source.activate()
            signalSources.append(source)
        }
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: control)
        hup.setEventHandler { [unowned self] in self.reload() }
        hup.activate()
        signalSources.append(hup)
        dispatchMain()
    }

    /// The built-in default's greeting on standard output, once everything is bound: what it serves,
    /// an `iceServers` entry valid for 24 hours for the addresses it can be reached on, and the
    /// dashboard URL.
    private func printFirstRun() {
        var lines = ["Tern is serving STUN and TURN on UDP and TCP port 3478 (built-in default; the shared secret was generated for this run and is kept in memory only)."]
        let now = UInt64(max(0, Date().timeIntervalSince1970))
        if let ice = try? issuer.issue(user: "first-run", ttl: CredentialIssuer.defaultTTL, now: now) {
            lines.append("")
            lines.append("Paste into RTCPeerConnection's iceServers (valid 24 hours, until \(ice.expires)):")
            lines.append("  " + ice.iceServersEntry)
        }
        if let adminAddress {
            let host = adminAddress.ip.family == .ipv6 ? "[\(adminAddress.ip)]" : "\(adminAddress.ip)"
            lines.append("")
            lines.append("Dashboard: http://\(host):\(adminAddress.port)/")
            lines.append("More credentials: curl -X POST http://\(host):\(adminAddress.port)/credentials -d '{\"user\": \"alice\"}'")
        }
        print(lines.joined(separator: "\n"))
        fflush(stdout)
    }

    /// Starts the admin endpoint and waits (bounded) until it is bound; returns its port.
    private func startAdmin(_ server: Server) throws -> Int {
        var adminLogger = Logger(label: "tern.admin")
        adminLogger.logLevel = settings.log.level
        let admin = try AdminServer(settings: settings.admin, backend: ServerAdminBackend(server, credentials: issuer),
                                    logger: adminLogger)
        let outcome = AdminStartOutcome()
        let app = admin.application { port in outcome.set(.success(port)) }
        Task.detached {
            do {
                try await app.run()
            } catch {
                outcome.set(.failure(error))
            }
        }
        guard let result = outcome.wait(seconds: 30) else {
            throw AdminError(description: "the admin endpoint did not start within 30 s")
        }
        let port = try result.get()
        self.admin = admin
        logger.info("admin listening", metadata: ["address": "\(TransportAddress(ip: settings.admin.address, port: UInt16(port)))",
                                                  "token": "\(settings.admin.token == nil ? "none (loopback only)" : "required")"])
        return port
    }

    /// What `config` says to advertise, with the discovered relay addresses filled in: the TURN
    /// context every worker answers with (XOR-RELAYED-ADDRESS, the peer policy with the server's own
    /// endpoints) and the URLs `POST /credentials` hands out.
    private func applyAdvertised(_ config: TernConfig) {
        let statuses = server.externalAddresses
        let advertised = config.withDiscovered(statuses)
        server.updateTurn(Self.turnContext(advertised, shared: shared, nonces: nonces(advertised),
                                           own: server.ownEndpoints(admin: adminAddress), withheld: statuses.withheldFamilies))
        issuer.update(secret: advertised.auth.secrets.first,
                      urls: advertised.effectivePublicURLs(hostAddresses: Posix.interfaceAddresses()).map(\.description))
    }

    /// Explicit relay addresses show in `/stats` at once; `relay.discoverExternal` starts its
    /// attempts, and each change is applied on the control queue.
    private func startDiscovery() {
        let runner = DiscoveryRunner(logger: logger) { [weak self] statuses in
            guard let self else { return }
            control.async {
                let before = self.server.externalAddresses
                self.server.externalAddresses = statuses
                guard statuses != before else { return }
                self.applyAdvertised(self.settings)
                if self.drainStarted != nil { return }
                self.systemd.status("serving: \(self.summary)")
            }
        }
        discovery = runner
        runner.restart(settings.relay)
    }

    // MARK: Reload (SIGHUP, ExecReload)

    /// Re-reads the config file. Users, secrets, peer policy, limits and certificates apply to new
    /// requests; listeners added are bound and listeners removed are closed; live allocations go on.
    /// Anything that fails (a config that does not parse, a certificate that does not load, a port
    /// that cannot be bound) changes nothing and is reported in the log and in systemd's STATUS=.
    private func reload() {
        systemd.reloading()
        guard let configPath else {
            logger.info("reload: nothing to reload (built-in default, no config file)")
            systemd.ready(status: "serving: \(summary)")
            return
        }
        do {
            let fresh = try ConfigFile.load(path: configPath)
            if let warning = ConfigFile.permissionWarning(path: configPath, config: fresh) { logger.warning("\(warning)") }
            try apply(fresh)
            settings = fresh
            logger.info("reload: done", metadata: ["config": "\(configPath)"])
            systemd.ready(status: "serving: \(summary) (reloaded)")
        } catch {
            logger.error("reload: failed, nothing changed", metadata: ["error": "\(error)"])
            systemd.ready(status: "serving: \(summary) (reload failed, old config kept: \(error))")
        }
    }

    private func apply(_ fresh: TernConfig) throws {
        // 1. Everything that can fail, without side effects: certificates.
        var newTLS: TLSServerContext? = nil
        var newDTLS: TLSServerContext? = nil
        if tlsHolder != nil || dtlsEnabled, let cert = fresh.tls.certificate, let key = fresh.tls.privateKey {
            if tlsHolder != nil { newTLS = try TLSServerContext(certificateChainPath: cert, privateKeyPath: key) }
            if dtlsEnabled { newDTLS = try TLSServerContext.dtls(certificateChainPath: cert, privateKeyPath: key) }
        }
        // 2. Listeners: all new ones are bound before any old one is closed; a failure changes nothing.
        let change = try server.reconcileListeners(fresh.listeners + settings.natBehaviorListeners)
        for b in change.added { logger.info("reload: listener added", metadata: ["listener": "\(b)"]) }
        for b in change.removed { logger.info("reload: listener removed", metadata: ["listener": "\(b)"]) }
        // 3. What cannot fail.
        if let newTLS, let holder = tlsHolder { holder.replace(with: newTLS) }
        if let newDTLS { try server.reloadDTLS(newDTLS) }
        if newTLS != nil || newDTLS != nil { logger.info("reload: tls certificate reloaded") }
        applyAdvertised(fresh)
        server.updateLimits(fresh.limits)
        if let token = fresh.admin.token { admin?.updateToken(token) }
        discovery?.restart(fresh.relay)
        let restartOnly: [(String, Bool)] = [
            ("workers", fresh.workers != settings.workers), ("relay", fresh.relay.restartOnly != settings.relay.restartOnly),
            ("admin", fresh.admin.restartOnly != settings.admin.restartOnly), ("log", fresh.log != settings.log),
            ("software", fresh.software != settings.software), ("io", fresh.io != settings.io),
            ("natBehavior", fresh.natBehavior != settings.natBehavior),
        ]
        for (key, changed) in restartOnly where changed {
            logger.warning("reload: \(key) changed; it takes effect at the next restart", metadata: ["key": "\(key)"])
        }
    }

    // MARK: Drain and stop (SIGTERM, SIGINT)

    /// First signal: drain. Allocate is refused (508, or 300 with `drain.alternateServer`), live
    /// allocations relay until they end or `drain.timeoutSeconds` passes, then the process exits 0.
    /// A second signal stops at once.
    private func terminate(signal name: String) {
        if drainStarted != nil {
            logger.info("stopping now (second signal)", metadata: ["signal": "\(name)"])
            stop()
        }
        drainStarted = Date()
        systemd.stopping()
        server.startDraining(settings.drain)
        let live = server.allocationCount
        logger.info("draining", metadata: ["signal": "\(name)", "allocations": "\(live)",
                                           "timeoutSeconds": "\(settings.drain.timeoutSeconds)"])
        if live == 0 || settings.drain.timeoutSeconds == 0 { stop() }
        let timer = DispatchSource.makeTimerSource(queue: control)
        timer.schedule(deadline: .now() + .milliseconds(250), repeating: .milliseconds(250))
        timer.setEventHandler { [unowned self] in
            let left = self.server.allocationCount
            let elapsed = Date().timeIntervalSince(self.drainStarted ?? Date())
            if left == 0 {
                self.logger.info("drained: no allocations left")
                self.stop()
            } else if elapsed >= Double(self.settings.drain.timeoutSeconds) {
                self.logger.info("drain timeout: ending the remaining allocations", metadata: ["allocations": "\(left)"])
                self.stop()
            } else {
                self.systemd.status("draining: \(left) allocations left")
            }
        }
        drainTimer = timer
        timer.activate()
    }

    private func stop() -> Never {
        server.stop()
        let totals = server.snapshot(perUser: false)
        logger.info("stopped", metadata: [
            "bindingRequests": "\(totals.requests["binding", default: [:]].values.reduce(0, &+))",
            "allocationsCreated": "\(totals.allocations.created)",
            "malformed": "\(totals.dropped["malformed", default: 0])",
        ])
        exit(0)
    }
}

/// The admin endpoint's start-up result, handed from its task to the starting thread.
final class AdminStartOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var result: Result<Int, Error>?

    func set(_ r: Result<Int, Error>) {
        lock.lock()
        defer { lock.unlock() }
        guard result == nil else { return }
        result = r
        ready.signal()
    }

    func wait(seconds: Int) -> Result<Int, Error>? {
        guard ready.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return result
    }
}
