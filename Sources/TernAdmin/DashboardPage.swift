/// `GET /`: the dashboard an operator can leave open. One self-contained page (inline CSS and
/// JavaScript, no CDN: a TURN host is often firewalled) that polls `GET /stats` every two seconds and
/// draws what it reads: live allocations by transport and family, relayed packets and bytes per
/// second over the last five minutes, refusals and limits hit, authentication failures, per-worker
/// load, uptime, version, readiness and draining. With `admin.token` set the page asks for the token
/// once and keeps it in `sessionStorage` (gone when the tab closes).
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en">
\#(AdminPageStyle.head(title: "Tern dashboard"))
<body>
<header>
  <div class="logo">T</div>
  <h1>Tern</h1>
  <span class="meta" id="version">version …</span>
  <span class="meta" id="uptime">uptime …</span>
  <div class="spacer"></div>
  <span class="pill" id="ready"><span class="dot"></span><span>connecting</span></span>
  <span class="pill" id="draining"><span class="dot"></span><span>…</span></span>
  <span class="pill" id="relayAddress" hidden><span class="dot"></span><span>…</span></span>
  <a class="meta" href="selftest">Self-test</a>
</header>
<main>
  <section class="panel span3"><h2>Live allocations</h2><div class="big" id="allocActive">–</div>
    <div class="sub" id="allocCreated">created –</div></section>
  <section class="panel span3"><h2>Relayed packets / s</h2><div class="big" id="pps">–</div>
    <div class="sub" id="ppsSplit">client→peer – · peer→client –</div></section>
  <section class="panel span3"><h2>Relayed bytes / s</h2><div class="big" id="bps">–</div>
    <div class="sub" id="bpsTotal">total –</div></section>
  <section class="panel span3"><h2>Connections</h2><div class="big" id="connTotal">–</div>
    <div class="sub" id="connSplit">tcp – · tls – · dtls –</div></section>

  <section class="panel span8"><h2>Relayed traffic, last 5 minutes</h2>
    <canvas id="graph" width="1200" height="220"></canvas>
    <div class="legend"><span style="--c: var(--accent)">packets / s</span><span style="--c: var(--accent2)">kB / s</span></div></section>
  <section class="panel span4"><h2>Allocations by transport and family</h2>
    <table><thead><tr><th>Transport</th><th>Family</th><th class="num">Live</th></tr></thead><tbody id="activeBy"></tbody></table>
    <h2 style="margin-top:14px">Relay ports</h2><div class="bar"><div id="portsBar" style="width:0"></div></div>
    <div class="sub" id="ports">– in use of –</div></section>

  <section class="panel span4"><h2>Refusals and limits hit</h2>
    <table><thead><tr><th>Reason</th><th class="num">Count</th></tr></thead><tbody id="limited"></tbody></table></section>
  <section class="panel span4"><h2>Authentication failures</h2>
    <table><thead><tr><th>Reason</th><th class="num">Count</th></tr></thead><tbody id="auth"></tbody></table></section>
  <section class="panel span4"><h2>Dropped</h2>
    <table><thead><tr><th>Reason</th><th class="num">Count</th></tr></thead><tbody id="dropped"></tbody></table></section>

  <section class="panel span12"><h2>Workers</h2>
    <table><thead><tr><th>Worker</th><th class="num">Allocations</th><th class="num">Relay sockets</th><th class="num">Connections</th>
      <th class="num">Relayed pkt/s</th><th class="num">Datagrams in/s</th><th class="num">Datagrams out/s</th><th style="width:28%">Load</th></tr></thead>
      <tbody id="workers"></tbody></table></section>
</main>
<footer>Polling <code>/stats</code> every 2 s · <span id="error"></span></footer>
\#(AdminPageStyle.loginForm(button: "Open dashboard"))
<script>
"use strict";
const history = [];          // {t, pps, bps}
const maxPoints = 150;       // 5 minutes at 2 s
let previous = null;
const $ = (id) => document.getElementById(id);
const fmt = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + " G" : n >= 1e6 ? (n / 1e6).toFixed(2) + " M" : n >= 1e4 ? (n / 1e3).toFixed(1) + " k" : String(Math.round(n));
const fmtBytes = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(2) + " MB" : n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : Math.round(n) + " B";
const label = (s) => s.replace(/_/g, " ");
function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}
function headers() {
  const t = sessionStorage.getItem("ternAdminToken");
  return t ? { "Authorization": "Bearer " + t } : {};
}
function pill(el, cls, text) { el.className = "pill " + cls; el.lastElementChild.textContent = text; }
function counterRows(tbody, map) {
  const entries = Object.entries(map || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  tbody.innerHTML = entries.map(([k, v]) => `<tr class="${v ? "" : "zero"}"><td>${label(k)}</td><td class="num">${fmt(v)}</td></tr>`).join("")
    || `<tr class="zero"><td colspan="2">none</td></tr>`;
}
function draw() {
  const c = $("graph"), ctx = c.getContext("2d");
  const w = c.width = c.clientWidth * devicePixelRatio, h = c.height = 220 * devicePixelRatio;
  ctx.clearRect(0, 0, w, h);
  const pad = 34 * devicePixelRatio;
  ctx.strokeStyle = "#232937"; ctx.lineWidth = 1; ctx.fillStyle = "#8b93a7"; ctx.font = `${11 * devicePixelRatio}px sans-serif`;
  for (let i = 0; i <= 4; i++) { const y = pad / 2 + (h - pad) * i / 4; ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke(); }
  // Packets per second as a filled area on the left scale, kB per second as a line on the right one.
  const series = [["pps", "#5b9cff", 1, true], ["bps", "#36c5a0", 1 / 1000, false]];
  const xAt = (i) => pad + (w - pad * 2) * (i + maxPoints - history.length) / (maxPoints - 1);
  for (const [key, color, scale, area] of series) {
    const max = Math.max(1, ...history.map(p => p[key] * scale));
    const yAt = (p) => pad / 2 + (h - pad) * (1 - p[key] * scale / max);
    ctx.beginPath();
    history.forEach((p, i) => { i ? ctx.lineTo(xAt(i), yAt(p)) : ctx.moveTo(xAt(i), yAt(p)); });
    if (area && history.length > 1) {
      ctx.strokeStyle = color; ctx.lineWidth = 1.5 * devicePixelRatio; ctx.stroke();
      ctx.lineTo(xAt(history.length - 1), h - pad / 2); ctx.lineTo(xAt(0), h - pad / 2); ctx.closePath();
      ctx.fillStyle = "rgba(91, 156, 255, 0.22)"; ctx.fill();
    } else {
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio; ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.fillStyle = color;
    if (key === "pps") ctx.fillText(fmt(max) + " pkt/s", 2, pad / 2 + 4);
    else { const t = fmt(max) + " kB/s"; ctx.fillText(t, w - ctx.measureText(t).width - 2, pad / 2 + 4); }
  }
  ctx.fillStyle = "#8b93a7";
  ctx.fillText("-5 min", pad, h - 4); ctx.fillText("now", w - pad - 20 * devicePixelRatio, h - 4);
}
function render(s) {
  $("version").textContent = "version " + s.version;
  $("uptime").textContent = "uptime " + uptime(s.uptimeSeconds);
  const ext = s.externalAddresses || [];
  const unsettled = ext.filter(e => !["configured", "discovered", "direct"].includes(e.state));
  const why = s.draining ? "draining" : s.atCapacity ? "at capacity" : unsettled.length ? "relay address " + unsettled[0].state.replace(/_/g, " ") : "";
  pill($("ready"), s.ready ? "ok" : "bad", s.ready ? "ready" : "not ready" + (why ? ": " + why : ""));
  const relay = $("relayAddress");
  relay.hidden = ext.length === 0;
  if (ext.length) {
    const text = ext.map(e => e.advertised ? `relay ${e.advertised} (${e.state === "configured" ? "configured" : "discovered via " + e.source})`
      : e.state === "direct" ? `relay ${e.family}: no NAT` : `relay ${e.family}: ${e.state.replace(/_/g, " ")} via ${e.source}`).join(" · ");
    pill(relay, unsettled.length ? "bad" : "ok", text);
    relay.title = ext.map(e => e.error || "").filter(x => x).join("\n");
  }
  pill($("draining"), s.draining ? "warn" : "ok", s.draining ? "draining" : "accepting allocations");
  $("allocActive").textContent = fmt(s.allocations.active);
  $("allocCreated").textContent = "created " + fmt(s.allocations.created) + " · ended " + fmt(Object.values(s.allocations.ended || {}).reduce((a, b) => a + b, 0))
    + (s.allocations.capacity ? " · capacity " + fmt(s.allocations.capacity) : "");
  const conns = s.connections || {};
  $("connTotal").textContent = fmt(Object.values(conns).reduce((a, b) => a + b, 0));
  $("connSplit").textContent = `tcp ${conns.tcp || 0} · tls ${conns.tls || 0} · dtls ${conns.dtls || 0}`;
  const now = performance.now() / 1000;
  const rel = s.relayed;
  const packets = rel.clientToPeer.packets + rel.peerToClient.packets, bytes = rel.clientToPeer.bytes + rel.peerToClient.bytes;
  let pps = 0, bps = 0, c2p = 0, p2c = 0;
  if (previous) {
    const dt = Math.max(0.001, now - previous.t);
    pps = Math.max(0, (packets - previous.packets) / dt); bps = Math.max(0, (bytes - previous.bytes) / dt);
    c2p = Math.max(0, (rel.clientToPeer.packets - previous.c2p) / dt); p2c = Math.max(0, (rel.peerToClient.packets - previous.p2c) / dt);
  }
  $("pps").textContent = fmt(pps);
  $("ppsSplit").textContent = `client→peer ${fmt(c2p)} · peer→client ${fmt(p2c)}`;
  $("bps").textContent = fmtBytes(bps);
  $("bpsTotal").textContent = "total " + fmtBytes(bytes) + " · " + fmt(packets) + " packets";
  history.push({ t: now, pps, bps }); if (history.length > maxPoints) history.shift();
  $("activeBy").innerHTML = (s.allocations.activeBy || []).map(a => `<tr><td>${a.transport}</td><td>${a.family}</td><td class="num">${fmt(a.count)}</td></tr>`).join("")
    || `<tr class="zero"><td colspan="3">no live allocation</td></tr>`;
  const ports = s.relayPorts;
  $("portsBar").style.width = (100 * ports.inUse / Math.max(1, ports.rangeSize)).toFixed(1) + "%";
  $("ports").textContent = `${fmt(ports.inUse)} in use of ${fmt(ports.rangeSize)} (${fmt(ports.free)} free)`;
  const limited = Object.assign({}, s.limited);
  for (const [code, n] of Object.entries(s.allocations.refused || {})) if (code !== "300") limited["allocate " + code] = n;
  for (const [why, n] of Object.entries(s.allocations.redirected || {})) limited["redirected (" + why + ")"] = n;
  for (const [why, n] of Object.entries(s.proxyProtocol || {})) if (why !== "accepted") limited["PROXY header " + why] = n;
  counterRows($("limited"), limited);
  counterRows($("auth"), s.authFailures);
  counterRows($("dropped"), s.dropped);
  const prevWorkers = previous ? previous.workers : null;
  const dt = previous ? Math.max(0.001, now - previous.t) : 1;
  const loads = s.workers.map((w, i) => {
    const p = prevWorkers && prevWorkers[i];
    return { w, rp: p ? Math.max(0, (w.relayedPackets - p.relayedPackets) / dt) : 0,
             rx: p ? Math.max(0, (w.datagramsReceived - p.datagramsReceived) / dt) : 0,
             tx: p ? Math.max(0, (w.datagramsSent - p.datagramsSent) / dt) : 0 };
  });
  const maxLoad = Math.max(1, ...loads.map(l => l.rx + l.tx));
  $("workers").innerHTML = loads.map(({ w, rp, rx, tx }) => `<tr><td>#${w.index}</td><td class="num">${fmt(w.allocations)}</td>
    <td class="num">${fmt(w.relaySockets)}</td><td class="num">${fmt(w.connections)}</td><td class="num">${fmt(rp)}</td>
    <td class="num">${fmt(rx)}</td><td class="num">${fmt(tx)}</td>
    <td><div class="bar"><div style="width:${(100 * (rx + tx) / maxLoad).toFixed(1)}%"></div></div></td></tr>`).join("");
  previous = { t: now, packets, bytes, c2p: rel.clientToPeer.packets, p2c: rel.peerToClient.packets, workers: s.workers };
  document.body.dataset.polls = String((Number(document.body.dataset.polls) || 0) + 1);
  draw();
}
async function poll() {
  try {
    const r = await fetch("stats", { headers: headers(), cache: "no-store" });
    if (r.status === 401) { $("login").style.display = "grid"; $("error").textContent = "admin token required"; return; }
    if (!r.ok) throw new Error("HTTP " + r.status);
    $("error").textContent = "";
    render(await r.json());
  } catch (e) {
    $("error").textContent = "cannot reach /stats: " + e.message;
    pill($("ready"), "bad", "unreachable");
  }
}
$("loginForm").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("ternAdminToken", $("token").value);
  $("login").style.display = "none";
  poll();
});
window.addEventListener("resize", draw);
poll();
setInterval(poll, 2000);
</script>
</body>
</html>
"""#
}
