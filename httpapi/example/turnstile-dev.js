// A development stand-in for Cloudflare Turnstile's api.js, served by revguard with the
// storefront example when the bot check does not talk to Cloudflare (--turnstile-url
// is not Cloudflare's siteverify). It implements the explicit-rendering calls a page
// uses (render, reset, getResponse, remove) the way Cloudflare's test site keys
// behave, and loads nothing from anywhere:
//
//   1x00000000000000000000AA, 1x00000000000000000000BB and any other key: passes,
//     issuing the dummy token XXXX.DUMMY.TOKEN.XXXX (which siteverify accepts under
//     the test secret 1x0000000000000000000000000000000AA);
//   2x00000000000000000000AB, 2x00000000000000000000BB: always fails (error-callback);
//   3x00000000000000000000FF: an interactive challenge (a checkbox to click).
//
// It is not a bot check: with Cloudflare's real keys, use Cloudflare's script.
(function () {
  "use strict";

  const dummyToken = "XXXX.DUMMY.TOKEN.XXXX";
  const widgets = new Map();
  let nextID = 0;

  function behaviour(sitekey) {
    if (/^2x0{20}(AB|BB)$/.test(sitekey)) return "fail";
    if (/^3x0{20}FF$/.test(sitekey)) return "interactive";
    return "pass";
  }

  function draw(w) {
    const box = w.box;
    box.textContent = "";
    const mark = document.createElement("span");
    const label = document.createElement("span");
    const note = document.createElement("small");
    note.textContent = "Turnstile development stand-in";
    box.className = "rg-turnstile-dev " + w.state;
    if (w.state === "pending") {
      mark.textContent = "…";
      label.textContent = "Verifying…";
    } else if (w.state === "passed") {
      mark.textContent = "✔";
      label.textContent = "Success!";
    } else if (w.state === "failed") {
      mark.textContent = "✖";
      label.textContent = "Verification failed";
    } else {
      const check = document.createElement("input");
      check.type = "checkbox";
      check.addEventListener("change", () => solve(w));
      mark.appendChild(check);
      label.textContent = "Verify you are human";
    }
    box.append(mark, label, note);
  }

  function start(w) {
    w.token = null;
    w.state = w.mode === "interactive" ? "interactive" : "pending";
    draw(w);
    if (w.mode === "interactive") return;
    w.timer = setTimeout(() => (w.mode === "fail" ? fail(w) : solve(w)), 300);
  }

  function solve(w) {
    w.state = "passed";
    w.token = dummyToken;
    draw(w);
    if (w.params.callback) w.params.callback(dummyToken);
  }

  function fail(w) {
    w.state = "failed";
    draw(w);
    const cb = w.params["error-callback"];
    if (cb) cb("110200");
  }

  function find(id) {
    if (id === undefined) return widgets.values().next().value;
    return widgets.get(id);
  }


  window.turnstile = {
    render(container, params) {
      const el = typeof container === "string" ? document.querySelector(container) : container;
      const box = document.createElement("div");
      el.appendChild(box);
      const id = "rg-dev-" + nextID++;
      const w = { id, box, params: params || {}, mode: behaviour((params || {}).sitekey || ""), token: null };
      widgets.set(id, w);
      start(w);
      return id;
    },
    reset(id) {
      const w = find(id);
      if (!w) return;
      clearTimeout(w.timer);
      start(w);
    },
    getResponse(id) {
      const w = find(id);
      return w ? w.token || undefined : undefined;
    },
    isExpired() {
      return false;
    },
    remove(id) {
      const w = find(id);
      if (!w) return;
      clearTimeout(w.timer);
      w.box.remove();
      widgets.delete(w.id);
    },
    ready(cb) {
      cb();
    },
  };

  // Like Cloudflare's script, call the function named by ?onload= in this script's URL.
  const src = document.currentScript && document.currentScript.src;
  const onload = src && new URL(src).searchParams.get("onload");
  if (onload && typeof window[onload] === "function") window[onload]();
})();
