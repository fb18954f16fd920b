/// The style sheet the admin endpoint's pages share (dashboard and self-test): inlined in each page,
/// since a TURN host is often firewalled and nothing may come from a CDN.
enum AdminPageStyle {
    /// `<head>` with the shared style sheet.
    static func head(title: String) -> String {
        """
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title)</title>
        <style>
        \(css)</style>
        </head>
        """
    }

    /// The token form: shown when the admin endpoint answers 401; the token goes to sessionStorage.
    static func loginForm(button: String) -> String {
        """
        <div id="login"><form id="loginForm">
          <h2 style="margin-top:0">Admin token</h2>
          <p class="sub">This endpoint has <code>admin.token</code> set. The token is kept in this tab only (sessionStorage).</p>
          <input id="token" type="password" autocomplete="off" placeholder="Bearer token">
          <button type="submit">\(button)</button>
        </form></div>
        """
    }

    static let css = #"""
  :root {
    --bg: #0f1218; --panel: #171b23; --panel-border: #262c38; --text: #e6e9ef; --muted: #8b93a7;
    --accent: #5b9cff; --accent2: #36c5a0; --warn: #f2b84b; --bad: #ef5f67; --grid: #232937;
    font-family: "Inter", "Segoe UI", "Helvetica Neue", Arial, sans-serif;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font-size: 14px; }
  header { display: flex; align-items: center; gap: 16px; padding: 14px 24px; border-bottom: 1px solid var(--panel-border);
           background: linear-gradient(180deg, #141923, #11151c); }
  header h1 { font-size: 18px; margin: 0; letter-spacing: 0.02em; font-weight: 600; }
  header .logo { width: 28px; height: 28px; border-radius: 7px; background: linear-gradient(135deg, var(--accent), var(--accent2));
                 display: grid; place-items: center; font-weight: 700; color: #0b0e13; }
  header .meta { color: var(--muted); font-size: 13px; }
  header .spacer { flex: 1; }
  .pill { display: inline-flex; align-items: center; gap: 6px; padding: 4px 10px; border-radius: 999px; font-size: 12px;
          font-weight: 600; border: 1px solid var(--panel-border); background: #1b2130; }
  [hidden] { display: none !important; }
  .pill .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--muted); }
  .pill.ok .dot { background: var(--accent2); box-shadow: 0 0 8px var(--accent2); }
  .pill.warn .dot { background: var(--warn); box-shadow: 0 0 8px var(--warn); }
  .pill.bad .dot { background: var(--bad); box-shadow: 0 0 8px var(--bad); }
  main { padding: 20px 24px 32px; display: grid; gap: 16px; grid-template-columns: repeat(12, 1fr); }
  .panel { background: var(--panel); border: 1px solid var(--panel-border); border-radius: 10px; padding: 14px 16px; min-width: 0; }
  .panel h2 { margin: 0 0 10px; font-size: 12px; text-transform: uppercase; letter-spacing: 0.08em; color: var(--muted); font-weight: 600; }
  .span3 { grid-column: span 3; } .span4 { grid-column: span 4; } .span6 { grid-column: span 6; }
  .span8 { grid-column: span 8; } .span12 { grid-column: span 12; }
  @media (max-width: 1100px) { .span3, .span4 { grid-column: span 6; } .span6, .span8 { grid-column: span 12; } }
  .big { font-size: 34px; font-weight: 650; letter-spacing: -0.01em; font-variant-numeric: tabular-nums; }
  .sub { color: var(--muted); font-size: 12px; margin-top: 2px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 5px 6px; border-bottom: 1px solid var(--grid); }
  th { color: var(--muted); font-weight: 500; font-size: 12px; }
  td.num, th.num { text-align: right; }
  tr.zero td { color: #5d6577; }
  canvas { width: 100%; height: 220px; display: block; }
  .legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin-top: 6px; }
  .legend span::before { content: ""; display: inline-block; width: 10px; height: 3px; margin-right: 6px; vertical-align: middle;
                         background: var(--c); border-radius: 2px; }
  .bar { height: 6px; border-radius: 3px; background: var(--grid); overflow: hidden; }
  .bar > div { height: 100%; background: linear-gradient(90deg, var(--accent), var(--accent2)); }
  #login { position: fixed; inset: 0; background: rgba(8, 10, 14, 0.85); display: none; place-items: center; }
  #login form { background: var(--panel); border: 1px solid var(--panel-border); border-radius: 12px; padding: 24px; width: 360px; }
  #login input { width: 100%; padding: 9px 10px; border-radius: 8px; border: 1px solid var(--panel-border); background: #0f131a; color: var(--text); }
  #login button { margin-top: 12px; width: 100%; padding: 9px; border: 0; border-radius: 8px; background: var(--accent); color: #0b0e13; font-weight: 650; }
  #error { color: var(--bad); font-size: 12px; }
  footer { color: var(--muted); font-size: 12px; padding: 0 24px 24px; }
  a { color: var(--accent); }
  .steps { list-style: none; margin: 0; padding: 0; }
  .steps li { padding: 6px 0; border-bottom: 1px solid var(--grid); display: flex; gap: 10px; align-items: center; }
  .steps li .state { width: 64px; font-size: 12px; font-weight: 600; color: var(--muted); }
  .steps li.pass .state { color: var(--accent2); } .steps li.fail .state { color: var(--bad); } .steps li.run .state { color: var(--warn); }
  video { width: 100%; aspect-ratio: 4 / 3; background: #07090d; border-radius: 8px; border: 1px solid var(--panel-border); }
  .tag { display: inline-block; padding: 1px 7px; margin: 1px 3px 1px 0; border-radius: 6px; font-size: 12px; background: #222a3a; }
  .tag.relay { background: rgba(54, 197, 160, 0.18); color: var(--accent2); }
  .tag.srflx { background: rgba(91, 156, 255, 0.18); color: var(--accent); }
  .tag.err { background: rgba(239, 95, 103, 0.18); color: var(--bad); }
  .verdict { font-size: 22px; font-weight: 700; }
  .verdict.pass { color: var(--accent2); } .verdict.fail { color: var(--bad); }
"""#
}
