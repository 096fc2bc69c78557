// The storefront example: a buy button in front of Revenue Guard's API.
//
// What a shop's page does, in order: show the SKU's public availability live; render
// the Turnstile widget; when the customer presses "Buy", get a session (here from the
// demo-only POST /example/session; a real shop's backend issues it after its own
// login), reserve with the Turnstile token and an Idempotency-Key, show the hold's
// countdown, then confirm (after payment) or release. Every problem code a customer
// can meet becomes a sentence for a person, and a Retry-After is honoured. A drop with a waiting room answers the first Buy with
// admission_required: the page then joins the line with the same Turnstile token (the
// admission is checked before the bot check, so the token is unspent, unless the room
// was put while that check ran: the join then asks for a new check), shows
// the place as it moves, and lets the customer buy once admitted.
(function () {
  "use strict";

  const shop = document.getElementById("shop");
  const $ = (id) => document.getElementById(id);
  const sku = new URLSearchParams(location.search).get("sku") || shop.dataset.sku;

  // What to tell a person for each problem code of the API.
  const sentences = {
    sold_out: "Sorry, this item is sold out. Units on hold come back if their buyers don't pay, so it may be worth trying again in a few minutes.",
    limit_exceeded: "You already have as many of these as one customer may buy.",
    bot_check_failed: "We could not confirm that you are human. Please complete the check again, then press Buy.",
    bot_check_unavailable: "Our bot check is not answering right now. Please try again in a moment.",
    rate_limited: "Too many tries in a short time. Please wait a moment and try again.",
    unavailable: "The shop is very busy right now. Please try again in a moment.",
    sale_not_open: "The sale has not opened yet.",
    sku_not_found: "This product is not on sale.",
    invalid_sku: "This product is not on sale.",
    hold_expired: "Your reservation ran out before the purchase was confirmed, and the item went back on sale.",
    hold_released: "This reservation was given back.",
    already_confirmed: "This purchase is already confirmed.",
    reservation_not_found: "We could not find this reservation.",
    unauthenticated: "Your session ended. Please press Buy again.",
    idempotency_key_reused: "Something went wrong with this attempt. Please press Buy again.",
    internal: "Something went wrong on our side. Please try again.",
    admission_required: "This drop has a waiting room, so that everyone gets a fair chance. Joining the line…",
    waiting_room_not_found: "This drop no longer has a waiting room: press Buy.",
    place_not_found: "We lost your place in line. Please press Buy again.",
    // Answers a working page never gets (its requests are well-formed): the page
    // itself is out of date or broken.
    invalid_request: "This page sent something the shop did not understand. Please reload it and try again.",
    body_too_large: "This page sent something the shop did not understand. Please reload it and try again.",
    header_too_large: "This page sent something the shop did not understand. Please reload it and try again.",
    unsupported_media_type: "This page sent something the shop did not understand. Please reload it and try again.",
    method_not_allowed: "This page is out of date. Please reload it and try again.",
    not_found: "This page is out of date. Please reload it and try again.",
    forbidden: "This account cannot buy here. Please sign in as a customer.",
  };
  const fallback = "Something went wrong. Please try again.";
  // Codes after which a new press is a new purchase attempt (a new Idempotency-Key);
  // after any other answer, pressing again retries the same attempt.
  const attemptOver = new Set(["sold_out", "limit_exceeded", "sale_not_open", "sku_not_found", "invalid_sku", "idempotency_key_reused", "invalid_request"]);
  // Refusals the API makes before the bot check, which leave the Turnstile token
  // unspent: the widget keeps it for the next press instead of a new challenge.
  const tokenUnspent = new Set(["rate_limited", "sale_not_open", "unauthenticated"]);

  let session = null;     // {token, customer_id, expires_at}
  let widgetID = null;    // the Turnstile widget
  let turnstileToken = null;
  let attemptKey = null;  // Idempotency-Key of the current purchase attempt
  let hold = null;        // the reservation while it is held
  let countdownTimer = null;
  let busy = false;
  let placeTimer = null;  // the next poll of the place in the waiting room, while there is one
  let coolUntil = 0;      // Buy stays off until then (Date.now() ms), after a 429 or a 503's Retry-After

  $("sku-name").textContent = sku;

  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = "message" + (kind ? " " + kind : "");
  }

  // problemSentence returns the sentence for a problem document's code.
  function problemSentence(problem) {
    return (problem && sentences[problem.code]) || fallback;
  }

  // api calls the API and resolves to {status, body, retryAfter}; body is the parsed
  // JSON, a problem document on errors, or null; retryAfter is the Retry-After header
  // in seconds (0 when absent).
  async function api(method, path, { token, headers = {}, body } = {}) {
    const h = Object.assign({}, headers);
    if (token) h["Authorization"] = "Bearer " + token;
    if (body !== undefined) h["Content-Type"] = "application/json";
    let resp;
    try {
      // The browser's cache follows the API's Cache-Control (availability: max-age=1).
      resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { status: 0, body: { code: "unavailable" }, retryAfter: 0 };
    }
    let parsed = null;
    const type = resp.headers.get("Content-Type") || "";
    if (type.startsWith("application/json") || type.startsWith("application/problem+json")) {
      parsed = await resp.json().catch(() => null);
    }
    const retryAfter = parseInt(resp.headers.get("Retry-After") || "0", 10);
    return { status: resp.status, body: parsed, retryAfter: retryAfter > 0 ? retryAfter : 0 };
  }

  // randomKey returns a fresh Idempotency-Key (crypto.getRandomValues works on plain
  // http:// pages too, unlike crypto.randomUUID).
  function randomKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "buy-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // Availability: the public, cacheable view, polled every second.
  async function refreshAvailability() {
    const r = await api("GET", "/v1/skus/" + encodeURIComponent(sku) + "/availability");
    const el = $("availability");
    el.className = "availability";
    if (r.status === 200) {
      const a = r.body;
      if (a.opens_at && new Date(a.opens_at) > new Date()) {
        el.textContent = "Opens at " + new Date(a.opens_at).toLocaleString();
        el.classList.add("not-open");
      } else if (a.sold_out) {
        el.textContent = "Sold out";
        el.classList.add("sold-out");
      } else {
        el.textContent = a.available + (a.available === 1 ? " left" : " left in stock");
      }
    } else if (r.status === 404) {
      el.textContent = sentences.sku_not_found;
      el.classList.add("sold-out");
    }
  }

  // The Turnstile widget. Its script is loaded after the callback it names exists.
  window.revguardTurnstileReady = function () {
    widgetID = window.turnstile.render("#widget", {
      sitekey: shop.dataset.sitekey,
      action: "reserve",
      callback: (token) => { turnstileToken = token; updateBuy(); },
      "expired-callback": () => { turnstileToken = null; updateBuy(); },
      "error-callback": () => { turnstileToken = null; updateBuy(); say(sentences.bot_check_failed, "error"); },
    });
  };
  function loadWidget() {
    const s = document.createElement("script");
    const src = shop.dataset.widgetScript;
    s.src = src + (src.includes("?") ? "&" : "?") + "render=explicit&onload=revguardTurnstileReady";
    s.async = true;
    document.head.appendChild(s);
  }

  // A Turnstile token is single-use: after every reservation attempt the widget is
  // reset, and issues a new one.
  function resetWidget() {
    turnstileToken = null;
    if (widgetID !== null) window.turnstile.reset(widgetID);
    updateBuy();
  }

  function updateBuy() {
    $("buy").disabled = busy || hold !== null || !turnstileToken || Date.now() < coolUntil;
  }

  // coolDown keeps Buy off for the answer's Retry-After, as the API asks.
  function coolDown(seconds) {
    coolUntil = Date.now() + seconds * 1000;
    setTimeout(updateBuy, seconds * 1000 + 50);
  }

  // getSession asks the shop's backend (here its demo stand-in) for a session once.
  async function getSession() {
    if (session && new Date(session.expires_at) > new Date(Date.now() + 60000)) return session;
    const r = await api("POST", "/example/session");
    if (r.status !== 201) throw r.body;
    session = r.body;
    return session;
  }

  async function buy() {
    if (!turnstileToken) { say("Please complete the check above first.", "error"); return; }
    busy = true; updateBuy(); say("Reserving…");
    let spent = true; // whether this attempt may have spent the Turnstile token
    try {
      const s = await getSession();
      attemptKey = attemptKey || randomKey();
      const r = await api("POST", "/v1/skus/" + encodeURIComponent(sku) + "/reservations", {
        token: s.token,
        headers: { "CF-Turnstile-Response": turnstileToken, "Idempotency-Key": attemptKey },
        body: { quantity: 1 },
      });
      if (r.status === 201) {
        attemptKey = null;
        stopLine();
        showHold(r.body);
        say("Reserved! Pay within the time shown to make it yours.", "ok");
      } else if (r.body && r.body.code === "admission_required") {
        say(sentences.admission_required);
        await joinLine(s);
      } else {
        const code = r.body && r.body.code;
        if (code === "unauthenticated") session = null;
        if (attemptOver.has(code)) attemptKey = null;
        if (tokenUnspent.has(code)) spent = false;
        if ((r.status === 429 || r.status === 503) && r.retryAfter > 0) {
          coolDown(r.retryAfter);
          say(problemSentence(r.body) + " (Buy works again in " + r.retryAfter + " s.)", "error");
        } else {
          say(problemSentence(r.body), "error");
        }
      }
    } catch (problem) {
      say(problemSentence(problem), "error");
    } finally {
      busy = false;
      if (spent) resetWidget(); else updateBuy();
      refreshAvailability();
    }
  }

  // joinLine takes a place in the SKU's waiting room with the current Turnstile token
  // (joining again answers the same place), then follows it.
  async function joinLine(s) {
    const r = await api("POST", placePath(), { token: s.token, headers: { "CF-Turnstile-Response": turnstileToken } });
    if (r.status !== 200 && r.status !== 201) {
      say(problemSentence(r.body), "error");
      return;
    }
    say("You're in line. Keep this page open: it follows your place.", "ok");
    showPlace(r.body);
    clearTimeout(placeTimer);
    if ($("line").hidden === false) placeTimer = setTimeout(pollPlace, 2000);
  }

  function placePath() {
    return "/v1/skus/" + encodeURIComponent(sku) + "/waiting-room/place";
  }

  // pollPlace reads the place two seconds after the last answer (never two at once):
  // cheap for the server, which reads it in memory without touching the SKU.
  async function pollPlace() {
    placeTimer = null;
    if (!session) return;
    const r = await api("GET", placePath(), { token: session.token });
    if (r.status === 200) {
      showPlace(r.body);
    } else if (r.status !== 0 && r.status !== 429 && r.status !== 503) {
      stopLine();
      say(problemSentence(r.body), "error");
      return;
    }
    if ($("line").hidden === false && placeTimer === null) placeTimer = setTimeout(pollPlace, 2000);
  }

  function stopLine() {
    clearTimeout(placeTimer);
    placeTimer = null;
    $("line").hidden = true;
  }

  // showPlace tells the customer where they stand.
  function showPlace(p) {
    const line = $("line");
    line.hidden = false;
    switch (p.status) {
      case "pre_queue":
        line.textContent = "You're in the waiting room. When the sale opens" +
          (p.opens_at ? " at " + new Date(p.opens_at).toLocaleTimeString() : "") +
          ", everyone here is put in a random order: arriving early gives no head start.";
        break;
      case "waiting":
        line.textContent = "You're number " + p.position + " in line" +
          (p.estimated_wait_seconds ? ", about " + p.estimated_wait_seconds + " s to go." : ".");
        break;
      case "admitted": {
        const left = Math.max(0, Math.round((new Date(p.admitted_until) - new Date()) / 1000));
        line.textContent = "It's your turn! Press Buy now" + (left ? " within " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") : "") + ".";
        break;
      }
      case "used":
        stopLine();
        break;
      case "expired":
        stopLine();
        say("Your turn in line passed before you bought. Press Buy to join the line again.", "error");
        break;
      case "sold_out":
        line.textContent = "Sold out for now. Stay here: if units come back, the line moves on.";
        break;
    }
  }

  function showHold(res) {
    hold = res;
    $("hold-id").textContent = res.id;
    $("hold").hidden = false;
    // The countdown runs from the answer's arrival for the hold's length, so that a
    // wrong clock on this computer does not change it.
    const ends = Date.now() + (new Date(res.expires_at) - new Date(res.created_at));
    const tick = () => {
      const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
      $("countdown").textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left === 0) {
        endHold();
        say(sentences.hold_expired, "error");
      }
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    updateBuy();
  }

  function endHold() {
    clearInterval(countdownTimer);
    hold = null;
    $("hold").hidden = true;
    updateBuy();
    refreshAvailability();
  }

  async function finish(action) {
    if (!hold) return;
    const id = hold.id;
    $("confirm").disabled = $("release").disabled = true;
    const body = action === "confirm" ? { order_ref: "example-order-" + id } : undefined;
    const r = await api("POST", "/v1/reservations/" + encodeURIComponent(id) + "/" + action, { token: session.token, body });
    $("confirm").disabled = $("release").disabled = false;
    if (r.status === 200 && action === "confirm") {
      endHold();
      say("Purchase confirmed. Thank you! Order example-order-" + id + ".", "ok");
    } else if (r.status === 200) {
      endHold();
      say("Released: the item went back on sale.", "ok");
    } else {
      const code = r.body && r.body.code;
      if (code === "hold_expired" || code === "hold_released" || code === "already_confirmed") endHold();
      say(problemSentence(r.body), "error");
    }
  }

  $("buy").addEventListener("click", buy);
  $("confirm").addEventListener("click", () => finish("confirm"));
  $("release").addEventListener("click", () => finish("release"));
  refreshAvailability();
  setInterval(refreshAvailability, 1000);
  loadWidget();
})();
