/* JointGrid dashboard: refreshes itself without a full reload.
 *
 * Every `data-refresh-s` seconds the same URL is fetched again and the panels are swapped in
 * place, so the filters, the scroll position and the wall screen stay as they are. A failed
 * refresh keeps the panels shown and says so in the stamp; the next one tries again.
 */
(function () {
  "use strict";
  var every = parseFloat(document.body.getAttribute("data-refresh-s")) || 60;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var panels = doc.getElementById("panels"), stamp = doc.getElementById("refreshed");
        if (!panels || !stamp) throw new Error("unexpected page");
        document.getElementById("panels").replaceWith(document.adoptNode(panels));
        var mine = document.getElementById("refreshed");
        mine.textContent = stamp.textContent;
        mine.setAttribute("data-at", stamp.getAttribute("data-at"));
        mine.classList.remove("stale");
        document.documentElement.setAttribute("data-refreshed", stamp.getAttribute("data-at"));
      })
      .catch(function () {
        document.getElementById("refreshed").classList.add("stale");
      })
      .then(function () { busy = false; });
  }

  setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
