import Foundation
import STUN
import Testing

/// The real `tern` behind real load balancers speaking the PROXY protocol: HAProxy (`send-proxy-v2`,
/// TCP passed through for both the tcp and the tls listener) and nginx's stream module
/// (`proxy_protocol on`, version 1). coturn's turnutils_uclient relays through them; Tern's admin
/// API shows the clients' own addresses, not the proxies'.
extension HeavyInteropTests {
    @Suite("tern serve behind HAProxy and nginx (PROXY protocol)", .serialized)
    struct ProxyProtocolInteropTests {
        typealias Tools = TurnClientInteropTests
        static let haproxy = "/usr/sbin/haproxy"
        static let nginx = "/usr/sbin/nginx"
        static let streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"
        static let token = "proxy-interop-token-0123456789"
        /// In CI a missing proxy fails the test; locally the test is skipped.
        static let ci = ProcessInfo.processInfo.environment["CI"] == "true"
        static let haproxyInstalled = FileManager.default.isExecutableFile(atPath: haproxy)
        static let nginxInstalled = FileManager.default.isExecutableFile(atPath: nginx)
            && FileManager.default.fileExists(atPath: streamModule)

        /// Tern with a tcp and a tls listener trusting 127.0.0.3 (HAProxy) and a tcp listener trusting 127.0.0.4 (nginx).
        struct Stack {
            let tern: TernProcess
            let admin: TransportAddress
            let tcp: UInt16, tls: UInt16, nginxTCP: UInt16

            init() throws {
                (tcp, tls, nginxTCP) = (Tools.freeTCPPort(), Tools.freeTCPPort(), Tools.freeTCPPort())
                let cert = Tools.certificate
                tern = try TernProcess(config: """
                {
                  "realm": "tern.test",
                  "workers": 2,
                  "listeners": [
                    {"transport": "tcp", "address": "127.0.0.1", "port": \(tcp), "proxyProtocol": {"trusted": ["127.0.0.3/32"]}},
                    {"transport": "tls", "address": "127.0.0.1", "port": \(tls), "proxyProtocol": {"trusted": ["127.0.0.3/32"]}},
                    {"transport": "tcp", "address": "127.0.0.1", "port": \(nginxTCP), "proxyProtocol": {"trusted": ["127.0.0.4/32"]}}
                  ],
                  "tls": {"certificate": "\(cert.cert)", "privateKey": "\(cert.key)"},
                  "relay": {"ipv4": "127.0.0.1", "portRange": [61000, 61999]},
                  "auth": {"users": {"alice": "wonderland"}},
                  "peers": {"allow": ["127.0.0.0/8"]},
                  "admin": {"port": 0, "token": "\(ProxyProtocolInteropTests.token)"}
                }
                """)
                guard tern.waitForLog("tern listening"), let admin = tern.adminAddress() else {
                    _ = tern.terminate()
                    throw TestFailure("tern did not start: \(tern.stderr)")
                }
                self.admin = admin
            }

            /// `/stats` → `proxyProtocol`.
            func proxyCounts() -> [String: Int] {
                guard let body = httpRequest(admin, "/stats", token: ProxyProtocolInteropTests.token)?.body,
                      let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                      let counts = json["proxyProtocol"] as? [String: Int] else { return [:] }
                return counts
            }

            /// `GET /allocations` → each allocation's `client`.
            func allocationClients() -> [String] {
                guard let body = httpRequest(admin, "/allocations", token: ProxyProtocolInteropTests.token)?.body,
                      let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                      let items = json["allocations"] as? [[String: Any]] else { return [] }
                return items.compactMap { $0["client"] as? String }
            }
        }

        /// HAProxy in front of the stack: `mode tcp`, one frontend per Tern listener, `send-proxy-v2 source 127.0.0.3`.
        static func startHAProxy(_ stack: Stack, serverOptions: String = "") throws -> (proxy: ProxyProcess, tcp: UInt16, tls: UInt16) {
            let (tcp, tls) = (Tools.freeTCPPort(), Tools.freeTCPPort())
            let proxy = try ProxyProcess(haproxy, config: """
            global
              maxconn 200
            defaults
              mode tcp
              timeout connect 5s
              timeout client 30s
              timeout server 30s
            frontend turn_tcp
              bind 127.0.0.1:\(tcp)
              default_backend tern_tcp
            backend tern_tcp
              server tern 127.0.0.1:\(stack.tcp) send-proxy-v2 source 127.0.0.3 \(serverOptions)
            frontend turn_tls
              bind 127.0.0.1:\(tls)
              default_backend tern_tls
            backend tern_tls
              server tern 127.0.0.1:\(stack.tls) send-proxy-v2 source 127.0.0.3 \(serverOptions)
            """, name: "haproxy.cfg") { ["-f", $0, "-db"] }
            guard proxy.waitUntilListening([tcp, tls]) else {
                proxy.stop()
                throw TestFailure("haproxy did not listen: \(proxy.output)")
            }
            return (proxy, tcp, tls)
        }

        /// nginx (one unprivileged foreground process) with a stream server: `proxy_protocol on`, `proxy_bind 127.0.0.4`.
        static func startNginx(_ stack: Stack) throws -> (proxy: ProxyProcess, port: UInt16) {
            let port = Tools.freeTCPPort()
            let proxy = try ProxyProcess(nginx, config: """
            load_module \(streamModule);
            worker_processes 1;
            events { worker_connections 64; }
            stream {
                server {
                    listen 127.0.0.1:\(port);
                    proxy_pass 127.0.0.1:\(stack.nginxTCP);
                    proxy_protocol on;
                    proxy_bind 127.0.0.4;
                }
            }
            """, name: "nginx.conf") { conf in
                let dir = URL(fileURLWithPath: conf).deletingLastPathComponent().path
                return ["-c", conf, "-p", dir, "-e", "stderr",
                        "-g", "daemon off; master_process off; error_log stderr; pid \(dir)/nginx.pid;"]
            }
            guard proxy.waitUntilListening([port]) else {
                proxy.stop()
                throw TestFailure("nginx did not listen: \(proxy.output)")
            }
            return (proxy, port)
        }

        /// turnutils_uclient (2 clients x 20 messages over channels) through `port` to its own echo peer: the loss summary.
        static func uclient(_ options: [String], port: UInt16) throws -> (sent: Int, lost: Int, output: String) {
            let peerPort = Tools.freeUDPPort()
            let peer = try Tools.startPeer(port: peerPort)
            defer { peer.stop() }
            guard peer.ready else { throw TestFailure("turnutils_peer does not echo on port \(peerPort)") }
            let result = try runTool(Tools.uclient, options + ["-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-p", "\(port)",
                                                               "-r", "\(peerPort)", "-n", "20", "-m", "2", "-l", "120", "-z", "5", "127.0.0.1"],
                                     timeout: 30)
            guard let s = Tools.summary(result.output) else { throw TestFailure("no summary from turnutils_uclient: \(result.output.suffix(2000))") }
            return (s.sent, s.lost, result.output)
        }

        @Test("HAProxy send-proxy-v2 in front of a tcp and a tls listener: uclient over TCP and TLS relays with 0 loss; the admin API shows a held allocation's own client address; a connection that skips HAProxy is refused and counted",
              .enabled(if: haproxyInstalled || ci, "haproxy is not installed"))
        func haproxy() throws {
            try #require(Self.haproxyInstalled, "haproxy is not installed at \(Self.haproxy): apt-get install haproxy")
            let stack = try Stack()
            defer { _ = stack.tern.terminate() }
            let (proxy, tcp, tls) = try Self.startHAProxy(stack)
            defer { proxy.stop() }

            for (options, port) in [(["-t"], tcp), (["-t", "-S"], tls)] {
                let r = try Self.uclient(options, port: port)
                #expect(r.sent >= 40 && r.lost == 0, "uclient \(options) via HAProxy: \(r.output.suffix(1500))")
                if options.contains("-S") {
                    #expect(r.output.contains("TLSv1.2") || r.output.contains("TLSv1.3"), "\(r.output.suffix(1500))")
                }
            }
            let afterRelays = stack.proxyCounts()
            #expect((afterRelays["accepted"] ?? 0) >= 4, "\(afterRelays)")
            #expect(afterRelays["malformed"] == 0 && afterRelays["missing"] == 0 && afterRelays["untrusted"] == 0, "\(afterRelays)")

            // A client whose port we know holds an allocation through HAProxy: Tern lists it as itself.
            let client = try StreamTurnClient(port: tcp)
            defer { client.close() }
            let allocated = try client.request(.allocate, [.requestedTransport(protocolNumber: 17)])
            #expect(allocated.type.messageClass == .successResponse, "\(allocated)")
            #expect(client.mapped(allocated) == client.local)
            let clients = stack.allocationClients()
            #expect(clients == ["127.0.0.1:\(client.local.port)"], "GET /allocations clients: \(clients)")

            // Straight to Tern's port from 127.0.0.1, skipping HAProxy: closed at accept, counted.
            let direct = try StreamTurnClient(port: stack.tcp)
            defer { direct.close() }
            #expect(direct.closedWithoutAnswer())
            #expect(stack.proxyCounts()["untrusted"] == 1, "\(stack.proxyCounts())")
            #expect(try client.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
        }

        @Test("HAProxy health checks with send-proxy-v2 arrive as v2 LOCAL headers (then a reset): accepted, never malformed or missing, while uclient relays through the checked server",
              .enabled(if: haproxyInstalled || ci, "haproxy is not installed"))
        func haproxyHealthChecks() throws {
            try #require(Self.haproxyInstalled, "haproxy is not installed at \(Self.haproxy): apt-get install haproxy")
            let stack = try Stack()
            defer { _ = stack.tern.terminate() }
            let (proxy, tcp, _) = try Self.startHAProxy(stack, serverOptions: "check inter 200")
            defer { proxy.stop() }
            // Two checkers (one per backend), every 200 ms: a handful within a second.
            #expect(Self.eventually(within: 5) { (stack.proxyCounts()["accepted"] ?? 0) >= 6 }, "\(stack.proxyCounts())")
            let r = try Self.uclient(["-t"], port: tcp)
            #expect(r.sent >= 40 && r.lost == 0, "uclient via HAProxy with health checks: \(r.output.suffix(1500))")
            let counts = stack.proxyCounts()
            // HAProxy resets each check right after its header: the header is read all the same.
            #expect(counts["malformed"] == 0 && counts["missing"] == 0 && counts["untrusted"] == 0, "\(counts)")
            #expect(!proxy.output.contains("DOWN"), "HAProxy marked Tern down: \(proxy.output)")
        }

        @Test("nginx stream proxy_protocol (v1) in front of a tcp listener: uclient over TCP relays with 0 loss; the admin API shows the client's own address",
              .enabled(if: nginxInstalled || ci, "nginx or its stream module is not installed"))
        func nginxStream() throws {
            try #require(Self.nginxInstalled, "nginx with the stream module is not installed (\(Self.nginx), \(Self.streamModule)): apt-get install nginx libnginx-mod-stream")
            let stack = try Stack()
            defer { _ = stack.tern.terminate() }
            let (proxy, port) = try Self.startNginx(stack)
            defer { proxy.stop() }

            let r = try Self.uclient(["-t"], port: port)
            #expect(r.sent >= 40 && r.lost == 0, "uclient via nginx: \(r.output.suffix(1500)) nginx: \(proxy.output)")

            let client = try StreamTurnClient(port: port)
            defer { client.close() }
            let allocated = try client.request(.allocate, [.requestedTransport(protocolNumber: 17)])
            #expect(allocated.type.messageClass == .successResponse, "\(allocated)")
            #expect(client.mapped(allocated) == client.local)
            #expect(stack.allocationClients() == ["127.0.0.1:\(client.local.port)"])
            let counts = stack.proxyCounts()
            #expect((counts["accepted"] ?? 0) >= 3 && counts["malformed"] == 0 && counts["missing"] == 0, "\(counts)")
            #expect(try client.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
            // nginx's address (127.0.0.4) is trusted on its listener only: with a v1 header of its
            // own, straight to the listener that trusts HAProxy, it is refused.
            let header = Array("PROXY TCP4 127.0.0.1 127.0.0.1 40000 \(stack.tcp)\r\n".utf8)
            let impostor = try StreamTurnClient(port: stack.tcp, from: IPAddress("127.0.0.4"), prefix: header)
            defer { impostor.close() }
            #expect(impostor.closedWithoutAnswer())
            #expect(stack.proxyCounts()["untrusted"] == 1, "\(stack.proxyCounts())")
        }
    }
}
