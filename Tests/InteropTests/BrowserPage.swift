import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The test page and the tiny HTTP server that serves it to headless Chromium.
///
/// The page must come from http://127.0.0.1 rather than a data: URL or about:blank: only a secure
/// context gets `navigator.mediaDevices`, and about:blank/data: are not secure contexts in Chromium
/// (checked: `window.isSecureContext` is false there), while http://127.0.0.1 is.
enum BrowserPage {
    /// One page, two RTCPeerConnections, both relay-only. `window.ternStart(cfg)` starts a run and
    /// returns at once; `window.ternResult` is the result object the harness polls (`done` ends it).
    ///
    /// cfg: { iceServers: "<JSON array>", messages: N, minFrames: M, video: bool, expectConnection: bool }
    static let html = #"""
    <!doctype html>
    <html><head><meta charset="utf-8"><title>tern relay test</title><link rel="icon" href="data:,"></head>
    <body><video id="remote" autoplay muted playsinline width="320" height="240"></video>
    <script>
    window.ternResult = null;
    window.ternStart = function (cfg) {
      const R = { done: false, phase: 'start', dataChannelOpenMs: null, messagesOK: false, messagesReceived: [0, 0],
        framesDecoded: 0, videoFrames: 0, local: [], remote: [], candidates: [0, 0], errors: [], error: null, log: [] };
      window.ternResult = R;
      const t0 = performance.now();
      const log = (s) => { if (R.log.length < 300) R.log.push(Math.round(performance.now() - t0) + 'ms ' + s); };
      let timer = null, graceTimer = null;
      const finish = (phase) => {
        if (R.done) return;
        R.phase = phase; R.done = true; log('done: ' + phase);
        if (timer) clearInterval(timer);
        timer = null;
      };
      const fail = (s) => { if (!R.error) R.error = String(s); log('error: ' + s); finish('failed'); };
      // With expectConnection false: finish shortly after the first ICE candidate error or once both
      // peers finished gathering (the grace period collects the other errors and would notice a connection).
      const finishSoon = (why) => {
        if (cfg.expectConnection || graceTimer) return;
        log('finishing soon: ' + why);
        graceTimer = setTimeout(() => finish(why), 500);
      };
      const N = cfg.messages;
      const gathered = [false, false];
      const got = [[], []];
      const expected = (from, i) => from + ' ' + i + ' ' + (from === 'a->b' ? 'x' : 'y').repeat(i % 64);
      const checkMessages = () => {
        R.messagesReceived = [got[0].length, got[1].length];
        if (got[0].length < N || got[1].length < N) return;
        let ok = got[0].length === N && got[1].length === N;
        for (let i = 0; i < N && ok; i++) {
          if (got[1][i] !== expected('a->b', i) || got[0][i] !== expected('b->a', i)) ok = false;
        }
        R.messagesOK = ok;
        log('messages checked, ok=' + ok);
      };
      const selectedTypes = async (pc) => {
        const stats = await pc.getStats();
        let pairId = null;
        stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
        if (!pairId) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id; });
        const pair = pairId && stats.get(pairId);
        if (!pair) return null;
        const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
        return [l ? String(l.candidateType) : '?', r ? String(r.candidateType) : '?'];
      };
      const conf = { iceServers: JSON.parse(cfg.iceServers), iceTransportPolicy: 'relay' };
      let pc1 = null, pc2 = null;
      const wire = (pc, other, index) => {
        const name = 'pc' + (index + 1);
        pc.onicecandidate = (e) => {
          if (e.candidate && e.candidate.candidate) {
            R.candidates[index]++;
            log(name + ' candidate ' + e.candidate.candidate);
            other.addIceCandidate(e.candidate).catch((err) => log(name + ' addIceCandidate: ' + err));
          }
        };
        pc.onicegatheringstatechange = () => {
          log(name + ' gathering ' + pc.iceGatheringState);
          if (pc.iceGatheringState !== 'complete') return;
          gathered[index] = true;
          if (!(gathered[0] && gathered[1])) return;
          finishSoon('gathering complete');
          if (cfg.expectConnection && (R.candidates[0] === 0 || R.candidates[1] === 0)) {
            fail('no relay candidates gathered (pc1: ' + R.candidates[0] + ', pc2: ' + R.candidates[1] + ')');
          }
        };
        pc.onicecandidateerror = (e) => {
          R.errors.push({ code: e.errorCode || 0, text: String(e.errorText || ''), url: String(e.url || ''),
            address: String(e.address || ''), port: e.port || 0 });
          log(name + ' icecandidateerror ' + e.errorCode + ' ' + e.errorText + ' ' + e.url);
          finishSoon('candidate error');
        };
        pc.oniceconnectionstatechange = () => {
          log(name + ' ice ' + pc.iceConnectionState);
          if (pc.iceConnectionState === 'failed' && cfg.expectConnection) fail(name + ' ICE failed');
        };
        pc.onconnectionstatechange = () => log(name + ' connection ' + pc.connectionState);
      };
      const poll = async () => {
        if (R.done) return;
        try {
          const s2 = await pc2.getStats();
          s2.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') R.framesDecoded = s.framesDecoded || 0; });
          if (R.local.length < 2) {
            const a = await selectedTypes(pc1), b = await selectedTypes(pc2);
            if (a && b) { R.local = [a[0], b[0]]; R.remote = [a[1], b[1]]; log('selected pairs ' + JSON.stringify([a, b])); }
          }
          if (cfg.expectConnection && R.dataChannelOpenMs !== null && R.messagesOK && R.local.length === 2
              && (!cfg.video || R.framesDecoded >= cfg.minFrames)) {
            finish('complete');
          }
        } catch (err) { log('poll: ' + err); }
      };
      (async () => {
        try {
          R.phase = 'RTCPeerConnection';
          pc1 = new RTCPeerConnection(conf);
          pc2 = new RTCPeerConnection(conf);
          window.ternPeerConnections = [pc1, pc2];
          wire(pc1, pc2, 0); wire(pc2, pc1, 1);
          if (cfg.video) {
            R.phase = 'getUserMedia';
            const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 30 } });
            stream.getTracks().forEach((t) => pc1.addTrack(t, stream));
            pc2.ontrack = (e) => {
              log('pc2 track ' + e.track.kind);
              const v = document.getElementById('remote');
              v.srcObject = e.streams[0] || new MediaStream([e.track]);
              v.play().catch((err) => log('video play: ' + err));
              if (v.requestVideoFrameCallback) {
                const cb = () => { R.videoFrames++; if (!R.done) v.requestVideoFrameCallback(cb); };
                v.requestVideoFrameCallback(cb);
              }
            };
          }
          const sendAll = (dc, from) => { for (let i = 0; i < N; i++) dc.send(expected(from, i)); };
          const dc1 = pc1.createDataChannel('tern', { ordered: true });
          dc1.onmessage = (e) => { got[0].push(e.data); checkMessages(); };
          dc1.onopen = () => {
            R.dataChannelOpenMs = performance.now() - t0;
            log('data channel open');
            if (!cfg.expectConnection) { finish('connected'); return; }
            sendAll(dc1, 'a->b');
          };
          pc2.ondatachannel = (e) => {
            const dc2 = e.channel;
            dc2.onmessage = (m) => { got[1].push(m.data); checkMessages(); };
            const go = () => sendAll(dc2, 'b->a');
            if (dc2.readyState === 'open') go(); else dc2.onopen = go;
          };
          R.phase = 'negotiating';
          const offer = await pc1.createOffer();
          await pc1.setLocalDescription(offer);
          await pc2.setRemoteDescription(offer);
          const answer = await pc2.createAnswer();
          await pc2.setLocalDescription(answer);
          await pc1.setRemoteDescription(answer);
          if (R.done) return;
          R.phase = 'connecting';
          timer = setInterval(poll, 200);
        } catch (err) {
          fail(R.phase + ': ' + (err && err.name ? err.name + ': ' + err.message : String(err)));
        }
      })();
      return true;
    };
    </script></body></html>
    """#

    /// A minimal HTTP/1.0-style GET responder on 127.0.0.1:<ephemeral>: "/" gets `html`, anything else
    /// 404, every response `Connection: close`. Each connection is served on its own short-lived
    /// thread with a read deadline, because Chromium opens speculative (preconnect) sockets that
    /// never send a request: a strictly one-at-a-time server would stall behind one of those.
    final class Server: @unchecked Sendable {
        let port: UInt16
        private let listenFD: Int32
        private let lock = NSLock()
        private var stopped = false
        private var acceptThread: Thread?
        private let body: [UInt8]

        /// `netns`: listen on 127.0.0.1 of that network namespace (where Chromium runs) instead of this process's.
        init(html: String = BrowserPage.html, netns: String? = nil) throws {
            body = Array(html.utf8)
            let fd = try netns.map { try NetworkNamespace.socket(in: $0, AF_INET, Int32(SOCK_STREAM.rawValue)) }
                ?? socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw BrowserHarnessError("page server: socket() failed, errno \(errno)") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, listen(fd, 16) == 0 else {
                let e = errno
                close(fd)
                throw BrowserHarnessError("page server: bind/listen failed, errno \(e)")
            }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            port = UInt16(bigEndian: addr.sin_port)
            listenFD = fd
            let thread = Thread { [self] in acceptLoop() }
            thread.name = "tern-browser-page-server"
            acceptThread = thread
            thread.start()
        }

        var url: String { "http://127.0.0.1:\(port)/" }

        private var isStopped: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopped
        }

        /// Stops accepting (bounded: the accept loop polls every 100 ms) and closes the socket.
        func stop() {
            lock.lock()
            let already = stopped
            stopped = true
            lock.unlock()
            if already { return }
            let deadline = Date().addingTimeInterval(2)
            while let t = acceptThread, !t.isFinished, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            close(listenFD)
        }

        private func acceptLoop() {
            while !isStopped {
                var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let client = accept(listenFD, nil, nil)
                if client < 0 { continue }
                let body = self.body
                let worker = Thread { Server.serve(client, body: body) }
                worker.start()
            }
        }

        /// Reads one request head (deadline 3 s), answers it, closes the connection.
        private static func serve(_ fd: Int32, body: [UInt8]) {
            defer { close(fd) }
            var request = [UInt8]()
            let deadline = Date().addingTimeInterval(3)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline, request.count < 65536 {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                request += buffer[0..<n]
                if request.count >= 4, String(decoding: request, as: UTF8.self).contains("\r\n\r\n") { break }
            }
            let head = String(decoding: request, as: UTF8.self)
            guard let line = head.split(separator: "\r\n", maxSplits: 1).first else { return }
            let parts = line.split(separator: " ")
            let path = parts.count >= 2 ? String(parts[1]) : ""
            let found = parts.first == "GET" && (path == "/" || path.hasPrefix("/?") || path == "/index.html")
            let payload = found ? body : Array("not found\n".utf8)
            let status = found ? "200 OK" : "404 Not Found"
            let type = found ? "text/html; charset=utf-8" : "text/plain"
            let response = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".utf8) + payload
            var sent = 0
            while sent < response.count {
                let n = response.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                sent += n
            }
            shutdown(fd, Int32(SHUT_WR))
        }
    }
}
