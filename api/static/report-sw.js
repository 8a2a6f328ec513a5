/* JointGrid report page's service worker: the page opens with no signal after one visit.
 *
 * The server prepends `const PRECACHE = [...]` (the page, its scripts, styles, images and the
 * map layers it draws) and `const VERSION = "..."` (a digest of all of that), so a new release
 * installs a new cache and drops the old one.
 *
 * - The page itself (a navigation to /report): network first, with a short wait, then the
 *   cached copy. A redirect (to the sign-in page) or an error never replaces the cached page.
 * - Our own static files and the browser libraries: cache first (their URLs carry a digest or
 *   a pinned version), then the network, stored for next time.
 * - Map layer data (boundaries change seldom): the cached copy while it is under LAYER_FRESH_MS
 *   old, else network first; offline, the cached copy of the same URL, then any cached copy of
 *   the same path (the zoom or the box in view differ).
 * - Everything else, reports above all, goes to the network untouched: the page's own queue
 *   keeps a report until the server has acknowledged it.
 */
/* global PRECACHE, VERSION */
"use strict";

var CACHE = "jointgrid-report-" + VERSION;
var PAGE_WAIT_MS = 3500;
var LAYER_FRESH_MS = 12 * 3600 * 1000;

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) {
      // One by one, so that a layer the key may not load does not keep the page out.
      // The map layers as the page has just loaded them (the browser's cache keeps them a
      // minute); everything else checked with the server, so a new release stores new files.
      return Promise.all(PRECACHE.map(function (url) {
        var mode = url.indexOf("/map/data/layers/") === 0 ? "default" : "no-cache";
        return fetch(url, { credentials: "same-origin", cache: mode }).then(function (r) {
          if (r.ok && !r.redirected) return cache.put(url, r);
        }).catch(function () {});
      }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (n) {
        return n.indexOf("jointgrid-report-") === 0 && n !== CACHE;
      }).map(function (n) { return caches.delete(n); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function timeout(ms) {
  return new Promise(function (_, reject) { setTimeout(function () { reject(new Error("timeout")); }, ms); });
}

function networkFirst(request, key, waitMs, loose) {
  var fromNet = fetch(request).then(function (r) {
    if (r.ok && !r.redirected) {
      var copy = r.clone();
      caches.open(CACHE).then(function (c) { return c.put(key, copy); });
    }
    return r;
  });
  var raced = waitMs ? Promise.race([fromNet, timeout(waitMs)]) : fromNet;
  return raced.catch(function () {
    return caches.open(CACHE).then(function (c) {
      return c.match(key).then(function (hit) {
        if (hit) return hit;
        if (loose) return c.match(key, { ignoreSearch: true });
        return undefined;
      });
    }).then(function (hit) { return hit || fromNet; });
  });
}

function cacheFirst(request) {
  return caches.open(CACHE).then(function (c) {
    return c.match(request).then(function (hit) {
      if (hit) return hit;
      return fetch(request).then(function (r) {
        if (r.ok) c.put(request, r.clone());
        return r;
      });
    });
  });
}

function freshFirst(request) {
  return caches.open(CACHE).then(function (c) {
    return c.match(request).then(function (hit) {
      var at = hit && Date.parse(hit.headers.get("date") || "");
      if (hit && at && Date.now() - at < LAYER_FRESH_MS) return hit;
      return networkFirst(request, request.url, PAGE_WAIT_MS, true);
    });
  });
}

self.addEventListener("fetch", function (event) {
  var req = event.request;
  if (req.method !== "GET") return;
  var url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === "navigate" && url.pathname === "/report") {
    event.respondWith(networkFirst(req, "/report", PAGE_WAIT_MS, false));
  } else if (url.pathname.indexOf("/static/") === 0 || url.pathname.indexOf("/assets/") === 0) {
    event.respondWith(cacheFirst(req));
  } else if (url.pathname.indexOf("/map/data/layers/") === 0) {
    event.respondWith(freshFirst(req));
  }
});
