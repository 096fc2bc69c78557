// The live dashboard: it reads the server's snapshot stream (GET /v1/dashboard/stream,
// server-sent events) with fetch, so that the token goes in the Authorization header
// rather than in a URL, and redraws on each snapshot. No build step, no library.
"use strict";

const TOKEN_KEY = "revguard-dashboard-token";
const WINDOW = 300; // seconds of history in the chart
const COLORS = {
  reserved: "#3fb950", replayed: "#56d364", sold_out: "#ff7b72", limit_exceeded: "#d29922",
  bot_check_failed: "#f778ba", rate_limited: "#a371f7", sale_not_open: "#79c0ff",
  bot_check_unavailable: "#ffa657", unavailable: "#ffa198", invalid_request: "#8b98a5",
};
const LABELS = { reserved: "201 reserved" };
const points = []; // {t, d: decisions per second by outcome}
const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");

function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    window.history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(msg) {
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("token").focus();
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $("token").value = "";
  connect();
});

let running = null;
async function connect() {
  const token = takeToken();
  if (!token) { showLogin(); return; }
  if (running) running.abort();
  const ctl = new AbortController();
  running = ctl;
  let resp;
  try {
    resp = await fetch("/v1/dashboard/stream", { headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" }, signal: ctl.signal, cache: "no-store" });
  } catch (e) {
    return retry(ctl);
  }
  if (resp.status === 401 || resp.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    let detail = "";
    try { detail = (await resp.json()).detail; } catch (e) {}
    showLogin(detail || "The token was refused.");
    return;
  }
  if (!resp.ok) return retry(ctl);
  $("login").hidden = true;
  $("board").hidden = false;
  setConn(true);
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (event === "snapshot" && data) render(JSON.parse(data));
      }
    }
  } catch (e) { /* aborted or dropped */ }
  retry(ctl);
}

function retry(ctl) {
  if (running !== ctl) return;
  setConn(false);
  setTimeout(() => { if (running === ctl) connect(); }, 2000);
}

function setConn(on) {
  const c = $("conn");
  c.className = "conn " + (on ? "on" : "off");
  c.textContent = on ? "live" : "reconnecting…";
}

function ms(s) {
  if (s === undefined || s === null) return "–";
  if (s < 0.001) return (s * 1e6).toFixed(0) + "µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + "ms";
  return s.toFixed(2) + "s";
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function render(s) {
  let stock = 0, avail = 0, held = 0, sold = 0;
  const rows = [];
  for (const k of s.skus) {
    stock += k.stock; avail += k.available; held += k.held; sold += k.sold;
    const ps = k.stock ? (100 * k.sold) / k.stock : 0, ph = k.stock ? (100 * k.held) / k.stock : 0;
    rows.push(`<tr data-sku="${esc(k.sku)}"><td>${esc(k.sku)}${k.available === 0 && k.stock > 0 ? '<span class="soldout">SOLD OUT</span>' : ""}</td>` +
      `<td class="stock">${fmt.format(k.stock)}</td><td class="available">${fmt.format(k.available)}</td>` +
      `<td class="held">${fmt.format(k.held)}</td><td class="sold">${fmt.format(k.sold)}</td>` +
      `<td class="room">${k.waiting_room ? `${fmt.format(k.waiting_room.waiting)} waiting, ${fmt.format(k.waiting_room.admitted)} admitted` : "—"}</td>` +
      `<td class="bar"><div class="meter"><div class="s" style="width:${ps}%"></div><div class="h" style="width:${ph}%"></div></div></td></tr>`);
  }
  $("skus").innerHTML = rows.join("");
  $("sku-count").textContent = s.sku_count > s.skus.length ? `(${s.skus.length} of ${fmt.format(s.sku_count)})` : `(${s.sku_count})`;
  $("t-stock").textContent = fmt.format(stock);
  $("t-available").textContent = fmt.format(avail);
  $("t-held").textContent = fmt.format(held);
  $("t-sold").textContent = fmt.format(sold);
  const rate = Object.values(s.decisions || {}).reduce((a, b) => a + b, 0);
  $("t-rate").textContent = fmt.format(Math.round(rate));
  const l = s.latency || {};
  $("t-latency").textContent = l.p50 === undefined ? "–" : `${ms(l.p50)} · ${ms(l.p90)} · ${ms(l.p99)}`;
  const lag = s.ledger_lag_seconds;
  $("t-lag").textContent = lag === null || lag === undefined ? "–" : lag === 0 ? "caught up" : ms(lag);
  const ready = s.nodes.filter((n) => n.ready).length;
  $("t-nodes").textContent = `${ready} / ${s.nodes.length} ready`;
  $("t-nodes").title = s.nodes.map((n) => `${n.name}: ${n.ready ? "ready" : n.detail}`).join("\n");

  const wh = s.webhooks.map((w) => `<tr><td>${esc(w.url)}</td><td class="${esc(w.status)}">${esc(w.status)}</td>` +
    `<td>${fmt.format(w.backlog)}</td><td>${w.failures}</td><td>${esc(w.last_error || "")}</td></tr>`);
  $("webhooks").innerHTML = wh.length ? wh.join("") : '<tr><td colspan="5" class="muted">none registered</td></tr>';

  points.push({ t: Date.parse(s.time) / 1000, d: s.decisions || {} });
  while (points.length && points[points.length - 1].t - points[0].t > WINDOW) points.shift();
  draw();
}

// draw plots the decisions of each second as a bar stacked by outcome, over the last
// minute at first and up to the last five as history accumulates.
function draw() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth, h = cv.clientHeight;
  if (cv.width !== w * dpr) { cv.width = w * dpr; cv.height = h * dpr; }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const tNow = points.length ? points[points.length - 1].t : 0;
  const span = points.length ? tNow - points[0].t : 0;
  const win = Math.min(WINDOW, Math.max(60, Math.ceil(span / 60) * 60));
  const outcomes = [...new Set(points.flatMap((p) => Object.keys(p.d)))].sort((a, b) => (a === "reserved" ? -1 : b === "reserved" ? 1 : a < b ? -1 : 1));
  let top = 1;
  for (const p of points) top = Math.max(top, Object.values(p.d).reduce((a, b) => a + b, 0));
  top = niceCeil(top);
  const left = 48, bottom = h - 18, right = w - 8;
  const x = (t) => right - ((tNow - t) / win) * (right - left);
  const y = (v) => bottom - (v / top) * (bottom - 8);
  g.strokeStyle = "#26313d"; g.fillStyle = "#8b98a5"; g.font = "11px system-ui"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4, yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(left, yy); g.lineTo(right, yy); g.stroke();
    g.fillText(fmt.format(v), 4, yy + 4);
  }
  const step = win > 60 ? 60 : 15;
  for (let s = step; s <= win; s += step) g.fillText(s % 60 ? `-${s}s` : `-${s / 60}m`, x(tNow - s) - 10, h - 4);
  const bw = Math.max(1, ((right - left) / win) * 0.8);
  for (const p of points) {
    let base = 0;
    for (const k of outcomes) {
      const v = p.d[k] || 0;
      if (!v) continue;
      g.fillStyle = COLORS[k] || "#c9d1d9";
      g.fillRect(x(p.t) - bw, y(base + v), bw, y(base) - y(base + v));
      base += v;
    }
  }
  $("legend").innerHTML = outcomes.map((k) => `<li><i style="background:${COLORS[k] || "#c9d1d9"}"></i>${esc(LABELS[k] || k)}</li>`).join("");
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

window.addEventListener("resize", draw);
connect();
