/* The case page: its small map, the countdown to the time limit, and the action forms, which
   are sent with the session's CSRF token; a refusal is shown in place, in the page's language. */
(function () {
  "use strict";
  var I = window.JointGridI18n;
  var page = document.querySelector(".case-page");
  if (!page) return;
  var state = { submitted: 0, lastStatus: null, lastError: null, mapLayers: 0 };
  window.JointGridCase = state;

  // -- the countdown ------------------------------------------------------------------------
  var countdown = page.querySelector(".countdown");
  function tick() {
    if (!countdown || countdown.getAttribute("data-open") !== "true") return;
    var due = countdown.getAttribute("data-due");
    countdown.textContent = I.timeLeft(due, Date.now());
    countdown.classList.toggle("late", !!due && Date.parse(due) < Date.now());
  }
  I.ready.then(function () { tick(); window.setInterval(tick, 30000); });

  // -- the map --------------------------------------------------------------------------------
  var holder = document.getElementById("case-map");
  if (holder && window.L) {
    var cfg = JSON.parse(holder.getAttribute("data-config"));
    var map = L.map(holder, { zoomControl: true, attributionControl: !!cfg.tiles_url })
      .setView(cfg.center, cfg.zoom);
    if (cfg.tiles_url) L.tileLayer(cfg.tiles_url, { attribution: cfg.tiles_attribution, maxZoom: 19 }).addTo(map);
    fetch(cfg.data, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (doc) {
        var sideColours = cfg.side_colours || {};
        L.geoJSON(doc.districts, {
          style: function (f) {
            var c = sideColours[f.properties.side] || "#555";
            return { color: c, weight: 2, fillColor: c, fillOpacity: 0.06 };
          }
        }).addTo(map);
        L.geoJSON(doc.grids, {
          style: function (f) {
            var mine = f.properties.code === cfg.grid;
            return { color: "#2b8cbe", weight: mine ? 3 : 0.8, fillOpacity: mine ? 0.12 : 0 };
          }
        }).addTo(map);
        L.geoJSON(doc.police_grids, {
          style: function (f) {
            var mine = f.properties.code === cfg.police_grid;
            return { color: "#6a51a3", weight: mine ? 2.5 : 0.8, dashArray: "6 4", fill: false };
          }
        }).addTo(map);
        L.geoJSON(doc.border_line, { style: { color: "#e31a1c", weight: 3 } }).addTo(map);
        L.circleMarker(cfg.center, { radius: 9, color: "#fff", weight: 2, fillColor: cfg.colour, fillOpacity: 1 }).addTo(map);
        state.mapLayers = 5;
        holder.setAttribute("data-ready", "true");
      })
      .catch(function () { holder.setAttribute("data-ready", "failed"); });
  }

  // -- the actions ----------------------------------------------------------------------------
  function refuse(form, text) {
    var out = form.querySelector(".refusal");
    out.textContent = text;
    out.hidden = false;
    state.lastError = text;
  }

  page.querySelectorAll("form.act").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new URLSearchParams(new FormData(form));
      var token = data.get("csrf_token") || "";
      data.delete("csrf_token");
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      state.submitted += 1;
      fetch(form.getAttribute("action"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": token, Accept: "application/json" },
        body: data
      })
        .then(function (r) {
          // A refusal written for this page's reader says so in Content-Language; any other
          // (a sign-in or CSRF refusal from the access rules) is shown from the catalogue.
          var written = (r.headers.get("Content-Language") || "").replace("-", "_") === document.documentElement.getAttribute("data-locale");
          return r.json().then(function (body) { return { ok: r.ok, body: body, written: written }; });
        })
        .then(function (res) {
          if (res.ok) {
            state.lastStatus = res.body.status;
            window.location.assign(res.body.url);
            return;
          }
          var b = res.body || {};
          var key = "error." + b.code;
          refuse(form, res.written && b.message ? b.message : (I.t(key) !== key ? I.t(key) : I.t("error.unknown", { code: b.code })));
          button.disabled = false;
        })
        .catch(function () {
          refuse(form, I.t("error.network"));
          button.disabled = false;
        });
    });
  });
})();
