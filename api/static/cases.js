/* The operators' inbox: refreshes its counts and rows without a reload, and marks the cases
   that are new since this browser last showed the inbox (the server's time of that list, kept
   in localStorage). On a first visit, the cases that arrive while it is open are marked. */
(function () {
  "use strict";
  var live = document.getElementById("inbox-live");
  if (!live) return;
  var KEY = "jointgrid.cases.lastSeen.v1";
  var every = Math.max(2, Number(live.getAttribute("data-refresh-s")) || 15) * 1000;
  var stamp = live.querySelector("[data-now]");
  var openedAt = stamp ? stamp.getAttribute("data-now") : new Date().toISOString();
  var previous = null;
  function remember(at) {
    try { window.localStorage.setItem(KEY, at); } catch (e) { /* storage refused: no marks */ }
  }
  try { previous = window.localStorage.getItem(KEY); } catch (e) { previous = null; }
  remember(openedAt);
  var state = { refreshes: 0, counted: 0, failures: 0, lastSeen: previous, newRows: 0, choices: false };
  window.JointGridInbox = state;

  function mark() {
    var n = 0;
    var since = Date.parse(previous || openedAt);
    if (!isNaN(since)) {
      live.querySelectorAll("tr.case[data-reported-at]").forEach(function (row) {
        var isNew = Date.parse(row.getAttribute("data-reported-at")) > since;
        row.classList.toggle("new", isNew);
        var badge = row.querySelector(".new-mark");
        if (badge) badge.hidden = !isNew;
        if (isNew) n += 1;
      });
    }
    state.newRows = n;
  }

  // The counts come on their own, so the rows never wait for them.
  function counts() {
    var nav = live.querySelector("[data-counts]");
    if (!nav) return;
    fetch(nav.getAttribute("data-counts"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (doc) {
        Object.keys(doc.counts).forEach(function (view) {
          var el = live.querySelector('[data-count="' + view + '"]');
          if (el) el.textContent = doc.counts[view];
        });
        state.counted += 1;
        live.setAttribute("data-counted", String(state.counted));
      })
      .catch(function () { state.failures += 1; });
  }

  function refresh() {
    fetch(live.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) throw new Error(String(r.status));
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.classList.remove("stale");
        var shown = live.querySelector("[data-now]");
        if (shown) remember(shown.getAttribute("data-now"));
        mark();
        counts();
        state.refreshes += 1;
        live.setAttribute("data-refreshes", String(state.refreshes));
      })
      .catch(function () {
        state.failures += 1;
        live.classList.add("stale");
      });
  }

  // The side and team pickers: the page carries only the chosen option; the full lists come
  // once from /cases/choices, which the browser keeps (max-age, then its ETag).
  function choices() {
    var form = document.querySelector("form[data-choices-src]");
    if (!form) return;
    fetch(form.getAttribute("data-choices-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (doc) {
        form.querySelectorAll("select[data-choices]").forEach(function (select) {
          var list = doc[select.getAttribute("data-choices")] || [];
          var chosen = select.value;
          var any = select.options[0];
          var items = document.createDocumentFragment();
          items.appendChild(any);
          list.forEach(function (pair) {
            items.appendChild(new Option(pair[1], pair[0], false, pair[0] === chosen));
          });
          select.replaceChildren(items);
          select.value = chosen;
          if (select.value !== chosen) {  // chosen but not in this key's list: keep it shown
            select.appendChild(new Option(chosen, chosen, true, true));
          }
        });
        state.choices = true;
        form.setAttribute("data-choices-ready", "1");
      })
      .catch(function () { state.failures += 1; });
  }

  mark();
  counts();
  choices();
  window.setInterval(refresh, every);
})();
