/// `GET /selftest`: proves, in the operator's own browser, that this server does its job.
///
/// 1. Fetches a credential from `POST /credentials` (asking for the admin token once when one is set).
/// 2. For each public URL, gathers ICE candidates with only that server and shows which types came
///    (srflx, relay) and how long each took, in the spirit of the Trickle ICE sample page.
/// 3. Runs a video call between two RTCPeerConnections in the page, forced through the relay
///    (`iceTransportPolicy: "relay"`), with a canvas-drawn moving test pattern as the camera.
/// 4. Shows the received video next to the sent one, with `getStats()` figures.
///
/// Contract for automation: when it finishes, `document.body.dataset.result` is "pass" or "fail" and
/// `window.ternSelfTest` a JSON-serialisable summary: `urls` (per URL, the candidate types gathered)
/// and `call` (`framesReceived`, the selected pair's local and remote candidate types, and more).
enum SelfTestPage {
    static let html = #"""
<!doctype html>
<html lang="en">
\#(AdminPageStyle.head(title: "Tern self-test"))
<body>
<header>
  <div class="logo">T</div>
  <h1>Tern self-test</h1>
  <span class="meta">STUN, TURN and a relayed video call, from this browser</span>
  <div class="spacer"></div>
  <span class="verdict" id="verdict">running…</span>
  <a class="meta" href="./">Dashboard</a>
</header>
<main>
  <section class="panel span4"><h2>Steps</h2>
    <ul class="steps">
      <li id="stepCredential"><span class="state">waiting</span><span>Credential from <code>POST /credentials</code></span></li>
      <li id="stepGather"><span class="state">waiting</span><span>ICE candidates from each public URL</span></li>
      <li id="stepCall"><span class="state">waiting</span><span>Video call through the relay</span></li>
    </ul>
    <p class="sub" id="credentialInfo"></p></section>
  <section class="panel span8"><h2>ICE gathering, one server at a time</h2>
    <table><thead><tr><th>URL</th><th>Candidates</th><th class="num">First srflx</th><th class="num">First relay</th><th>Notes</th></tr></thead>
      <tbody id="gather"><tr class="zero"><td colspan="5">waiting for a credential</td></tr></tbody></table></section>
  <section class="panel span4"><h2>Sent (test pattern)</h2><video id="sent" autoplay muted playsinline></video></section>
  <section class="panel span4"><h2>Received through the relay</h2><video id="received" autoplay muted playsinline></video></section>
  <section class="panel span4"><h2>Call statistics (getStats)</h2>
    <table><tbody id="callStats"><tr class="zero"><td>waiting</td></tr></tbody></table></section>
</main>
<footer id="error"></footer>
<canvas id="pattern" width="640" height="480" style="display:none"></canvas>
\#(AdminPageStyle.loginForm(button: "Run the self-test"))
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const summary = { result: "running", urls: [], call: null, error: null };
window.ternSelfTest = summary;
function step(id, state, text) {
  const li = $(id); li.className = state; li.firstElementChild.textContent = text || state;
}
function headers() {
  const t = sessionStorage.getItem("ternAdminToken");
  return Object.assign({ "Content-Type": "application/json" }, t ? { "Authorization": "Bearer " + t } : {});
}
function askToken() {
  $("login").style.display = "grid";
  return new Promise((resolve) => {
    $("loginForm").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem("ternAdminToken", $("token").value);
      $("login").style.display = "none";
      resolve();
    }, { once: true });
  });
}
async function credential() {
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await fetch("credentials", { method: "POST", headers: headers(), body: JSON.stringify({ user: "selftest", ttl: 600 }) });
    if (r.status === 401) { await askToken(); continue; }
    const body = await r.json();
    if (!r.ok) throw new Error("POST /credentials: HTTP " + r.status + ": " + (body.error || ""));
    return body;
  }
  throw new Error("POST /credentials: the token was refused");
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Gathers candidates with only `url`; types seen, first time of each, and errors. */
async function gather(url, cred) {
  const server = { urls: [url] };
  if (url.startsWith("turn")) { server.username = cred.username; server.credential = cred.credential; }
  const pc = new RTCPeerConnection({ iceServers: [server] });
  pc.createDataChannel("probe");
  const t0 = performance.now(), first = {}, errors = [];
  pc.onicecandidate = (e) => {
    const c = e.candidate;
    if (c && c.type && !(c.type in first)) first[c.type] = Math.round(performance.now() - t0);
  };
  pc.onicecandidateerror = (e) => errors.push(`${e.errorCode} ${e.errorText || ""}`.trim());
  await pc.setLocalDescription(await pc.createOffer());
  const deadline = performance.now() + 10000;
  while (pc.iceGatheringState !== "complete" && performance.now() < deadline) await sleep(50);
  pc.close();
  const types = Object.keys(first).filter((t) => t !== "host");
  const isTurn = url.startsWith("turn");
  const ok = isTurn ? types.includes("relay") : errors.length === 0;
  return { url, types, times: first, errors, ok };
}

function drawPattern(canvas) {
  const ctx = canvas.getContext("2d");
  let frame = 0;
  return setInterval(() => {
    frame++;
    const w = canvas.width, h = canvas.height;
    const bars = ["#e6e9ef", "#f2b84b", "#36c5a0", "#5b9cff", "#b07cff", "#ef5f67", "#2b3140"];
    bars.forEach((c, i) => { ctx.fillStyle = c; ctx.fillRect(i * w / bars.length, 0, w / bars.length + 1, h * 0.58); });
    ctx.fillStyle = "#0f1218"; ctx.fillRect(0, h * 0.58, w, h * 0.42);
    const x = (frame * 6) % (w + 120) - 60;
    ctx.fillStyle = "#36c5a0"; ctx.beginPath(); ctx.arc(x, h * 0.86, 34, 0, Math.PI * 2); ctx.fill();
    ctx.fillStyle = "#e6e9ef"; ctx.font = "bold 34px sans-serif";
    ctx.fillText("TERN SELF-TEST", 24, h * 0.58 + 46);
    ctx.font = "22px monospace"; ctx.fillStyle = "#8b93a7";
    ctx.fillText("frame " + frame + "   " + new Date().toISOString().slice(11, 23), 24, h * 0.58 + 82);
  }, 33);
}

/** Two peer connections in this page, relay only, video from the test pattern. */
async function call(cred, urls) {
  const turnURLs = urls.filter((u) => u.startsWith("turn"));
  const config = { iceServers: [{ urls: turnURLs, username: cred.username, credential: cred.credential }], iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(config), b = new RTCPeerConnection(config);
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
  const canvas = $("pattern");
  const timer = drawPattern(canvas);
  const stream = canvas.captureStream(30);
  $("sent").srcObject = stream;
  stream.getTracks().forEach((t) => a.addTrack(t, stream));
  b.ontrack = (e) => { $("received").srcObject = e.streams[0] || new MediaStream([e.track]); };
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const result = { framesReceived: 0, framesDecoded: 0, localCandidateType: null, remoteCandidateType: null,
                   protocol: null, relayProtocol: null, bitrateKbps: 0, roundTripTimeMs: null, iceState: null };
  const start = performance.now();
  let lastBytes = 0, lastT = start;
  while (performance.now() - start < 30000) {
    await sleep(500);
    result.iceState = b.iceConnectionState;
    const stats = await b.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        result.framesReceived = s.framesReceived || 0; result.framesDecoded = s.framesDecoded || 0;
        const now = performance.now();
        result.bitrateKbps = Math.round(((s.bytesReceived || 0) - lastBytes) * 8 / Math.max(1, now - lastT));
        lastBytes = s.bytesReceived || 0; lastT = now;
      }
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (pair) {
      const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
      result.localCandidateType = local && local.candidateType; result.remoteCandidateType = remote && remote.candidateType;
      result.protocol = local && local.protocol; result.relayProtocol = local && local.relayProtocol;
      result.roundTripTimeMs = pair.currentRoundTripTime != null ? Math.round(pair.currentRoundTripTime * 1000) : null;
    }
    showCall(result);
    if (result.framesReceived >= 90 && result.localCandidateType) break;
  }
  // The call stays up (and the pattern moving) so that the received video can be watched; the
  // allocations end when the page closes.
  window.addEventListener("pagehide", () => { clearInterval(timer); a.close(); b.close(); });
  return result;
}

function showCall(r) {
  const rows = [["Frames received", r.framesReceived], ["Frames decoded", r.framesDecoded], ["Bitrate", r.bitrateKbps + " kbit/s"],
                ["Round-trip time", r.roundTripTimeMs == null ? "–" : r.roundTripTimeMs + " ms"],
                ["Selected pair", (r.localCandidateType || "–") + " ↔ " + (r.remoteCandidateType || "–")],
                ["Protocol", (r.protocol || "–") + (r.relayProtocol ? " (to the relay: " + r.relayProtocol + ")" : "")],
                ["ICE state", r.iceState || "–"]];
  $("callStats").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td class="num">${v}</td></tr>`).join("");
}

async function run() {
  try {
    step("stepCredential", "run", "running");
    const cred = await credential();
    step("stepCredential", "pass", "pass");
    $("credentialInfo").textContent = `${cred.username}, valid until ${cred.expires}`;
    step("stepGather", "run", "running");
    const rows = [];
    for (const url of cred.urls) {
      const g = await gather(url, cred);
      summary.urls.push(g);
      rows.push(g);
      $("gather").innerHTML = rows.map((g) => `<tr><td><code>${g.url}</code></td>
        <td>${g.types.map((t) => `<span class="tag ${t}">${t}</span>`).join("")
             || '<span class="tag" title="The server saw the address this browser sent from: no NAT in between">no srflx: no NAT in between</span>'}</td>
        <td class="num">${g.times.srflx != null ? g.times.srflx + " ms" : "–"}</td>
        <td class="num">${g.times.relay != null ? g.times.relay + " ms" : "–"}</td>
        <td>${g.errors.map((e) => e.startsWith("701") && g.ok
             ? `<span class="tag" title="${e}">not reachable from every local interface</span>`
             : `<span class="tag err">${e}</span>`).join("")}</td></tr>`).join("");
    }
    const gatherOK = summary.urls.length > 0 && summary.urls.every((g) => g.ok);
    step("stepGather", gatherOK ? "pass" : "fail", gatherOK ? "pass" : "fail");
    step("stepCall", "run", "running");
    summary.call = await call(cred, cred.urls);
    const c = summary.call;
    const callOK = c.framesReceived >= 30 && c.localCandidateType === "relay" && c.remoteCandidateType === "relay";
    step("stepCall", callOK ? "pass" : "fail", callOK ? "pass" : "fail");
    summary.result = gatherOK && callOK ? "pass" : "fail";
  } catch (e) {
    summary.error = String(e && e.message || e);
    summary.result = "fail";
    $("error").textContent = summary.error;
  }
  $("verdict").textContent = summary.result === "pass" ? "PASS" : "FAIL";
  $("verdict").className = "verdict " + summary.result;
  document.body.dataset.result = summary.result;
}
run();
</script>
</body>
</html>
"""#
}
